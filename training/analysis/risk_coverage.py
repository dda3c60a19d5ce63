"""How right the cells a flag rule could leave unflagged are, at one lab: the best any rule ranking by the model's
review value (or its confidence) can do, since it keeps the most typical share and flags the rest (issue 26 item 3).

    hematovision calibrate ../shared/data/deepbionet/cells --out /tmp/site.onnx
    python -m training.analysis.risk_coverage --model /tmp/site.onnx --lab deepbionet/cells

Prints the lab's accuracy and, for the most typical (most confident) 30/50/70/90 % of its cells, their accuracy. If
even the best-ranked half is below 97 % right, no threshold on that value can leave half the lab unflagged at 97 %:
the model must first be more often right there. Decides nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from training.data import CLASSES, list_labelled, shared_root

KEEP = (0.3, 0.5, 0.7, 0.9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--lab", default="deepbionet/cells", help="a labelled folder under ../shared/data")
    args = ap.parse_args(argv)
    items = list_labelled(shared_root() / "data" / args.lab)
    res = list(classify_paths([p for p, _ in items], Model(args.model)))
    ok = np.asarray([r.label == CLASSES[y] for r, (_, y) in zip(res, items, strict=True)])
    print(f"{args.lab}: {len(ok)} cells, {ok.mean():.1%} correct, {np.mean([r.needs_review for r in res]):.1%} flagged")
    for name, value in (("review value", [r.typicality for r in res]), ("confidence", [r.confidence for r in res])):
        order = np.argsort(-np.asarray(value, float))
        parts = [f"most typical {k:.0%}: {ok[order[: round(k * len(ok))]].mean():.1%}" for k in KEEP]
        print(f"  by {name:12s} " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
