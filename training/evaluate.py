"""Honest evaluation of an exported model, through the app's own core.

    python -m training.evaluate --model assets/model/hematovision.onnx --run runs/main

Everything is measured on the ONNX file with ``hv_desktop.core`` (the pixels
and the runtime the app uses). Validation (``pbc/val`` + ``blood-cells/TEST_SIMPLE``)
fits the temperature (as ``fit_temperature_on_validation`` does, so for the FP32 file the temperature in the metadata
stays the one its typicality output was built with; an INT8 file gets its own, its typicality keeps the FP32 one); the
needs-review threshold is chosen on the genuine validation splits of ``--genuine`` (default: those of the labs the
model was trained on, by its metadata's training_data, as ``training.review`` chose it);
``blood-cells/TEST`` is only reported, and so is ``deepbionet/cells@val`` for a model that never trained on
deepbionet. ``pbc/other`` (cells outside the four classes) is split in two by file order: the even half helps
choose the threshold, the odd half is held out for the reported AUROC, given per lab's genuine cells because
the labs differ (a lab's genuine cells can look as unusual as another's non-target cells). Writes metrics.json
and PNG figures beside the model and stores temperature, threshold and headline metrics in its metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.model import Model
from training.data import CLASSES, list_labelled, list_other, shared_root

#: Every split whose figures are reported: BCCD's test and validation, PBC's validation, deepbionet's held-out part.
REPORTED = ("blood-cells/TEST", "pbc/val", "blood-cells/TEST_SIMPLE", "deepbionet/cells@val")
#: The temperature is fitted here, as training.analysis.fit_temperature_on_validation fits it before training.review
#: writes it into the typicality output: the two must agree.
TEMPERATURE_SPLITS = ("pbc/val", "blood-cells/TEST_SIMPLE")


#: Each training split's validation split (what the review rule's genuine cells are for a model trained on it).
VALIDATION_OF = {
    "blood-cells/TRAIN": "blood-cells/TEST_SIMPLE",
    "pbc/train": "pbc/val",
    "deepbionet/cells@train": "deepbionet/cells@val",
}


def own_validation(model: Model) -> list[str]:
    """The validation splits of the labs ``model`` was trained on, in REPORTED's order (older files: TEMPERATURE_SPLITS)."""
    named = {VALIDATION_OF[k] for k in model.info.training_data or {} if k in VALIDATION_OF}
    return [rel for rel in REPORTED if rel in named] or list(TEMPERATURE_SPLITS)


def split_review(values: np.ndarray, logp: np.ndarray, y: np.ndarray, t: float, thr: float, other_b: np.ndarray) -> dict:
    """One split's review figures: share flagged, accuracy of the unflagged, AUROC against the held-out non-target half."""
    keep = values >= thr
    right = calibrate(logp, t).argmax(1) == y
    return {
        "n": len(y),
        "flagged": float(np.mean(~keep)),
        "accuracy_unflagged": float(np.mean(right[keep])) if keep.any() else None,
        "auroc_other_heldout_half": auroc(-other_b, -values),
    }


def predict(model: Model, paths: list[Path], typicality: dict | None = None) -> np.ndarray:
    """Uncalibrated probabilities via the app's streaming runner (temperature 1).

    When the model has a typicality output and ``typicality`` is a dict, the
    per-image values are stored in it under the key ``"values"``.
    """
    probs, typ = [], []
    for r in classify_stream(paths, model, batch_size=32):
        if not r.ok:
            raise RuntimeError(f"{r.path}: {r.error}")
        probs.append([r.probabilities[c] for c in model.labels])
        typ.append(r.typicality)
    if typicality is not None:
        typicality["values"] = np.asarray(typ, np.float64)
    return np.asarray(probs, np.float64)


def calibrate(logp: np.ndarray, t: float) -> np.ndarray:
    z = logp / t
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def fit_temperature(logp: np.ndarray, y: np.ndarray) -> float:
    def nll(t: float) -> float:
        p = calibrate(logp, t)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))))

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 200))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.95, best * 1.05, 101)
    return float(min(fine, key=nll))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    total, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            gap = abs(conf[m].mean() - correct[m].mean())
            total += m.mean() * gap
            table.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(correct[m].mean()),
                }
            )
    return float(total), table


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score_pos > score_neg), ties half: the Mann-Whitney form of ROC AUC."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def classification_report(y: np.ndarray, pred: np.ndarray, n: int) -> dict:
    cm = np.zeros((n, n), int)
    for a, b in zip(y, pred, strict=True):
        cm[a, b] += 1
    per = {}
    f1s = []
    for c in range(n):
        tp = cm[c, c]
        prec = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
        rec = tp / cm[c].sum() if cm[c].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per[CLASSES[c]] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(cm[c].sum())}
    return {
        "accuracy": float(np.trace(cm) / cm.sum()),
        "macro_f1": float(np.mean(f1s)),
        "per_class": per,
        "confusion": cm.tolist(),
        "n": int(cm.sum()),
    }


