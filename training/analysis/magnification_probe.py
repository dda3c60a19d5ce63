"""How a model copes with another lab's magnification, simulated on validation images.

    python -m training.analysis.magnification_probe [--model M.onnx] [--scales 1.4 1.0 0.7 0.5]

Higher magnification (> 1): the central 1/s of the field, enlarged back to full size. Lower magnification
(< 1): the field shrunk by s and pasted at a random place on a canvas of its own background colour (the
median of its top and bottom rows), as a wider field of view would show it. Every image then goes through
the app's own preprocessing (cell search, crop, resize) and the model. Validation splits only; a probe of a
known limit (the crop is a fixed fraction of the field, so the cell's size in the network's input follows
the magnification), not a tuning target.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import normalise, open_image
from hv_desktop.core.inference.model import Model
from training.data import list_labelled, shared_root
from training.magnification import model_input_at


def assess_at(model: Model, images: list, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, needs review) per image, each shown at ``scale`` times its magnification."""
    rng = np.random.default_rng(seed)
    prep = model.info.preprocessing
    x = normalise(np.stack([model_input_at(im, scale, rng, model.input_size, prep) for im in images]), prep)
    parts = [model.assess(x[i : i + 32]) for i in range(0, len(x), 32)]
    predicted = np.concatenate([p.argmax(1) for p, _ in parts])
    flagged = np.concatenate([r for _, r in parts]) < model.info.review_threshold
    return predicted, flagged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--scales", type=float, nargs="+", default=[1.4, 1.0, 0.7, 0.5])
    ap.add_argument("--splits", nargs="+", default=["pbc/val", "blood-cells/TEST_SIMPLE"])
    args = ap.parse_args(argv)
    model = Model(args.model)
    for rel in args.splits:
        items = list_labelled(shared_root() / "data" / rel)
        images = [open_image(p).convert("RGB") for p, _ in items]
        labels = np.array([c for _, c in items])
        for scale in args.scales:
            predicted, flagged = assess_at(model, images, scale)
            right = predicted == labels
            unflagged = f"{np.mean(right[~flagged]):.1%}" if (~flagged).any() else "-"
            print(
                f"{rel:<24} magnification x{scale:<4g} accuracy {np.mean(right):.1%}, flagged for review "
                f"{np.mean(flagged):.1%}, unflagged correct {unflagged} ({len(labels)} images)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
