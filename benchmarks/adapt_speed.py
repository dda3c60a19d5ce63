"""Time `adapt` on N reviewed cells (issue: 200 cells <= 10 s with embeddings, the fit itself <= 2 s, 2 cores).

python benchmarks/adapt_speed.py [--per-class 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.inference.model import Model, bundled_model_path  # noqa: E402
from hv_desktop.core.site.adapt import adapt  # noqa: E402
from hv_desktop.core.site.lab_images import LabelledCell  # noqa: E402

CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("HV_SHARED", ROOT.parent / "shared")))
    args = ap.parse_args()
    cells = [
        LabelledCell(f, c)
        for c in CLASSES
        for f in sorted((args.shared / "data" / "pbc" / "train" / c).iterdir())[: args.per_class]
    ]
    base = Model(bundled_model_path())
    print(f"{len(cells)} cells, {os.cpu_count()} cores")
    for i in range(args.repeats):
        t0 = time.perf_counter()
        a = adapt(base, cells, "bench")
        total = time.perf_counter() - t0
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in a.seconds.items())
        print(f"run {i + 1}: total {total:.2f} s ({parts}); scale x{a.scale:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