def latency_ms(model: Model, paths: list[Path], repeats: int = 3) -> dict:
    size = model.input_size
    x = normalise(np.stack([load_for_model(p, size, model.info.preprocessing) for p in paths[:32]]), model.info.preprocessing)
    out = {}
    for bs in (1, 8):
        model.probabilities(x[:bs])
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(0, len(x) - bs + 1, bs):
                model.probabilities(x[i : i + bs])
            best = min(best, (time.perf_counter() - t) / (len(x) // bs * bs))
        out[f"batch{bs}"] = round(best * 1000, 2)
    return out


def plots(out: Path, reports: dict, history: list[dict], rel_before: list, rel_after: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, key in zip(axes, ["blood-cells/TEST", "pbc/val"], strict=True):
        cm = np.asarray(reports[key]["confusion"])
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(4), [c[:4] for c in CLASSES])
        ax.set_yticks(range(4), [c[:4] for c in CLASSES])
        for i in range(4):
            for j in range(4):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{key}: accuracy {reports[key]['accuracy'] * 100:.1f}%")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    if history:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ep = [h["epoch"] for h in history]
        ax[0].plot(ep, [h["loss"] for h in history], label="train loss (augmented)")
        ax[0].set_xlabel("epoch")
        ax[0].legend()
        ax[1].plot(ep, [h["accuracy"] for h in history], label="train (augmented)")
        for key in history[0]["val"]:
            if isinstance(history[0]["val"][key], dict):
                ax[1].plot(ep, [h["val"][key]["accuracy"] for h in history], label=f"val {key}")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("accuracy")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for table, name in ((rel_before, "before"), (rel_after, "after temperature scaling")):
        ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], "o-", label=name)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on blood-cells/TEST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--run", type=Path, default=Path("runs/main"), help="training run (for learning curves)")
    ap.add_argument("--out", type=Path, default=None, help="folder for metrics.json and figures (default: beside model)")
    ap.add_argument("--limit", type=int, default=0, help="images per split (quick checks only)")
    ap.add_argument("--no-write-metadata", action="store_true")
    ap.add_argument(
        "--genuine",
        nargs="+",
        help="genuine validation splits the review threshold is chosen on (default: the model's own training labs')",
    )
    args = ap.parse_args(argv)
    out = args.out or args.model.parent
    out.mkdir(parents=True, exist_ok=True)
    data = shared_root() / "data"

    model = Model(args.model)
    model.info.temperature = 1.0  # raw scores; calibration is fitted below

    def split(rel: str) -> tuple[list[Path], np.ndarray]:
        items = list_labelled(data / rel)
        if args.limit:
            items = items[:: max(1, len(items) // args.limit)][: args.limit]
        return [p for p, _ in items], np.asarray([y for _, y in items])

    t0 = time.time()
    sets = {rel: split(rel) for rel in REPORTED if (data / rel.split("@")[0]).is_dir()}
    args.genuine = args.genuine or own_validation(model)
    if any(g not in sets for g in args.genuine):
        ap.error(f"--genuine must name reported splits: {', '.join(REPORTED)}")
    has_typ = model.review_name is not None
    typ: dict[str, np.ndarray] = {}
    logp = {}
    for rel, (paths, _) in sets.items():
        holder: dict = {}
        logp[rel] = np.log(np.clip(predict(model, paths, holder), 1e-12, 1))
        typ[rel] = holder["values"]
    other_paths = list_other(data)
    if args.limit:
        other_paths = other_paths[:: max(1, len(other_paths) // args.limit)][: args.limit]
    holder = {}
    logp_other = np.log(np.clip(predict(model, other_paths, holder), 1e-12, 1))
    typ_other = holder["values"]

    val_logp = np.concatenate([logp[k] for k in TEMPERATURE_SPLITS])
    val_y = np.concatenate([sets[k][1] for k in TEMPERATURE_SPLITS])
    t = fit_temperature(val_logp, val_y)

    reports, calib = {}, {}
    for rel, (_, y) in sets.items():
        p1, pt = calibrate(logp[rel], 1.0), calibrate(logp[rel], t)
        reports[rel] = classification_report(y, pt.argmax(1), len(CLASSES))
        e1, table1 = ece(p1, y)
        et, tablet = ece(pt, y)
        calib[rel] = {"ece_before": e1, "ece_after": et, "bins_before": table1, "bins_after": tablet}

    # Needs-review rule: the model's typicality output (training.review) when it has one, else the
    # calibrated confidence, below a threshold. "conf_*" below are those review values.
    def review_values(rel: str | None) -> np.ndarray:
        if has_typ:
            return typ_other if rel is None else typ[rel]
        return calibrate(logp_other if rel is None else logp[rel], t).max(1)

    msp_other = calibrate(logp_other, t).max(1)
    msp_pbc_val = calibrate(logp["pbc/val"], t).max(1)
    conf_val = np.concatenate([review_values(k) for k in args.genuine])
    conf_other = review_values(None)
    other_a, other_b = conf_other[0::2], conf_other[1::2]
    from training.review import youden_threshold

    best_thr = youden_threshold(conf_val, other_a)
    conf_pbc_val = review_values("pbc/val")
    conf_test = review_values("blood-cells/TEST")
    review = {
        "score": (
            "model typicality output: calibrated confidence + feature-space distance (training.review)"
            if has_typ
            else "calibrated max probability"
        )
        + " (below threshold = needs review)",
        "auroc_confidence_alone_other_vs_pbc_val_all": auroc(-msp_other, -msp_pbc_val),
        "threshold": best_thr,
        "chosen_on": f"{' + '.join(args.genuine)} (genuine) vs even half of pbc/other (Youden J)",
        "auroc_other_vs_pbc_val_heldout_half": auroc(-other_b, -conf_pbc_val),
        "auroc_other_vs_pbc_val_all": auroc(-conf_other, -conf_pbc_val),
        "auroc_other_vs_test": auroc(-conf_other, -conf_test),
        "flagged_other_heldout_half": float(np.mean(other_b < best_thr)),
        "flagged_pbc_val": float(np.mean(conf_pbc_val < best_thr)),
        "flagged_test": float(np.mean(conf_test < best_thr)),
        "accuracy_of_unflagged_test": float(
            np.mean((calibrate(logp["blood-cells/TEST"], t).argmax(1) == sets["blood-cells/TEST"][1])[conf_test >= best_thr])
        )
        if np.any(conf_test >= best_thr)
        else None,
    }
    per_other = {}
    for sub in sorted({p.parent.name for p in other_paths}):
        m = np.asarray([p.parent.name == sub for p in other_paths])
        per_other[sub] = float(np.mean(conf_other[m] < best_thr))
    review["flagged_other_by_type"] = per_other
    review["by_split"] = {rel: split_review(review_values(rel), logp[rel], sets[rel][1], t, best_thr, other_b) for rel in sets}

    history = []
    state = args.run / "state.json"
    if state.exists():
        history = json.loads(state.read_text())["history"]
    metrics = {
        "model": model.info.name,
        "version": model.info.version,
        "temperature": t,
        "splits": reports,
        "calibration": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("bins")} for k, v in calib.items()},
        "needs_review": review,
        "latency_ms_per_image": latency_ms(model, sets["pbc/val"][0]),
        "seconds": round(time.time() - t0, 1),
        "limit": args.limit,
    }
    if args.run.joinpath("selection.json").exists():
        metrics["selection"] = json.loads(args.run.joinpath("selection.json").read_text())["chosen"]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots(out, reports, history, calib["blood-cells/TEST"]["bins_before"], calib["blood-cells/TEST"]["bins_after"])

    if not args.no_write_metadata:
        from training.export_onnx import update_metadata

        update_metadata(
            args.model,
            {
                "temperature": t,
                "review_threshold": best_thr,
                "metrics": {
                    "test_accuracy": reports["blood-cells/TEST"]["accuracy"],
                    "test_macro_f1": reports["blood-cells/TEST"]["macro_f1"],
                    "pbc_val_accuracy": reports["pbc/val"]["accuracy"],
                    **(
                        {"deepbionet_val_accuracy": reports["deepbionet/cells@val"]["accuracy"]}
                        if "deepbionet/cells@val" in args.genuine
                        else {}
                    ),
                    "ece_test": calib["blood-cells/TEST"]["ece_after"],
                    "review_auroc_other": review["auroc_other_vs_pbc_val_all"],
                },
            },
        )

    for rel in sets:
        r = reports[rel]
        print(
            f"{rel:<26} n={r['n']:>5} accuracy={r['accuracy'] * 100:5.1f}% macro-F1={r['macro_f1'] * 100:5.1f}% "
            f"ECE {calib[rel]['ece_before']:.3f} -> {calib[rel]['ece_after']:.3f}"
        )
    print(
        f"temperature {t:.3f}; review threshold {best_thr:.3f}; AUROC other-vs-genuine "
        f"{review['auroc_other_vs_pbc_val_all']:.3f} (held-out half {review['auroc_other_vs_pbc_val_heldout_half']:.3f}); "
        f"flagged: other {review['flagged_other_heldout_half'] * 100:.0f}%, pbc/val {review['flagged_pbc_val'] * 100:.1f}%, "
        f"TEST {review['flagged_test'] * 100:.1f}%"
    )
    print(
        f"needs-review score: {review['score']}; confidence alone would give AUROC "
        f"{review['auroc_confidence_alone_other_vs_pbc_val_all']:.3f}"
    )
    for rel, b in review["by_split"].items():
        right = "-" if b["accuracy_unflagged"] is None else f"{b['accuracy_unflagged'] * 100:.1f}%"
        print(
            f"  {rel:<26} flagged {b['flagged'] * 100:5.1f}%, unflagged right {right}, "
            f"AUROC vs held-out half of pbc/other {b['auroc_other_heldout_half']:.3f}"
        )
    print(f"latency ms/image: {metrics['latency_ms_per_image']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
