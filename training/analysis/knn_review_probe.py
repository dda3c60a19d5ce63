"""Experiment (issue 26, needs-review AUROC): do nearest-neighbour distances tell non-target cells apart better?

    python -m training.analysis.knn_review_probe --model assets/model/hematovision.onnx \
        --sources pbc/train blood-cells/TRAIN --genuine pbc/val blood-cells/TEST_SIMPLE

training.review scores a cell by its Mahalanobis distance to the nearest class centre (one Gaussian per class and
lab) mixed with calibrated confidence. A class of cells is not one Gaussian (neutrophils run from band to
hyper-segmented forms), and the types every model separates worst, immature granulocytes and basophils, sit
beside such a class. The distance to the k-th nearest training cell on L2-normalised features needs no shape
(Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors", ICML), and logit-based scores (max
logit, energy) keep the size of the evidence that the softmax discards. Each is scored on validation only, as
training.review scores its own: genuine validation cells against the EVEN half of pbc/other (the odd half is never
read), within PBC (the issue's own figure) and over every lab's genuine cells. Reports; decides nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from hv_desktop.core.inference.model import Model
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc
from training.review import LAYER_SETS, confidence, features_and_logits

KEYS = (*LAYER_SETS["five"], None)
KS = (1, 5, 10, 20, 50)


def extract(proto, model: Model, paths: list[Path], cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache))
    fs, logits, _ = features_and_logits(proto, model, paths, KEYS)
    out = {f"f{j}": f.astype(np.float32) for j, f in enumerate(fs)}
    out["logits"] = logits
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)


def kth_distance(bank: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each unit query to its k-th nearest unit bank vector."""
    sims = q @ bank.T
    return np.sqrt(np.maximum(2 - 2 * np.sort(sims, axis=1)[:, -k], 0.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/probe_knn"))
    ap.add_argument("--sources", nargs="+", default=["pbc/train", "blood-cells/TRAIN", "deepbionet/cells@train"])
    ap.add_argument("--genuine", nargs="+", default=["pbc/val", "blood-cells/TEST_SIMPLE", "deepbionet/cells@val"])
    ap.add_argument("--train-step", type=int, default=4, help="every n-th blood-cells/TRAIN image (as training.review)")
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    proto, model = onnx.load(str(args.model)), Model(args.model)
    t = model.info.temperature
    import hashlib

    # keyed by the file's content and the splits, so a changed model or other splits never reuse stale features
    key = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    cache = args.cache / f"{args.model.stem}-{key}-step{args.train_step}"

    def paths(rel: str) -> list[Path]:
        items = list_labelled(data / rel)
        return [p for p, _ in items[:: args.train_step if rel == "blood-cells/TRAIN" else 1]]

    def tag(rel: str) -> str:
        return rel.replace("/", "_").replace("@", "_")

    fit = [extract(proto, model, paths(rel), cache / f"fit_{tag(rel)}.npz") for rel in args.sources]
    gen = [extract(proto, model, paths(rel), cache / f"gen_{tag(rel)}.npz") for rel in args.genuine]
    other = extract(proto, model, list_other(data)[0::2], cache / "other_even.npz")

    def report(name: str, score) -> None:
        """score(part) -> values, higher = more unusual; AUROC of the even half above genuine."""
        o = score(other)
        per = [auroc(o, score(g)) for g in gen]
        pooled = auroc(o, np.concatenate([score(g) for g in gen]))
        print(
            f"{name:<34} within {args.genuine[0]}: {per[0]:.3f}   all genuine: {pooled:.3f}   by lab: "
            + " ".join(f"{v:.3f}" for v in per),
            flush=True,
        )

    def msp(part: dict) -> np.ndarray:
        return -confidence(part["logits"], t)

    def maxlogit(part: dict) -> np.ndarray:
        return -part["logits"].max(1)

    def energy(part: dict) -> np.ndarray:
        lg = part["logits"]
        m = lg.max(1)
        return -(m + np.log(np.exp(lg - m[:, None]).sum(1)))

    report("confidence (MSP)", msp)
    report("max logit", maxlogit)
    report("energy", energy)
    layer = len(KEYS) - 1  # the pooled vector the classifier reads
    for j in (layer, *range(layer)):
        bank = unit(np.concatenate([f[f"f{j}"] for f in fit]))
        tag = "pooled" if KEYS[j] is None else KEYS[j]
        for k in KS:
            report(f"kNN k={k} {tag}", lambda part, j=j, k=k, bank=bank: kth_distance(bank, unit(part[f"f{j}"]), k))
    # per lab: each lab's own bank, its distance standardised on its own genuine cells, the smallest over labs
    banks = [unit(f[f"f{layer}"]) for f in fit]
    for k in (5, 10, 20):
        ref = [kth_distance(b, unit(g[f"f{layer}"]), k) for b, g in zip(banks, gen, strict=True)]
        stats = [(float(np.log(r).mean()), float(np.log(r).std() + 1e-9)) for r in ref]

        def per_lab(part: dict, k: int = k, stats=stats) -> np.ndarray:
            q = unit(part[f"f{layer}"])
            return np.min([(np.log(kth_distance(b, q, k)) - m) / s for b, (m, s) in zip(banks, stats, strict=True)], 0)

        report(f"kNN per lab k={k} pooled", per_lab)
        gz = np.concatenate([msp(g) for g in gen])
        gk = np.concatenate([per_lab(g) for g in gen])
        for w in (0.25, 0.5, 0.75):

            def mix(part: dict, w: float = w, per_lab=per_lab, gz=gz, gk=gk) -> np.ndarray:
                return w * (msp(part) - gz.mean()) / gz.std() + (1 - w) * (per_lab(part) - gk.mean()) / gk.std()

            report(f"  + confidence w={w}", mix)
    if model.review_name is not None:
        from hv_desktop.core.inference.batch import classify_paths

        def shipped(rel_paths: list[Path]) -> np.ndarray:
            return -np.asarray([r.typicality for r in classify_paths(rel_paths, model)], dtype=float)

        o = shipped(list_other(data)[0::2])
        g = [shipped(paths(rel)) for rel in args.genuine]
        print(
            f"{'the model own typicality':<34} within {args.genuine[0]}: {auroc(o, g[0]):.3f}   all genuine: "
            f"{auroc(o, np.concatenate(g)):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
