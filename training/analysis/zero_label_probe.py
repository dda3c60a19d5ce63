"""Can a lab's unlabelled cells re-fit the classifier head from the model's own confident answers? (issue 26 item 2)

    python -m training.analysis.zero_label_probe [--labs deepbionet yellow ...]

The rule and its decision: docs/research/rules/zero_label_head.txt. Each lab is calibrated on its own images (core
calibrate: magnification and colours), its cells go through the base graph once, and then, with no label read:
Z0 is the calibrated head; Z1 the core's ``fit_head`` on the most confident half of each predicted class, labelled
with the predicted class; Z2 Z1 repeated twice more. Prints accuracy (and mean confidence) per lab and variant.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.model import Model, bundled_model_path
from hv_desktop.core.site.adapt_fit import RIDGE, fit_head
from hv_desktop.core.site.adapt_graph import softmax
from training.analysis.adapt_features_probe import SYNTHETIC_LABS, calibrated, features, lab_cells

MIN_CELLS = 5  # a class predicted for fewer cells keeps its base weights


def pseudo_fit(x: np.ndarray, w: np.ndarray, b: np.ndarray, w0: np.ndarray, b0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One round: the head refitted on the most confident half of each class the head (w, b) predicts."""
    p = softmax(x @ w + b)
    pred, conf = p.argmax(1), p.max(1)
    keep = np.zeros(len(x), bool)
    frozen = []
    for c in range(w0.shape[1]):
        idx = np.flatnonzero(pred == c)
        if len(idx) < MIN_CELLS:
            frozen.append(c)
            continue
        keep[idx[conf[idx] >= np.median(conf[idx])]] = True
    return fit_head(x[keep], pred[keep], w0, b0, RIDGE, frozen)


def run_lab(model: Model, lab: str) -> dict[str, tuple[float, float]]:
    ims, ys, may = lab_cells(lab)
    with tempfile.TemporaryDirectory() as tmp:
        pooled, _, probe = features(calibrated(model, ims, may, Path(tmp)), ims)
    scored = ~may if (~may).any() else np.ones(len(ys), bool)
    fit_on = pooled[may]
    heads = {"Z0": (probe.w0, probe.b0)}
    w, b = pseudo_fit(fit_on, probe.w0, probe.b0, probe.w0, probe.b0)
    heads["Z1"] = (w, b)
    for _ in range(2):
        w, b = pseudo_fit(fit_on, w, b, probe.w0, probe.b0)
    heads["Z2"] = (w, b)
    out = {}
    for name, (w, b) in heads.items():
        p = softmax(pooled[scored] @ w + b)
        out[name] = (float(np.mean(p.argmax(1) == ys[scored])), float(p.max(1).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--labs", nargs="+", default=["deepbionet", *SYNTHETIC_LABS, "swapped"])
    args = ap.parse_args(argv)
    model = Model(args.model or bundled_model_path())
    for lab in args.labs:
        r = run_lab(model, lab)
        parts = "  ".join(f"{k} {100 * a:5.1f} % (confidence {c:.2f})" for k, (a, c) in r.items())
        print(f"{lab:11s} {parts}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
