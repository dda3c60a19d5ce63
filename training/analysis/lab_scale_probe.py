"""Probe: undo a lab's magnification from its own unlabelled images (issue 17, item 1, second form).

The fixed crop (``crop_fraction`` of the short side) shows each lab's cells at that lab's magnification. Here the
crop is instead set once per lab: ``crop_fraction = radii * median nucleus radius over the lab's images / short
side``, so a lab at twice the magnification gets a square twice as wide, while within a lab a monocyte's large
nucleus still looks larger than a lymphocyte's (the per-cell nucleus crop loses that cue:
docs/research/scale_normalised_crop.md). Prints, per simulated magnification of a validation split, accuracy and
flag rate with the model's fixed crop and with the per-lab crop. Validation splits only.

    python -m training.analysis.lab_scale_probe --model assets/model/hematovision.onnx --radii 7.0
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import Preprocessing, normalise, nucleus_radius, open_image, resize_for_model
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.ruler import lab_square
from training.data import list_labelled, shared_root
from training.magnification import at_magnification


def lab_crop_fraction(images: list[Image.Image], base_fraction: float, radii: float) -> float:
    """The per-lab crop as ``hematovision calibrate`` sets it, from these images' median nucleus radius."""
    fractions = np.array([nucleus_radius(im) / min(im.size) for im in images])
    return lab_square(base_fraction, float(np.nanmedian(fractions)), radii)[0]


def score(model: Model, images: list[Image.Image], labels: np.ndarray, prep: Preprocessing) -> tuple[float, float]:
    """(accuracy, share flagged) of ``model`` on ``images`` cropped per ``prep``."""
    x = normalise(np.stack([resize_for_model(im, model.input_size, prep) for im in images]), prep)
    parts = [model.assess(x[i : i + 32]) for i in range(0, len(x), 32)]
    predicted = np.concatenate([p.argmax(1) for p, _ in parts])
    flagged = np.concatenate([r for _, r in parts]) < model.info.review_threshold
    return float(np.mean(predicted == labels)), float(np.mean(flagged))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--radii", type=float, default=7.0, help="crop side in median nucleus radii")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.7, 1.0, 1.4, 2.0])
    ap.add_argument("--splits", nargs="+", default=["pbc/val"])
    args = ap.parse_args(argv)
    model = Model(args.model)
    prep = model.info.preprocessing
    for rel in args.splits:
        items = list_labelled(shared_root() / "data" / rel)
        originals = [open_image(p).convert("RGB") for p, _ in items]
        labels = np.array([c for _, c in items])
        for scale in args.scales:
            rng = np.random.default_rng(0)
            images = [at_magnification(im, scale, rng) for im in originals]
            fixed = score(model, images, labels, prep)
            f = lab_crop_fraction(images, prep.crop_fraction, args.radii)
            per_lab = score(model, images, labels, replace(prep, crop="cell", crop_fraction=f))
            print(
                f"{rel:<24} x{scale:<4g} fixed crop {prep.crop_fraction:.2f}: {fixed[0]:.1%} correct, {fixed[1]:.1%} flagged"
                f" | per-lab crop {f:.2f}: {per_lab[0]:.1%} correct, {per_lab[1]:.1%} flagged ({len(labels)} images)"
            )


if __name__ == "__main__":
    main()
