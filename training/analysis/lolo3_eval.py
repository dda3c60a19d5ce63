"""Three-lab leave-one-lab-out, measured through the app (issue 26; rule: docs/research/rules/lolo3.txt).

    python -m training.analysis.lolo3_eval --run runs/lolo3_no_deepbionet \\
        --measure deepbionet/cells@train --calibrate-on deepbionet/cells@val

Exports the run's chosen weights to ONNX (once, beside the run), classifies the held-out lab's labelled images with
hv_desktop.core (the pixels and runtime of the app) as trained, then again with the site model that the app's
zero-label ``calibrate`` makes from *other* unlabelled images of the same lab (its magnification), and prints
accuracy, balanced accuracy and recall per class for both. Decides nothing by itself (the rule does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from training.data import CLASSES, list_labelled, shared_root


def exported(run: Path) -> Path:
    """The run's chosen weights as an ONNX model (exported once)."""
    target = run / "model.onnx"
    if not target.exists():
        from training.export_onnx import main as export_main

        export_main(["--run", str(run), "--out", str(target), "--version", f"lolo3-{run.name}"])
    return target


def scores(model: Model, items: list[tuple[Path, int]]) -> dict:
    preds = {}
    for r in classify_stream([p for p, _ in items], model, batch_size=32):
        preds[r.path] = CLASSES.index(r.label) if r.ok and r.label in CLASSES else -1
    y = np.asarray([c for _, c in items])
    pred = np.asarray([preds.get(p, -1) for p, _ in items])
    recall = {CLASSES[c]: float(np.mean(pred[y == c] == c)) for c in range(len(CLASSES)) if np.any(y == c)}
    return {
        "n": len(items),
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "recall": recall,
        "n_per_class": {CLASSES[c]: int(np.sum(y == c)) for c in range(len(CLASSES)) if np.any(y == c)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--measure", required=True, help="held-out lab's labelled split, relative to data/")
    ap.add_argument("--calibrate-on", required=True, help="other images of the same lab (labels unused)")
    ap.add_argument("--calibrate-every", type=int, default=1, help="take every Nth image to calibrate on")
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    model = Model(exported(args.run))
    items = list_labelled(data / args.measure)
    out = {"run": str(args.run), "measure": args.measure, "as_trained": scores(model, items)}
    cal_paths = [p for p, _ in list_labelled(data / args.calibrate_on)][:: args.calibrate_every]
    cal = calibrate(model, cal_paths, site_name="lolo3 eval")
    with tempfile.TemporaryDirectory() as tmp:
        site = Model(cal.save(Path(tmp) / "site.onnx", model))
        out["calibrated"] = scores(site, items)
    out["calibration"] = {"images": len(cal_paths), "measured": cal.measured, "square": cal.metadata.preprocessing.crop_fraction}
    for name in ("as_trained", "calibrated"):
        s = out[name]
        per = ", ".join(f"{k} {v:.3f} (n={s['n_per_class'][k]})" for k, v in s["recall"].items())
        head = f"{args.run.name} -> {args.measure} {name}"
        print(f"{head}: accuracy {s['accuracy']:.3f}, balanced {s['balanced_accuracy']:.3f}; {per}")
    print(f"calibrated on {len(cal_paths)} images of {args.calibrate_on}: square {out['calibration']['square']:.3f}")
    (args.run / f"lolo3_eval_{args.measure.replace('/', '_')}.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
