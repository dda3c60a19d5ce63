"""Does a site head that also reads inner-layer statistics beat today's pooled-feature head? (issue 27 item 4)

    python -m training.analysis.adapt_features_probe                       # the shipped model, every lab
    python -m training.analysis.adapt_features_probe --model calibrated.onnx --labs deepbionet
    python -m training.analysis.adapt_features_probe --model runs/lolo3_no_bccd/model.onnx --labs bccd --calibrate

The rule and its decision: docs/research/rules/adapt_multilayer.txt. Each lab's cells go through the base graph once
(``core.site.adapt_graph.Probe``: pooled features and the five review layers' statistics); then, for k reviewed cells
per class and seeded draws, both heads are fitted with the core's ``fit_head`` and scored on the lab's other cells:
A on the pooled features (today's adapt), B on the pooled features plus the layers' statistics (standardised on the
lab's unlabelled cells, scaled to the pooled features' energy, prior weights zero). Prints mean and spread per lab.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import box_around, cell_centre, normalise, resize_for_model
from hv_desktop.core.inference.model import Model, bundled_model_path
from hv_desktop.core.site.adapt_fit import RIDGE, fit_head
from hv_desktop.core.site.adapt_graph import REVIEW, Probe
from hv_desktop.core.site.calibrate import calibrate
from training.analysis.adapt_benchmark import LABS, SYNTHETIC, reviewed_pool
from training.data import CLASSES, list_labelled, shared_root

SYNTHETIC_LABS = ("yellow", "bluegreen", "blurjpeg", "mag0.6", "mag1.5")


def calibrated(model: Model, ims: list[Image.Image], may: np.ndarray, folder: Path) -> Model:
    """The site model core calibrate() writes from the lab's images that may be reviewed (no labels read)."""
    for i in np.flatnonzero(may):
        ims[i].save(folder / f"{i:05d}.png")
    cal = calibrate(model, [folder])
    out = folder / "site.onnx"
    cal.save(out, model)
    print(f"  cells appear x{cal.scale:.2f} as large as in the model's training labs | {cal.colour_note}", flush=True)
    return Model(out)


def lab_cells(lab: str) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """(images, labels, may-be-reviewed mask) of one lab as it would capture them."""
    data = shared_root() / "data"
    if lab == "deepbionet":
        items = list_labelled(data / "deepbionet/cells")
        ims = [Image.open(p).convert("RGB") for p, _ in items]
        return ims, np.asarray([y for _, y in items]), np.ones(len(items), bool)
    if lab in LABS:  # a real lab, e.g. the one a leave-one-lab-out model did not see (rules/adapt_multilayer_lolo.txt)
        pool_rel, eval_rel, _ = LABS[lab]
        real = reviewed_pool(data / pool_rel) + list_labelled(data / eval_rel)
        ims = [Image.open(p).convert("RGB") for p, _ in real]
        return ims, np.asarray([y for _, y in real]), np.arange(len(real)) < len(real) - len(list_labelled(data / eval_rel))
    pool = reviewed_pool(data / "pbc/train")
    ev = list_labelled(data / "pbc/val")[::2]
    rng = np.random.default_rng(0)
    ims = [SYNTHETIC[lab](Image.open(p).convert("RGB"), rng) for p, _ in pool + ev]
    ys = np.asarray([y for _, y in pool + ev])
    return ims, ys, np.arange(len(ys)) < len(pool)


def features(model: Model, ims: list[Image.Image]) -> tuple[np.ndarray, np.ndarray, Probe]:
    """(pooled features, the review layers' statistics side by side) of every image, at the model's own crop."""
    probe = Probe(model)
    prep, size = model.info.preprocessing, model.input_size
    x = normalise(np.stack([resize_for_model(im, size, prep, box_around(im.size, cell_centre(im), prep)) for im in ims]), prep)
    out = probe.run(x)
    layers = probe.review.layers if probe.review is not None else 0
    inner = np.hstack([out[f"{REVIEW}l{i}_f"] for i in range(layers)]) if layers else np.zeros((len(ims), 0))
    return out[probe.embedding], inner, probe


def with_inner(pooled: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Variant B's features: the inner statistics standardised on all the lab's cells (no labels) and scaled so
    their mean squared norm equals the pooled features'."""
    z = (inner - inner.mean(0)) / (inner.std(0) + 1e-6)
    scale = np.sqrt((pooled**2).sum(1).mean() / max((z**2).sum(1).mean(), 1e-12))
    return np.hstack([pooled, z * scale])


def draw(ys: np.ndarray, may: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(ys):
        idx = np.flatnonzero(may & (ys == c))
        n = min(k, max(1, len(idx) - 1))  # leave at least one cell of the class to score
        picked += list(rng.choice(idx, n, replace=False))
    return np.asarray(sorted(picked))


def run_lab(model: Model, lab: str, ks: list[int], draws: int, calibrate_first: bool = False) -> dict:
    ims, ys, may = lab_cells(lab)
    if calibrate_first:
        with tempfile.TemporaryDirectory() as tmp:
            pooled, inner, probe = features(calibrated(model, ims, may, Path(tmp)), ims)
    else:
        pooled, inner, probe = features(model, ims)
    zeros = np.zeros((inner.shape[1], probe.w0.shape[1]))
    variants = {"A": (pooled, probe.w0), "B": (with_inner(pooled, inner), np.vstack([probe.w0, zeros]))}
    scored = ~may if (~may).any() else np.ones(len(ys), bool)
    base_acc = float(np.mean((pooled @ probe.w0 + probe.b0).argmax(1)[scored] == ys[scored]))
    out: dict = {"lab": lab, "cells": len(ys), "base": base_acc}
    for k in ks:
        for name, (x, w0) in variants.items():
            accs = []
            for d in range(draws):
                tr = draw(ys, may, k, 1000 * k + d)
                te = np.setdiff1d(np.arange(len(ys)), tr)
                te = te[~may[te]] if (~may).any() else te
                w, b = fit_head(x[tr], ys[tr], w0, probe.b0, RIDGE)
                accs.append(float(np.mean((x[te] @ w + b).argmax(1) == ys[te])))
            out[f"{name}@{k}"] = (float(np.mean(accs)), float(np.std(accs)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--labs", nargs="+", default=["deepbionet", *SYNTHETIC_LABS])
    ap.add_argument("--k", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--calibrate", action="store_true", help="each lab's head on its calibrated site model")
    args = ap.parse_args(argv)
    model = Model(args.model or bundled_model_path())
    assert len(model.labels) == len(CLASSES)
    rows = []
    for lab in args.labs:
        r = run_lab(model, lab, args.k, args.draws, args.calibrate)
        rows.append(r)
        parts = " ".join(f"{key} {100 * m:5.1f}±{100 * s:3.1f}" for key, (m, s) in ((k, v) for k, v in r.items() if "@" in k))
        print(f"{lab:11s} n={r['cells']:4d} base {100 * r['base']:5.1f}  {parts}", flush=True)
    keys = [k for k in rows[0] if "@" in k]
    mean = {k: float(np.mean([r[k][0] for r in rows])) for k in keys}
    print("mean over labs: " + " ".join(f"{k} {100 * v:5.1f}" for k, v in mean.items()))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
