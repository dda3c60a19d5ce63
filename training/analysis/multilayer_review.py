"""Experiment: does Mahalanobis distance on earlier layers help the needs-review score?

    python -m training.analysis.multilayer_review runs/cell/cell_base.onnx

Per-channel mean and std of five layers (``training.review.LAYER_SETS["five"]``), a
Mahalanobis distance per layer to the nearest class/source centre (as training.review),
z-scored on genuine validation cells, averaged with calibrated confidence. Scored on the
even (validation) half of pbc/other only; the odd half stays for training.evaluate.
Prints the AUROC per layer, the best subsets (selected on the same half: optimistic) and
all five.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import onnx

from hv_desktop.core.inference.model import Model
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc
from training.review import LAYER_SETS, Distance, confidence, features_and_logits

KEYS = LAYER_SETS["five"]


def layer_scores(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per layer, z-scored log distances of genuine (validation) and non-target cells; then their z-scored
    negative confidences. Prints each layer's AUROC and the confidence's."""
    proto = onnx.load(str(path))
    m = Model(path)

    def feats(paths: list[Path]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        fs, logits, _ = features_and_logits(proto, m, paths, KEYS)
        return dict(zip(KEYS, fs, strict=True)), logits

    data = shared_root() / "data"
    fit, grp = [], []
    for gi, (rel, step) in enumerate((("pbc/train", 1), ("blood-cells/TRAIN", 4))):
        items = list_labelled(data / rel)[::step]
        f, _ = feats([p for p, _ in items])
        fit.append(f)
        grp.append(np.array([y for _, y in items]) + 4 * gi)
    groups = np.concatenate(grp)
    gen = [p for p, _ in list_labelled(data / "pbc/val") + list_labelled(data / "blood-cells/TEST_SIMPLE")]
    gf, gl = feats(gen)
    of, ol = feats(list_other(data)[0::2])
    zs_g, zs_o = {}, {}
    for k in KEYS:
        dist = Distance(np.concatenate([f[k] for f in fit]), groups)
        dg, do = np.log(dist(gf[k])), np.log(dist(of[k]))
        mu, sd = dg.mean(), dg.std()
        zs_g[k], zs_o[k] = (dg - mu) / sd, (do - mu) / sd
        print(k, "AUROC", round(auroc(zs_o[k], zs_g[k]), 3))
    t = m.info.temperature
    cg, co = -confidence(gl, t), -confidence(ol, t)
    mu, sd = cg.mean(), cg.std()
    cg, co = (cg - mu) / sd, (co - mu) / sd
    print("confidence", round(auroc(co, cg), 3))
    return zs_g, zs_o, cg, co


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the ONNX model (with its review temperature)")
    args = ap.parse_args(argv)
    zs_g, zs_o, cg, co = layer_scores(args.model)

    def score(wc: float, combo: tuple[str, ...]) -> float:
        sg = wc * cg + (1 - wc) * np.mean([zs_g[k] for k in combo], 0)
        so = wc * co + (1 - wc) * np.mean([zs_o[k] for k in combo], 0)
        return round(auroc(so, sg), 3)

    best = [
        (score(wc, combo), wc, list(combo))
        for n in range(1, len(KEYS) + 1)
        for combo in itertools.combinations(KEYS, n)
        for wc in (0.0, 0.25, 0.5)
    ]
    for b in sorted(best, key=lambda b: b[0])[-8:]:
        print(b)
    print("ALL five, by w:", [(wc, score(wc, KEYS)) for wc in (0.0, 0.25, 0.5, 0.75)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
