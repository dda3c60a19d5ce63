"""Probe (decides nothing): after AdaBN, is the needs-review signal safer taken from the network before it?

    python -m training.analysis.hybrid_review_probe --model /tmp/rn/shipped.onnx --lab pbc --synthetic mag2 yellow

For the calibrated file C (magnification only) and the re-normalised file R (rules/renorm.txt), on the same lab:
each one's review values, with the threshold set so the lab's unlabelled pool is flagged at the model's reference
flag rate; then genuine flagged (validation split), non-target flagged (even half of pbc/other) and the AUROC
between them. If C's signal separates the lab's non-target cells better than R's, a site model could classify
with R and flag with C (docs/research/site_adaptation.md ▸ AdaBN inside calibrate).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site.calibrate import calibrate
from training import renormalise as rn
from training.analysis.renorm_benchmark import lab_sets, renormalised_file
from training.analysis.source_stats import review_values


def auroc(genuine: np.ndarray, other: np.ndarray) -> float:
    """P(a genuine cell looks more typical than a non-target one); ties count half."""
    g, o = genuine[:, None], other[None, :]
    return float((g > o).mean() + 0.5 * (g == o).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model carrying training.analysis.source_stats' record")
    ap.add_argument("--lab", default="pbc")
    ap.add_argument("--synthetic", nargs="*", default=[None])
    ap.add_argument("--cache", default="runs/synthetic_labs")
    args = ap.parse_args(argv)
    base = Model(args.model)
    record = rn.read_record(base.info.extra, OnnxFile(base.path.read_bytes()))
    if record is None:
        raise SystemExit("the model carries no training statistics (training.analysis.source_stats)")
    for syn in args.synthetic:
        pool, ev, even, _ = lab_sets(args.lab, syn, Path(args.cache))
        row: dict = {"lab": args.lab, "synthetic": syn}
        with tempfile.TemporaryDirectory() as tmp:
            c_path, r_path = Path(tmp) / "c.onnx", Path(tmp) / "r.onnx"
            calibrate(base, pool, site_name="probe").save(c_path, base)
            r_path.write_bytes(renormalised_file(base, Model(c_path), pool))
            for name, path in (("calibrated", c_path), ("renormalised", r_path)):
                m = Model(path)
                pv = review_values(m, pool)
                gv, ov = review_values(m, [p for p, _ in ev]), review_values(m, even)
                t = rn.threshold_at_rate(pv, record.reference_flag_rate)
                row[name] = {
                    "genuine_flagged": round(float((gv < t).mean()), 4),
                    "other_flagged": round(float((ov < t).mean()), 4),
                    "auroc": round(auroc(gv, ov), 4),
                }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
