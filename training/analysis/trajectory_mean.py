"""The uniform mean of a run's epoch weights: a trajectory average (issue 26; rule: docs/research/rules/trajectory_mean.txt).

    python -m training.analysis.trajectory_mean --run runs/lolo_nols_no_bccd --first 2 [--last 16] [--name trajectory] \
        [--measure blood-cells/TEST_SIMPLE pbc/val deepbionet/cells@val]

Why: at every held-out lab the early epochs transferred best and the chosen checkpoint worse; averaging along the
trajectory keeps something of every stage without choosing an epoch by the held-out lab. Batch-norm is frozen in the
recipe, so the mean needs no statistics recomputed. Writes ``RUN/NAME.weights.h5`` for ``training.export_onnx --weights``;
with ``--measure``, exports it and the run's chosen weights and prints each one's accuracy as trained (argmax: no
temperature or calibrate) on each split, through the app's core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.model import Model
from training.analysis.lolo3_eval import scores
from training.data import list_labelled, shared_root
from training.export_onnx import load_core
from training.export_onnx import main as export_main


def trajectory_mean(run: Path, first: int, last: int | None = None, name: str = "trajectory") -> Path:
    files = sorted(run.glob("epoch_*.weights.h5"))
    epochs = [int(f.name[6:8]) for f in files]
    last = max(epochs) if last is None else last
    chosen = [f for f, e in zip(files, epochs, strict=True) if first <= e <= last]
    if len(chosen) != last - first + 1:
        raise SystemExit(f"{run}: epochs {first}-{last} wanted, found {[f.name for f in chosen]}")
    core, _ = load_core(run, chosen[0].name)
    total = [np.array(w, dtype=np.float64) for w in core.get_weights()]
    for f in chosen[1:]:
        core.load_weights(f)
        total = [t + w for t, w in zip(total, core.get_weights(), strict=True)]
    core.set_weights([(t / len(chosen)).astype(np.float32) for t in total])
    out = run / f"{name}.weights.h5"
    core.save_weights(out)
    print(f"{out}: mean of {len(chosen)} epoch files ({chosen[0].name} .. {chosen[-1].name})", flush=True)
    return out


def measure(run: Path, name: str, splits: list[str]) -> dict[str, dict[str, float]]:
    """Accuracy as trained of the chosen weights and the mean, same code, same images."""
    table: dict[str, dict[str, float]] = {}
    for label, weights in (("chosen", "final.weights.h5"), (name, f"{name}.weights.h5")):
        onnx = run / f"{label}.onnx"
        if not onnx.exists():
            export_main(["--run", str(run), "--weights", weights, "--out", str(onnx), "--version", f"{run.name}-{label}"])
        model = Model(onnx)
        table[label] = {s: scores(model, list_labelled(shared_root() / "data" / s))["accuracy"] for s in splits}
        print(label, "  ".join(f"{s} {100 * a:.1f} %" for s, a in table[label].items()), flush=True)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--first", type=int, default=2)
    ap.add_argument("--last", type=int, default=None)
    ap.add_argument("--name", default="trajectory")
    ap.add_argument("--measure", nargs="*", default=[], help="labelled splits, relative to data/")
    args = ap.parse_args(argv)
    trajectory_mean(args.run, args.first, args.last, args.name)
    if args.measure:
        measure(args.run, args.name, args.measure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
