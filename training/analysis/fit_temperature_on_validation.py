"""Fit the temperature on validation only (pbc/val + TEST_SIMPLE) and store it in the model, without reading TEST.

    python -m training.analysis.fit_temperature_on_validation MODEL.onnx

training.review needs a temperature; training.evaluate would fit one too but also
scores TEST, which a candidate model must not see before it passes its rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.model import Model
from training.data import list_labelled, shared_root
from training.evaluate import fit_temperature, predict
from training.export_onnx import update_metadata

SPLITS = ("pbc/val", "blood-cells/TEST_SIMPLE")


def validation_temperature(path: Path, splits: tuple[str, ...] = SPLITS) -> float:
    """The temperature that best calibrates the model at ``path`` on the validation splits alone."""
    m = Model(path)
    m.info.temperature = 1.0
    lp, ys = [], []
    for rel in splits:
        items = list_labelled(shared_root() / "data" / rel)
        lp.append(np.log(np.clip(predict(m, [p for p, _ in items]), 1e-12, 1)))
        ys.append(np.array([y for _, y in items]))
    return fit_temperature(np.concatenate(lp), np.concatenate(ys))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the ONNX model; its metadata is updated in place")
    ap.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        help="validation splits to fit on (a leave-one-lab-out model: its own labs' only, never the held-out lab's)",
    )
    args = ap.parse_args(argv)
    t = validation_temperature(args.model, tuple(args.splits))
    update_metadata(args.model, {"temperature": t})
    print("temperature", t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
