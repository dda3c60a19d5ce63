"""Experiment (issue 26 item 3): is "unlike the four cell types" better judged against each lab's own cells?

    python -m training.analysis.review_per_lab_probe --model runs/three_labs_worst/R1.onnx

training.review measures the Mahalanobis distance to the nearest class/source centre with ONE covariance shared by
every lab. With three labs, the labs' differences widen that covariance, so a non-target cell can look typical.
Here each lab gets its own reference: centres and covariance from that lab's training cells, the log distance
standardised on that lab's genuine validation cells, and a cell's distance is the smallest over labs. The
variants are scored as training.review scores its own: genuine validation of the three labs versus the EVEN half of
pbc/other (the odd half is never read), over the confidence weights training.review tries.
Features are cached in runs/probe_review/ (one pass over the fit images at each magnification).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from hv_desktop.core.inference.model import Model
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc
from training.review import LAYER_SETS, WEIGHTS, Distance, confidence, features_and_logits

SOURCES = ("pbc/train", "blood-cells/TRAIN", "deepbionet/cells@train")
GENUINE = ("pbc/val", "blood-cells/TEST_SIMPLE", "deepbionet/cells@val")
MAGS = (1.0, 0.7, 1.4)
KEYS = (*LAYER_SETS["five"], None)


def cached(path: Path, compute, *args) -> dict[str, np.ndarray]:
    if path.exists():
        return dict(np.load(path))
    out = compute(*args)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def extract(proto, model: Model, items: list, mag: float) -> dict[str, np.ndarray]:
    fs, logits, _ = features_and_logits(proto, model, [p for p, _ in items], KEYS, magnification=mag)
    out = {f"f{j}": f.astype(np.float32) for j, f in enumerate(fs)}
    out["logits"], out["y"] = logits, np.asarray([y for _, y in items])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/probe_review"))
    ap.add_argument("--sources", nargs="+", default=list(SOURCES), help="the model's training labs (fit)")
    ap.add_argument("--genuine", nargs="+", default=list(GENUINE), help="their validation splits, in the same order")
    args = ap.parse_args(argv)
    sources, genuine = tuple(args.sources), tuple(args.genuine)
    n_src = len(sources)
    data = shared_root() / "data"
    proto, model = onnx.load(str(args.model)), Model(args.model)
    t = model.info.temperature
    tag = args.model.parent.name
    fit = {}
    for si, rel in enumerate(sources):
        step = 4 if rel == "blood-cells/TRAIN" else 1
        items = list_labelled(data / rel)[::step]
        for mag in MAGS:
            fit[(si, mag)] = cached(args.cache / f"{tag}_fit{si}_{mag}.npz", extract, proto, model, items, mag)
            print(f"fit {rel} x{mag}: {len(fit[(si, mag)]['y'])} cells", flush=True)
    gen = [
        cached(args.cache / f"{tag}_gen{i}.npz", extract, proto, model, list_labelled(data / rel), 1.0)
        for i, rel in enumerate(genuine)
    ]
    other_items = [(p, -1) for p in list_other(data)[0::2]]  # the even half only
    oth = cached(args.cache / f"{tag}_other_even.npz", extract, proto, model, other_items, 1.0)

    g_conf = np.concatenate([confidence(g["logits"], t) for g in gen])
    o_conf = confidence(oth["logits"], t)
    lab_of = np.concatenate([np.full(len(g["y"]), i) for i, g in enumerate(gen)])

    def pooled(j: int) -> tuple[np.ndarray, np.ndarray]:
        """training.review's distance: one covariance over every lab's class/magnification groups."""
        feats = np.concatenate([fit[(si, m)][f"f{j}"] for si in range(n_src) for m in MAGS])
        groups = np.concatenate([fit[(si, m)]["y"] + 4 * si + 4 * n_src * mi for si in range(n_src) for mi, m in enumerate(MAGS)])
        d = Distance(feats.astype(np.float64), groups)
        gd = np.log(np.concatenate([d(g[f"f{j}"].astype(np.float64)) for g in gen]))
        od = np.log(d(oth[f"f{j}"].astype(np.float64)))
        return (gd - gd.mean()) / gd.std(), (od - gd.mean()) / gd.std()

    def per_lab(j: int, standardise: str) -> tuple[np.ndarray, np.ndarray]:
        """Each lab's own reference; the smallest of the per-lab standardised log distances."""
        gz, oz = [], []
        for si in range(n_src):
            feats = np.concatenate([fit[(si, m)][f"f{j}"] for m in MAGS])
            groups = np.concatenate([fit[(si, m)]["y"] + 4 * mi for mi, m in enumerate(MAGS)])
            d = Distance(feats.astype(np.float64), groups)
            gd = np.log(np.concatenate([d(g[f"f{j}"].astype(np.float64)) for g in gen]))
            od = np.log(d(oth[f"f{j}"].astype(np.float64)))
            ref = gd[lab_of == si] if standardise == "own" else gd
            gz.append((gd - ref.mean()) / ref.std())
            oz.append((od - ref.mean()) / ref.std())
        g, o = np.min(gz, 0), np.min(oz, 0)
        return (g - g.mean()) / g.std(), (o - g.mean()) / g.std()

    def report(name: str, layer_ids: list[int], fn) -> None:
        parts = [fn(j) for j in layer_ids]
        gz, oz = np.mean([p[0] for p in parts], 0), np.mean([p[1] for p in parts], 0)
        cm, cs = -g_conf.mean(), g_conf.std()
        best = (0.0, 0.0)
        for w in WEIGHTS:
            gs = w * (-g_conf - cm) / cs + (1 - w) * gz
            os_ = w * (-o_conf - cm) / cs + (1 - w) * oz
            best = max(best, (auroc(os_, gs), w))
        per = []
        for li, rel in enumerate(genuine):
            w = best[1]
            gs = w * (-g_conf - cm) / cs + (1 - w) * gz
            os_ = w * (-o_conf - cm) / cs + (1 - w) * oz
            per.append(f"{rel.split('/')[0]} {auroc(os_, gs[lab_of == li]):.3f}")
        print(f"{name:<34} AUROC {best[0]:.3f} (w={best[1]}); vs each lab: {', '.join(per)}", flush=True)

    five, last = [0, 1, 2, 3, 4], [5]
    report("pooled, five layers (R1)", five, pooled)
    report("pooled, last (R2)", last, pooled)
    report("per lab (own z), five layers", five, lambda j: per_lab(j, "own"))
    report("per lab (own z), last", last, lambda j: per_lab(j, "own"))
    report("per lab (pooled z), five layers", five, lambda j: per_lab(j, "all"))
    report("per lab (pooled z), last", last, lambda j: per_lab(j, "all"))
    report("per lab (own z), five + last", [*five, *last], lambda j: per_lab(j, "own"))
    print(f"confidence alone: AUROC {auroc(-o_conf, -g_conf):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
