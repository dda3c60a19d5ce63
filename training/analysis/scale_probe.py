"""Probe: can a cell's size be measured in an image well enough to crop every lab's cell at one scale (issue 17, item 1)?

Each measure is taken on an image and on the same image simulated at other magnifications; a measure fit to drive a
scale-normalised crop scales with the magnification, so ``measure(image at s) / (s * measure(image))`` stays near 1.
Zooming in is centred on the cell (a technologist centres the cell she captures); zooming out pastes the field on its
own background (``training.magnification.at_magnification``). Prints, per image set and step, the median ratio and
the share of images within +-10 %, and the time per measure.

    python -m training.analysis.scale_probe --per-set 40
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import cell_centre, nucleus_radius
from training.magnification import at_magnification

SETS = {
    "bccd TEST_SIMPLE": "blood-cells/TEST_SIMPLE",
    "bccd TRAIN": "blood-cells/TRAIN",
    "pbc val": "pbc/val",
    "pbc other": "pbc/other",
}
SCALES = (0.5, 0.7, 1.4, 2.0)


def zoom(im: Image.Image, scale: float, rng: np.random.Generator) -> Image.Image:
    """``im`` at ``scale`` times its magnification: zoomed in around the cell, or zoomed out onto its background."""
    if scale <= 1:
        return at_magnification(im, scale, rng)
    w, h = im.size
    cx, cy = cell_centre(im)
    cw, ch = w / scale, h / scale
    left, top = min(max(cx - cw / 2, 0), w - cw), min(max(cy - ch / 2, 0), h - ch)
    return im.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--per-set", type=int, default=40, help="images drawn from each set")
    ap.add_argument("--frac", type=float, default=0.5, help="stain threshold, as a share of the image's strongest")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for name, folder in SETS.items():
        files = sorted((args.data / folder).glob("*/*"))
        files = [files[i] for i in rng.choice(len(files), min(args.per_set, len(files)), replace=False)]
        ratios: dict[float, list[float]] = {s: [] for s in SCALES}
        spent, calls = 0.0, 0
        for f in files:
            im = Image.open(f).convert("RGB")
            t0 = time.perf_counter()
            base = nucleus_radius(im, frac=args.frac)
            spent, calls = spent + time.perf_counter() - t0, calls + 1
            for s in SCALES:
                ratios[s].append(nucleus_radius(zoom(im, s, rng), frac=args.frac) / (s * base))
        cells = []
        for s, v in ratios.items():
            arr = np.array(v)
            cells.append(f"{s}x: median {np.nanmedian(arr):.2f}, within 10 % {100 * np.mean(np.abs(arr - 1) <= 0.1):.0f} %")
        print(f"{name} ({len(files)} images, {1000 * spent / calls:.1f} ms each): " + "; ".join(cells))
        print(f"  two cells side by side, the measure is one of theirs within 10 %: {two_cells(files, rng)}")


def two_cells(files: list[Path], rng: np.random.Generator, pairs: int = 20) -> str:
    """How often a field holding two cells is measured as one of them (not their average or their span)."""
    hits = 0
    for _ in range(pairs):
        a, b = (Image.open(files[i]).convert("RGB") for i in rng.choice(len(files), 2, replace=False))
        pair = Image.new(
            "RGB", (a.width + b.width, max(a.height, b.height)), tuple(int(v) for v in np.median(np.asarray(a)[0], 0))
        )
        pair.paste(a, (0, 0))
        pair.paste(b, (a.width, 0))
        measured = nucleus_radius(pair)
        hits += min(abs(measured / nucleus_radius(a) - 1), abs(measured / nucleus_radius(b) - 1)) <= 0.1
    return f"{hits}/{pairs}"


if __name__ == "__main__":
    main()
