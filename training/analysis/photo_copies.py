"""How many distinct cells a blood-cells split really holds, and accuracy per cell rather than per file.

    hematovision classify ../shared/data/blood-cells/TEST/MONOCYTE --csv mono.csv
    python -m training.analysis.photo_copies blood-cells/TEST --csv mono.csv [--threshold 0.75]

The blood-cells set is ~366 smear photos copied by rotation, flips and shifts into ~12,500 files, so
one hard cell can be a hundred test files. Pooled CNN features do not find the copies (rotation moves
them further apart than two different cells), so this compares the cell itself in a way that rotation and
flips cannot change: colour sampled on circles around the stained nucleus, then the magnitude of its
Fourier series along each circle. Files whose descriptors are near (cosine above a threshold, linked
transitively) form one group. The grouping is good for lymphocytes and monocytes (few cells, many copies
each) and coarse for eosinophils and neutrophils (cells near the image edge, lobed nuclei): read it as an
estimate of the effective sample size, and look at a group's images before calling it one cell.

Analysis only: nothing here is used to choose or train a model.
"""

from __future__ import annotations

import argparse
import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import cell_centre, open_image
from training.data import CLASSES, list_labelled, shared_root

RADII = np.arange(2, 56, 2.0)  # px in a 320 x 240 field; a BCCD white cell is ~80 px across
ANGLES = np.linspace(0, 2 * np.pi, 64, endpoint=False)
HARMONICS = 9  # Fourier magnitudes 0..8 along each circle


def descriptor(im: Image.Image) -> np.ndarray:
    """Rotation- and flip-invariant description of the cell at the nucleus (radii x harmonics x RGB)."""
    cx, cy = cell_centre(im)
    a = np.asarray(im.convert("RGB"), dtype=np.float32)
    h, w, _ = a.shape
    xs = cx + RADII[:, None] * np.cos(ANGLES)[None]
    ys = cy + RADII[:, None] * np.sin(ANGLES)[None]
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 2)
    fx = np.clip(xs - x0, 0, 1)[..., None]
    fy = np.clip(ys - y0, 0, 1)[..., None]
    ring = (
        a[y0, x0] * (1 - fx) * (1 - fy)
        + a[y0, x0 + 1] * fx * (1 - fy)
        + a[y0 + 1, x0] * (1 - fx) * fy
        + a[y0 + 1, x0 + 1] * fx * fy
    )
    # A rotation shifts each circle's samples, a flip reverses them: neither changes |FFT|.
    mag = np.abs(np.fft.rfft(ring, axis=1))[:, :HARMONICS, :] / len(ANGLES)
    return np.log1p(mag).ravel()


def unit_rows(descs: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Standardise each feature on ``reference`` (default: the descriptors themselves), then unit length."""
    ref = descs if reference is None else reference
    v = (descs - ref.mean(0)) / (ref.std(0) + 1e-6)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def group(unit: np.ndarray, threshold: float) -> np.ndarray:
    """Group id per row: rows linked by cosine > threshold, transitively (union-find)."""
    parent = np.arange(len(unit))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(unit), 1024):  # blocks keep the similarity matrix small
        sims = unit[start : start + 1024] @ unit.T
        for i, j in zip(*np.nonzero(sims > threshold), strict=True):
            a, b = root(start + int(i)), root(int(j))
            if a != b:
                parent[a] = b
    return np.array([root(i) for i in range(len(unit))])


def describe_folder(folder: Path, workers: int = 2) -> tuple[list[Path], np.ndarray, np.ndarray]:
    items = list_labelled(folder)
    with ThreadPoolExecutor(workers) as pool:
        descs = np.stack(list(pool.map(lambda it: descriptor(open_image(it[0])), items)))
    return [p for p, _ in items], np.array([y for _, y in items]), descs


def _accuracy(correct: np.ndarray) -> str:
    known = correct[~np.isnan(correct)]
    return f"  accuracy {known.mean():6.1%}" if len(known) else ""


def main(argv: list[str] | None = None) -> None:
    from hv_desktop.core.system.runtime import configure_process

    configure_process()  # it decodes in threads: Pillow's block cache must be off
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split", help="a labelled folder under data/, e.g. blood-cells/TEST")
    ap.add_argument("--csv", nargs="*", default=[], help="results of `hematovision classify` on its files")
    ap.add_argument("--threshold", type=float, default=0.75)
    ap.add_argument("--min-copies", type=int, default=10, help="smaller groups are pooled as 'rest'")
    args = ap.parse_args(argv)

    paths, labels, descs = describe_folder(shared_root() / "data" / args.split)
    groups = group(unit_rows(descs), args.threshold)
    predicted: dict[str, str] = {}
    probs: dict[str, list[float]] = {}
    for name in args.csv:
        with open(name, encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                key = str(Path(row["path"]).resolve())
                predicted[key] = row["predicted_label"]
                if all(f"p_{c}" in row and row[f"p_{c}"] for c in CLASSES):
                    probs[key] = [float(row[f"p_{c}"]) for c in CLASSES]
    correct = np.array(
        [
            predicted.get(str(p.resolve())) == CLASSES[y] if str(p.resolve()) in predicted else np.nan
            for p, y in zip(paths, labels, strict=True)
        ],
        dtype=float,
    )
    print(f"{args.split}: {len(paths)} files; groups at cosine > {args.threshold}")
    for c, name in enumerate(CLASSES):
        mask = labels == c
        ids, counts = np.unique(groups[mask], return_counts=True)
        big = ids[counts >= args.min_copies]
        print(f"  {name}: {mask.sum()} files, {len(ids)} groups, {len(big)} with >= {args.min_copies} copies")
        for gid in sorted(big, key=lambda g: -np.sum(groups[mask] == g)):
            sel = mask & (groups == gid)
            print(f"    {sel.sum():4d} copies{_accuracy(correct[sel])}  e.g. {paths[int(np.argmax(sel))].name}")
        rest = mask & ~np.isin(groups, big)
        if rest.any():
            print(f"    {rest.sum():4d} files in smaller groups{_accuracy(correct[rest])}")
    keys = [str(p.resolve()) for p in paths]
    if probs and all(k in probs for k in keys):
        _without_worst_group(np.array([probs[k] for k in keys]), labels, groups)


def _without_worst_group(p: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> None:
    """How much of the split's error and miscalibration the single worst group of copies carries."""
    from training.evaluate import ece

    wrong = p.argmax(1) != labels
    ids, errors = np.unique(groups[wrong], return_counts=True)
    if not len(ids):
        return
    worst = ids[np.argmax(errors)]
    keep = groups != worst
    print(f"whole split: accuracy {np.mean(~wrong):.2%}, ECE {ece(p, labels)[0]:.3f}")
    print(
        f"without the group with most errors ({np.sum(~keep)} copies, {errors.max()} errors): "
        f"accuracy {np.mean(~wrong[keep]):.2%}, ECE {ece(p[keep], labels[keep])[0]:.3f}"
    )


if __name__ == "__main__":
    main()
