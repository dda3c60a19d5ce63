"""Which simulated labs does calibrate accept, and do the flags stay honest there (issue 26 item 3)?

Each lab is PBC turned into another look (channel swaps, grey, inverted, hue turns, blur, zoom, low contrast): calibrate
measures 60 of its pbc/train images (every 40th), then every 4th pbc/val cell is scored as captured and through the
site model: correct, flagged, and how right the unflagged cells are. A lab calibrate refuses says why.

    python -m training.analysis.wrong_labs_probe [--model M] [LAB ...]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from hv_desktop.core.site.site_model import AdaptError
from training.data import CLASSES, list_labelled, shared_root

Look = Callable[[Image.Image], Image.Image]


def _channels(order: tuple[int, int, int]) -> Look:
    return lambda im: Image.merge("RGB", [im.split()[i] for i in order])


def _hue(degrees: int) -> Look:
    def turn(im: Image.Image) -> Image.Image:
        h, s, v = im.convert("HSV").split()
        h = h.point(lambda x: (x + int(degrees * 255 / 360)) % 256)
        return Image.merge("HSV", (h, s, v)).convert("RGB")

    return turn


def _zoom(z: float) -> Look:
    def zoom(im: Image.Image) -> Image.Image:
        w, h = im.size
        if z > 1:
            cw, ch = int(w / z), int(h / z)
            return im.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2)).resize((w, h), Image.BICUBIC)
        nw, nh = int(w * z), int(h * z)
        out = Image.new("RGB", (w, h), im.resize((1, 1)).getpixel((0, 0)))
        out.paste(im.resize((nw, nh), Image.BICUBIC), ((w - nw) // 2, (h - nh) // 2))
        return out

    return zoom


LABS: dict[str, Look] = {
    "as_captured": lambda im: im,
    "bgr": _channels((2, 1, 0)),
    "rbg": _channels((0, 2, 1)),
    "grb": _channels((1, 0, 2)),
    "gbr": _channels((1, 2, 0)),
    "brg": _channels((2, 0, 1)),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "inverted": ImageOps.invert,
    "hue+40": _hue(40),
    "hue-40": _hue(-40),
    "hue+90": _hue(90),
    "blur4": lambda im: im.filter(ImageFilter.GaussianBlur(4)),
    "mirrored": ImageOps.mirror,
    "zoom2.5": _zoom(2.5),
    "zoom0.4": _zoom(0.4),
    "low_contrast": lambda im: Image.blend(im, Image.new("RGB", im.size, (200, 200, 200)), 0.6),
}


def _read(model: Model, paths: list[Path], truth: list[str]) -> str:
    res = list(classify_paths(paths, model))
    ok = np.array([r.label == t for r, t in zip(res, truth, strict=True)])
    kept = ~np.array([r.needs_review for r in res])
    right = f"{ok[kept].mean():6.1%}" if kept.any() else "     -"
    return f"correct {ok.mean():6.1%} flagged {1 - kept.mean():6.1%} unflagged right {right} ({kept.sum()})"


def _write(look: Look, items: list[tuple[Path, int]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for i, (p, _) in enumerate(items):
        q = folder / f"{i:03}.png"
        look(Image.open(p).convert("RGB")).save(q)
        out.append(q)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("labs", nargs="*", help=f"some of {', '.join(LABS)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.labs if n not in LABS]
    if unknown:
        ap.error(f"unknown lab(s): {', '.join(unknown)}")
    model = Model(args.model)
    root = shared_root() / "data" / "pbc"
    cal_items, test_items = list_labelled(root / "train")[::40], list_labelled(root / "val")[::4]
    truth = [CLASSES[c] for _, c in test_items]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.labs or list(LABS):
            cal = _write(LABS[name], cal_items, Path(tmp) / name / "cal")
            test = _write(LABS[name], test_items, Path(tmp) / name / "test")
            print(f"{name:12s} as is       {_read(model, test, truth)}", flush=True)
            try:
                result = calibrate(model, cal)
            except AdaptError as exc:
                print(f"{name:12s} calibrate refuses: {exc}", flush=True)
                continue
            site = Model(result.save(Path(tmp) / name / "site.onnx", model))
            colours = "matched" if result.colour is not None else "kept"
            print(f"{name:12s} calibrated  {_read(site, test, truth)}  x{result.scale:.2f}, colours {colours}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
