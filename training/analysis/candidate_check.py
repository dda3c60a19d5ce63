"""The validation figures rules/three_labs.txt decides a candidate on, through the app's own code.

    python -m training.analysis.candidate_check --model runs/three_labs/model_final.onnx

Prints (a) pbc/val, (b) blood-cells/TEST_SIMPLE (correct of 71), (c) deepbionet/cells@val accuracy, and (d) the
needs-review AUROC of genuine validation cells (the three splits) against the EVEN half of pbc/other, with the share
of that half flagged. The odd half and TEST are not read. Decides nothing by itself: the rule does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from training.data import CLASSES, list_labelled, shared_root
from training.evaluate import auroc

SPLITS = ("pbc/val", "blood-cells/TEST_SIMPLE", "deepbionet/cells@val")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    model = Model(args.model)
    out: dict = {"model": str(args.model), "version": model.info.version}
    genuine: list[float] = []
    first_two = 0  # genuine values of pbc/val + TEST_SIMPLE: the shipped model's AUROC figure (reported, not decided on)
    for split in SPLITS:
        items = list_labelled(data / split)
        res = list(classify_paths([p for p, _ in items], model))
        ok = [r.label == CLASSES[c] for r, (_, c) in zip(res, items, strict=True)]
        flagged = [r.needs_review for r in res]
        genuine += [float(r.typicality if r.typicality is not None else r.confidence or 0.0) for r in res]
        first_two = len(genuine) if split == SPLITS[1] else first_two
        out[split] = {
            "n": len(items),
            "correct": int(sum(ok)),
            "accuracy": float(np.mean(ok)),
            "flagged": float(np.mean(flagged)),
        }
        print(f"{split}: {sum(ok)} of {len(items)} correct ({np.mean(ok):.2%}), flagged {np.mean(flagged):.1%}", flush=True)
    even = sorted(p for p in (data / "pbc/other").rglob("*") if p.is_file())[0::2]
    res = list(classify_paths(even, model))
    other = [float(r.typicality if r.typicality is not None else r.confidence or 0.0) for r in res]
    # a non-target cell should look LESS typical: AUROC of genuine above non-target
    out["auroc_even_other"] = float(auroc(np.asarray(genuine), np.asarray(other)))
    out["auroc_even_other_two_labs"] = float(auroc(np.asarray(genuine[:first_two]), np.asarray(other)))
    out["even_other_flagged"] = float(np.mean([r.needs_review for r in res]))
    kinds = np.asarray([p.parent.name for p in even])
    values = np.asarray(other)
    # which non-target types the rule tells from genuine cells, and against which lab's genuine cells (reported only)
    out["auroc_by_type"] = {k: float(auroc(np.asarray(genuine), values[kinds == k])) for k in sorted(set(kinds))}
    starts = np.cumsum([0] + [out[s]["n"] for s in SPLITS])
    out["auroc_by_lab"] = {s: float(auroc(np.asarray(genuine[starts[i] : starts[i + 1]]), values)) for i, s in enumerate(SPLITS)}
    print(
        f"needs-review AUROC (genuine validation vs even half of pbc/other): {out['auroc_even_other']:.3f}; "
        f"even half flagged {out['even_other_flagged']:.1%} (genuine = pbc/val + TEST_SIMPLE only: "
        f"{out['auroc_even_other_two_labs']:.3f})",
        flush=True,
    )
    print("  by non-target type: " + ", ".join(f"{k} {v:.3f}" for k, v in out["auroc_by_type"].items()), flush=True)
    print("  by lab's genuine cells: " + ", ".join(f"{k} {v:.3f}" for k, v in out["auroc_by_lab"].items()), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
