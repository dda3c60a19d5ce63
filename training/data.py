"""Labelled image folders as uint8 arrays, prepared by the app's own preprocessing.

Images are decoded once with :func:`hv_desktop.core.imaging.preprocess.load_for_model`
(the exact function inference uses) and cached as ``.npy`` so a resumed run
does not pay for decoding again.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import (
    CELL_SEARCH_VERSION,
    NUCLEUS_RULER_VERSION,
    ImageError,
    Preprocessing,
    load_for_model,
)
from hv_desktop.core.imaging.scan import is_image_name
from hv_desktop.core.system.runtime import configure_process

CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def shared_root() -> Path:
    """Where ``data/`` and ``weights/`` live: $HV_SHARED, else ../shared beside the repo."""
    env = os.environ.get("HV_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared"


#: Share of each class held out by a ``folder@val`` split (a lab that ships no split of its own, e.g. deepbionet).
SPLIT_VAL_SHARE = 0.25


def split_part(name: str) -> str:
    """``"train"`` or ``"val"`` for a file name: a hash of the name alone, so the split never moves when files are
    added, re-ordered or copied to another machine."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return "val" if int.from_bytes(digest[:4], "big") / 2**32 < SPLIT_VAL_SHARE else "train"


def list_labelled(folder: Path, classes: tuple[str, ...] = CLASSES) -> list[tuple[Path, int]]:
    """(path, class index) for every image in ``folder/<class>/``; class names match case-insensitively.

    ``cells@train`` / ``cells@val`` name the two parts of a fixed split of ``cells`` (:func:`split_part`), for a lab
    that has no split of its own: the same image is never on both sides of a leave-one-lab-out run."""
    base, _, part = folder.name.partition("@")
    if part:
        if part not in ("train", "val"):
            raise ValueError(f"unknown split {part!r} in {folder} (use @train or @val)")
        return [it for it in list_labelled(folder.with_name(base), classes) if split_part(it[0].name) == part]
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    index = {c.lower(): i for i, c in enumerate(classes)}
    items: list[tuple[Path, int]] = []
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and sub.name.lower() in index:
            for f in sorted(sub.iterdir()):
                if f.is_file() and is_image_name(f.name):
                    items.append((f, index[sub.name.lower()]))
    if not items:
        raise FileNotFoundError(f"no class folders ({', '.join(classes)}) with images in {folder}")
    return items


def preprocessing_for(cfg: dict) -> Preprocessing:
    """The app's preprocessing that a training config asks for (written into the exported model)."""
    crop = cfg.get("crop") or {}
    return Preprocessing(
        width=cfg["image_size"],
        height=cfg["image_size"],
        crop=crop.get("kind", "none"),
        crop_fraction=float(crop.get("fraction", 1.0)),
        crop_radii=float(crop.get("radii", 7.0)),
    )


def load_arrays(
    items: list[tuple[Path, int]], size: int, cache_dir: Path | None = None, workers: int = 2, prep: Preprocessing | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode, crop and resize every item: (N, size, size, 3) uint8 and (N,) int labels."""
    configure_process()  # decoding in threads: Pillow's block cache must be off (the app's start-up does the same)
    tag = f"@{size}"
    if prep is not None and prep.crop != "none":
        tag += f"/{prep.crop}:{prep.crop_fraction:g}"
        if prep.crop in ("cell", "nucleus"):
            tag += f"/search{CELL_SEARCH_VERSION}"  # a changed search must not reuse old crops
        if prep.crop == "nucleus":
            tag += f"/radii{prep.crop_radii:g}/ruler{NUCLEUS_RULER_VERSION}"
    key = hashlib.sha256(("|".join(f"{p}:{y}" for p, y in items) + tag).encode()).hexdigest()[:16]
    if cache_dir is not None:
        cache = cache_dir / f"{key}.npz"
        if cache.exists():
            with np.load(cache) as z:
                return z["x"], z["y"]

    def one(item: tuple[Path, int]) -> np.ndarray:
        try:
            return load_for_model(item[0], (size, size), prep)
        except ImageError as exc:
            raise RuntimeError(f"training image unusable: {item[0]}: {exc}") from None

    with ThreadPoolExecutor(workers) as pool:
        x = np.stack(list(pool.map(one, items)))
    y = np.asarray([lab for _, lab in items], dtype=np.int32)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.tmp.npz"
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    return x, y


def list_other(data: Path) -> list[Path]:
    """Every file under pbc/other (cells of none of the four classes), in a fixed order for the even/odd split."""
    return sorted(p for p in (data / "pbc" / "other").rglob("*") if p.is_file())


def subset(items: list[tuple[Path, int]], per_class: int, classes: int = len(CLASSES)) -> list[tuple[Path, int]]:
    """The first ``per_class`` items of each class: the tiny, deterministic --quick data."""
    out: list[tuple[Path, int]] = []
    for c in range(classes):
        out.extend([it for it in items if it[1] == c][:per_class])
    return out
