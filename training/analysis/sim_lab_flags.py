"""Do a model's review flags stay honest at simulated labs? Every 4th pbc/val cell, as captured and turned into
another lab (adapt_benchmark's SYNTHETIC: red/blue swapped, red/green swapped, a yellow cast, a blue-green cast),
classified through the app: correct, flagged, and how right the unflagged cells are, per model.

    python -m training.analysis.sim_lab_flags runs/three_labs_bars/R1.onnx runs/three_labs_bars/R4.onnx

The swapped and redgreen labs are ones where the model is simply wrong: a review rule must keep its cells flagged (issue 26).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from training.analysis.adapt_benchmark import SYNTHETIC
from training.data import CLASSES, list_labelled, shared_root

LABS = ("swapped", "redgreen", "yellow", "bluegreen")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--step", type=int, default=4, help="every n-th pbc/val cell")
    args = ap.parse_args(argv)
    items = list_labelled(shared_root() / "data" / "pbc" / "val")[:: args.step]
    truth = [CLASSES[c] for _, c in items]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"as captured": [p for p, _ in items]}
        for name in LABS:
            folder = Path(tmp) / name
            folder.mkdir()
            sets[name] = []
            for i, (p, _) in enumerate(items):
                q = folder / f"{i:04d}.png"
                SYNTHETIC[name](Image.open(p).convert("RGB"), rng).save(q)
                sets[name].append(q)
        for path in args.models:
            model = Model(path)
            for name, paths in sets.items():
                res = list(classify_paths(paths, model))
                ok = np.array([r.label == t for r, t in zip(res, truth, strict=True)])
                flagged = np.array([r.needs_review for r in res])
                kept = ~flagged
                right = f"{ok[kept].mean():.1%}" if kept.any() else "-"
                print(
                    f"{path.name:12s} {name:12s} n={len(ok)} correct {ok.mean():.1%} flagged {flagged.mean():.1%} "
                    f"unflagged correct {right} ({kept.sum()} unflagged)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
