"""A typicality output for the needs-review rule, fitted on data and written into the ONNX graph.

    python -m training.review --model assets/model/hematovision.onnx

Why: calibrated confidence alone flags cells outside the four classes only
moderately (AUROC 0.88 on pbc/other); it is weakest where a foreign cell looks
confidently like one class (erythroblasts, platelets). Distance in the network's
own feature space catches those well but misses immature granulocytes, which
sit among neutrophils. The two are combined:

    s = w * z(-confidence) + (1 - w) * z(log Mahalanobis distance)
    typicality = sigmoid(-s)           (higher = more like the training cells)

The Mahalanobis distance is to the nearest of eight class-and-source centres of
the pooled features of training images (shared covariance, shrunk), so both
labs' looks count as typical. z() standardises each part on genuine validation
cells (pbc/val + TEST_SIMPLE). w is chosen on validation only: genuine
validation cells versus the even half of pbc/other; the odd half stays held out
for ``training.evaluate``. Everything lives in the graph as an output named
``typicality``, so the app needs only onnxruntime and the metadata names it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.model import Model
from hv_desktop.core.preprocess import load_for_model, normalise
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc, calibrate

OUTPUT = "typicality"
SHRINK = 0.1  # covariance shrinkage (fixed: 0.01-1.0 changed the AUROC by < 0.003)
WEIGHTS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def feature_tensor(proto) -> str:
    """The pooled feature vector: the input of the classifier MatMul that feeds ``logits``."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers["logits"]
    while node.op_type != "MatMul":
        node = producers[node.input[0]]
    return node.input[0]


