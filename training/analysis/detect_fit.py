"""Fit the white-cell finder's settings on one boxed lab, measure them on the other (issue 28; rules/detect_fit.txt).

    python -m training.analysis.detect_fit --fit bccd --measure deepbionet
    python -m training.analysis.detect_fit --fit deepbionet --measure bccd
    python -m training.analysis.detect_fit --fit bccd deepbionet --measure bccd deepbionet     # "then on both"

The shipped settings (detect.FinderParams) were shaped looking at both boxed labs, so neither gives a held-out
figure. Here a fixed procedure chooses the settings from one lab's boxes alone: the ruler's ratio from its red-cell
boxes, then a coordinate ascent over fixed grids from the middle of each grid, scored by min(recall, precision).
The figures on the other lab measure how the method carries to a lab it never saw.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging import detect
from hv_desktop.core.imaging.detect import FinderParams
from training.analysis.detect_eval import HEADER, LABS, SIMS, Field, Tally, evaluate, load_lab, row, ruler_ratio

GRID: dict[str, tuple[float, ...]] = {
    "stain_frac": (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55),
    "floor_q": (0.5, 0.6, 0.7, 0.75, 0.8, 0.9),
    "floor_margin": (0.0, 0.1, 0.2, 0.25, 0.3, 0.4),
    "merge": (0.1, 0.15, 0.2, 0.3, 0.4),
    "min_area": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    "min_peak": (0.5, 0.6, 0.7, 0.75, 0.8, 0.9),
    "min_rel": (0.05, 0.1, 0.15, 0.2, 0.3),
    "max_fill": (3.0, 4.0, 6.0, 8.0),
    "grow": (0.1, 0.2, 0.3, 0.4),
}
MAX_PASSES = 4


def lab_ruler(fields: list[tuple[str, Field]], data: Path) -> float:
    """Median over fields of detect_eval.ruler_ratio (the lab's own red-cell boxes)."""
    return float(np.median([r for lab, f in fields if (r := ruler_ratio(f, data, lab)) is not None]))


def objective(t: Tally) -> tuple[float, float]:
    r, p = t.recall(), t.precision()
    r, p = (0.0 if r != r else r), (0.0 if p != p else p)
    return min(r, p), r + p


def fit(fields: list[Field]) -> tuple[FinderParams, tuple[float, float]]:
    """Coordinate ascent from the middle of every grid (rules/detect_fit.txt step 3)."""
    current = {k: v[len(v) // 2] for k, v in GRID.items()}

    def score(values: dict) -> tuple[float, float]:
        tallies, _ = evaluate(fields, None, dataclasses.replace(FinderParams(), **values))
        return objective(tallies["all"])

    best = score(current)
    print(f"start {current}: min(R, P) {best[0]:.4f}", flush=True)
    for n in range(MAX_PASSES):
        changed = False
        for key, values in GRID.items():
            for v in values:
                if v == current[key]:
                    continue
                trial = dict(current, **{key: v})
                s = score(trial)
                if s > best:
                    best, current, changed = s, trial, True
            print(f"pass {n + 1} {key}={current[key]}: min(R, P) {best[0]:.4f}", flush=True)
        if not changed:
            break
    return dataclasses.replace(FinderParams(), **current), best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--fit", nargs="+", choices=sorted(LABS), required=True)
    ap.add_argument("--measure", nargs="+", choices=sorted(LABS), required=True)
    ap.add_argument("--sims", action="store_true", help="also the 13 simulated labs made from each measured lab")
    args = ap.parse_args(argv)

    fit_fields = [(lab, f) for lab in args.fit for f in load_lab(args.data, lab)]
    ratio = lab_ruler(fit_fields, args.data)
    detect.RULER_TO_RBC = 1 / ratio  # read by rbc_diameter at call time: the fitted lab's ruler
    print(f"fitted on {' + '.join(args.fit)} ({len(fit_fields)} fields): ruler lag / red-cell box {ratio:.3f}", flush=True)
    params, best = fit([f for _, f in fit_fields])
    print(f"fitted settings: {params}\nfit-lab min(recall, precision) {best[0]:.4f}", flush=True)
    for lab in args.measure:
        held = "held out" if lab not in args.fit else "in sample"
        for audit in (False, True):
            fields = load_lab(args.data, lab, audit=audit)
            print(f"\n{lab} ({held}{', audited labels' if audit else ', raw labels'}): {len(fields)} fields")
            print(HEADER)
            names = ["as captured"] + ([n for n in SIMS if n != "as captured"] if args.sims and not audit else [])
            for name in names:
                tallies, spent = evaluate(fields, SIMS[name], params)
                print(row(name, tallies, spent), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