def features_and_logits(proto, model: Model, paths: list[Path], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    feat = feature_tensor(proto)
    probe = type(proto)()
    probe.CopyFrom(proto)
    probe.graph.output.append(helper.make_tensor_value_info(feat, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    size, prep = model.input_size, model.info.preprocessing
    fs, ls = [], []
    for i in range(0, len(paths), batch):
        x = normalise(np.stack([load_for_model(p, size, prep) for p in paths[i:i + batch]]), prep)
        logits, f = session.run(["logits", feat], {model.input_name: x})
        fs.append(f)
        ls.append(logits)
    return np.concatenate(fs).astype(np.float64), np.concatenate(ls).astype(np.float64)


def fit_mahalanobis(features: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whitening W (D, D), whitened centres (G, D)): distance = min_g ||f W - c_g||^2."""
    gs = np.unique(groups)
    centres = np.stack([features[groups == g].mean(0) for g in gs])
    resid = features - centres[np.searchsorted(gs, groups)]
    cov = resid.T @ resid / len(resid)
    cov += SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
    evals, evecs = np.linalg.eigh(cov)
    w = evecs / np.sqrt(evals)
    return w, centres @ w


def mahalanobis(features: np.ndarray, w: np.ndarray, centres: np.ndarray) -> np.ndarray:
    y = features @ w
    d = (y * y).sum(1)[:, None] - 2 * y @ centres.T + (centres * centres).sum(1)[None]
    return np.maximum(d.min(1), 1e-6)


def confidence(logits: np.ndarray, t: float) -> np.ndarray:
    return calibrate(logits, t).max(1)


def typicality(conf: np.ndarray, dist: np.ndarray, p: dict) -> np.ndarray:
    s = p["w"] * (-conf - p["conf_mean"]) / p["conf_std"] + \
        (1 - p["w"]) * (np.log(dist) - p["dist_mean"]) / p["dist_std"]
    return 1 / (1 + np.exp(s))


def add_output(proto, w: np.ndarray, centres: np.ndarray, p: dict, temperature: float) -> None:
    """Append the typicality computation to the graph (opset 13-17 operators)."""
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    f = feature_tensor(proto)

    def const(name: str, value) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name=f"review/{name}"))
        return f"review/{name}"

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        g.node.append(helper.make_node(op, inputs, [f"review/{name}"], name=f"review/{name}", **attrs))
        return f"review/{name}"

    axes1 = "review/axes1"
    g.initializer.append(numpy_helper.from_array(np.asarray([1], np.int64), name=axes1))
    # calibrated confidence
    scaled = node("Div", ["logits", const("temperature", temperature)], "scaled")
    conf = node("ReduceMax", [node("Softmax", [scaled], "softmax", axis=1)], "confidence", axes=[1], keepdims=0)
    # squared Mahalanobis distance to the nearest centre; the 1280x1280 whitening matrix is stored as
    # float16 (half the file size; typicality changes by < 1e-3) and widened once when the session loads.
    g.initializer.append(numpy_helper.from_array(w.astype(np.float16), name="review/whiten16"))
    whiten = node("Cast", ["review/whiten16"], "whiten", to=TensorProto.FLOAT)
    y = node("MatMul", [f, whiten], "whitened")
    yy = node("ReduceSum", [node("Mul", [y, y], "y2"), axes1], "yy", keepdims=1)
    cross = node("MatMul", [y, const("centres_t", centres.T)], "cross")
    d = node("Add", [node("Sub", [yy, node("Mul", [cross, const("two", 2.0)], "cross2")], "d0"),
                     const("cc", (centres * centres).sum(1)[None])], "d1")
    dist = node("Max", [node("ReduceMin", [d], "dmin", axes=[1], keepdims=0), const("eps", 1e-6)], "dist")
    # s = a * conf + b * log(dist) + c;  typicality = sigmoid(-s)
    a = -p["w"] / p["conf_std"]
    b = (1 - p["w"]) / p["dist_std"]
    c = p["w"] * (-p["conf_mean"]) / p["conf_std"] - (1 - p["w"]) * p["dist_mean"] / p["dist_std"]
    s = node("Add", [node("Add", [node("Mul", [conf, const("a", a)], "sa"),
                                  node("Mul", [node("Log", [dist], "logd"), const("b", b)], "sb")], "s0"),
                     const("c", c)], "s")
    g.node.append(helper.make_node("Sigmoid", [node("Neg", [s], "neg_s")], [OUTPUT], name="review/typicality"))
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N"]))


def main(argv: list[str] | None = None) -> int:
    import onnx

    from training.export_onnx import get_metadata, set_metadata

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--out", type=Path, default=None, help="default: rewrite --model in place")
    ap.add_argument("--train-step", type=int, default=4, help="use every n-th blood-cells/TRAIN image")
    ap.add_argument("--limit", type=int, default=0, help="images per split (quick checks only)")
    args = ap.parse_args(argv)
    out = args.out or args.model
    data = shared_root() / "data"

    proto = onnx.load(str(args.model))
    # The fit needs the graph without the output (refitting on top of it would add a second copy).
    if any(o.name == OUTPUT for o in proto.graph.output):
        raise SystemExit(f"{args.model} already has a '{OUTPUT}' output; re-export the model first")
    model = Model(args.model)
    t = model.info.temperature

    def take(items: list, n: int = 0) -> list:
        n = n or args.limit
        return items[:: max(1, len(items) // n)][:n] if n else items

    fits, groups = [], []
    for gi, (rel, step) in enumerate((("pbc/train", 1), ("blood-cells/TRAIN", args.train_step))):
        items = take(list_labelled(data / rel)[::step])
        f, _ = features_and_logits(proto, model, [p for p, _ in items])
        fits.append(f)
        groups.append(np.asarray([y for _, y in items]) + 4 * gi)
    w, centres = fit_mahalanobis(np.concatenate(fits), np.concatenate(groups))

    genuine = take(list_labelled(data / "pbc/val")) + take(list_labelled(data / "blood-cells/TEST_SIMPLE"))
    gf, gl = features_and_logits(proto, model, [p for p, _ in genuine])
    other = take(list_other(data))
    of, ol = features_and_logits(proto, model, other)
    g_conf, g_dist = confidence(gl, t), mahalanobis(gf, w, centres)
    o_conf, o_dist = confidence(ol, t), mahalanobis(of, w, centres)
    params = {"conf_mean": float(-g_conf.mean()), "conf_std": float(g_conf.std() + 1e-9),
              "dist_mean": float(np.log(g_dist).mean()), "dist_std": float(np.log(g_dist).std() + 1e-9)}
    table = []
    for wt in WEIGHTS:
        p = dict(params, w=wt)
        # higher typicality = genuine: AUROC of "other" scored by (1 - typicality)
        table.append((auroc(-typicality(o_conf[0::2], o_dist[0::2], p), -typicality(g_conf, g_dist, p)), wt))
        print(f"w={wt:<5} AUROC other(even half) vs genuine validation = {table[-1][0]:.3f}")
    best_auc, best_w = max(table)
    params["w"] = best_w
    print(f"chosen w={best_w} (validation AUROC {best_auc:.3f}; w=1 is confidence alone: {table[-1][0]:.3f})")

    add_output(proto, w.astype(np.float32), centres.astype(np.float32), params, t)
    meta = get_metadata(proto)
    meta.update(review_output=OUTPUT, review_score={
        "formula": "sigmoid(-(w*z(-confidence) + (1-w)*z(log Mahalanobis distance to the nearest class/source centre)))",
        "fitted_on": f"pooled features of {sum(len(f) for f in fits)} training images (pbc/train, every "
                     f"{args.train_step}th blood-cells/TRAIN); z on pbc/val + TEST_SIMPLE; w on even half of pbc/other",
        "temperature": t, **params})
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    check = Model(out)
    _, typ = check.assess(normalise(np.stack([load_for_model(p, check.input_size, check.info.preprocessing) for p, _ in genuine[:16]]),
                                    check.info.preprocessing))
    want = typicality(g_conf[:16], g_dist[:16], params)
    err = float(np.abs(typ - want).max())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); graph vs numpy typicality max |d| = {err:.2e}")
    if err > 1e-3:
        raise SystemExit("the typicality in the graph disagrees with the fitted formula")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
