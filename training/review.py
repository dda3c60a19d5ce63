"""A typicality output for the needs-review rule, fitted on data and written into the ONNX graph.

    python -m training.review --model assets/model/hematovision.onnx [--layers five|last]

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

With ``--own-statistics`` (research, rules/own_stats_review.txt) each lab's cells are seen through the network
re-normalised on that lab's own images, for a network that calibrate re-normalises at a new lab.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise, open_image
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from training import renormalise as rn
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc, calibrate
from training.magnification import model_input_at

OUTPUT = "typicality"
SHRINK = 0.1  # covariance shrinkage (fixed: 0.01-1.0 changed the AUROC by < 0.003)
WEIGHTS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
#: Which features the distance is measured on. "last": the pooled vector the classifier reads (v1.1.0).
#: "five": per-channel mean and std of four inner blocks and the last feature map, one distance each, their
#: z-scores averaged: inner layers keep texture and colour that the last layer has learnt to ignore, which is
#: what tells a basophil or an immature granulocyte from the four classes (see MODEL_CARD.md).
LAYER_SETS = {
    "last": (None,),
    "five": ("block_9_add", "block_12_add", "block_15_add", "block_16_expand_relu", "out_relu"),
    "six": ("block_9_add", "block_12_add", "block_15_add", "block_16_expand_relu", "out_relu", None),
}
FULL_MAX = 1280  # above this many features, keep TOP_K eigen-directions exactly and one isotropic remainder
TOP_K = 256  # (a 2560 x 2560 whitening matrix would add 13 MB to the model file and the bundle)


def feature_tensor(proto) -> str:
    """The pooled feature vector: the input of the classifier MatMul that feeds ``logits``."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers["logits"]
    while node.op_type != "MatMul":
        node = producers[node.input[0]]
    return node.input[0]


def layer_tensor(proto, key: str | None) -> str:
    """The graph tensor of a Keras layer name (tf2onnx keeps it in the node names); None: the pooled vector."""
    if key is None:
        return feature_tensor(proto)
    pattern = re.compile(rf"/{key}(_\d+)?/")
    for n in proto.graph.node:
        if n.op_type in ("Add", "Clip", "Relu") and pattern.search(n.output[0]):
            return n.output[0]
    raise KeyError(f"no layer '{key}' in the graph")


def pooled_stats(a: np.ndarray) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(features, spatial axes): a 2-D tensor is already pooled; a 4-D map gives per-channel mean and std."""
    if a.ndim == 2:
        return a.astype(np.float64), None
    axes = (1, 2) if a.shape[1] == a.shape[2] else (2, 3)
    a = a.astype(np.float64)
    mean = a.mean(axes)
    std = np.sqrt(np.maximum((a * a).mean(axes) - mean * mean, 0.0))
    return np.concatenate([mean, std], 1), axes


def features_and_logits(
    proto, model: Model, paths: list[Path], layers: tuple = (None,), batch: int = 64, magnification: float = 1.0
) -> tuple[list[np.ndarray], np.ndarray, list]:
    """Per layer: features (N, D); the logits; per layer: spatial axes (None when already pooled).

    ``magnification`` != 1 first shows each image as another magnification would (training.magnification).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    names = [layer_tensor(proto, k) for k in layers]
    probe = type(proto)()
    probe.CopyFrom(proto)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    size, prep = model.input_size, model.info.preprocessing
    fs: list[list[np.ndarray]] = [[] for _ in names]
    ls, axes = [], [None] * len(names)
    rng = np.random.default_rng(0)

    def load(p: Path) -> np.ndarray:
        if magnification == 1.0:
            return load_for_model(p, size, prep)
        return model_input_at(open_image(p).convert("RGB"), magnification, rng, size, prep)

    for i in range(0, len(paths), batch):
        x = normalise(np.stack([load(p) for p in paths[i : i + batch]]), prep)
        out = session.run(["logits", *names], {model.input_name: x})
        ls.append(out[0])
        for j, a in enumerate(out[1:]):
            f, axes[j] = pooled_stats(a)
            fs[j].append(f)
    return [np.concatenate(f) for f in fs], np.concatenate(ls).astype(np.float64), axes


class Distance:
    """Squared Mahalanobis distance to the nearest of the class/source centres (shared covariance, shrunk).

    Up to FULL_MAX features the whitening is exact. Above, the TOP_K leading eigen-directions are kept
    exactly and the rest of the space is treated as isotropic, with the mean of its eigenvalues.
    """

    def __init__(self, features: np.ndarray, groups: np.ndarray):
        gs = np.unique(groups)
        self.centres = np.stack([features[groups == g].mean(0) for g in gs])
        resid = features - self.centres[np.searchsorted(gs, groups)]
        cov = resid.T @ resid / len(resid)
        cov += SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
        evals, evecs = np.linalg.eigh(cov)  # ascending
        if len(cov) <= FULL_MAX:
            self.proj, self.basis, self.scale, self.rest = evecs / np.sqrt(evals), None, None, 0.0
        else:
            self.basis, self.scale = evecs[:, -TOP_K:], 1.0 / np.sqrt(evals[-TOP_K:])
            self.proj, self.rest = None, float(evals[:-TOP_K].mean())

    def __call__(self, f: np.ndarray) -> np.ndarray:
        if self.basis is None:
            d = _sqdist(f @ self.proj, self.centres @ self.proj)
        else:
            yb, cb = f @ self.basis, self.centres @ self.basis
            d = _sqdist(yb * self.scale, cb * self.scale)
            d = d + np.maximum(_sqdist(f, self.centres) - _sqdist(yb, cb), 0.0) / self.rest
        return np.maximum(d.min(1), 1e-6)


ZMAX = 60.0  # the per-lab score is carried as exp(z); z is clipped to +-ZMAX so float32 keeps exp(z) finite and > 0


class LabDistance:
    """Each training lab judged on its own (rules/three_labs_bars.txt, R4/R5): one :class:`Distance` per lab, fitted
    on that lab's cells alone, its log distance standardised on that lab's genuine validation cells; a cell's score
    is the smallest over labs.

    Why: one covariance shared by three labs is widened by their differences, so a foreign cell looks typical and
    a genuine cell of the smallest lab looks foreign (three_labs_worst: AUROC against BCCD's cells 0.67-0.71).
    Returned as exp(z), a distance in the units of the rest of the formula, so the typicality, the app and site
    adaptation read it like the pooled distance.
    """

    def __init__(self, parts: list[Distance], means: list[float], stds: list[float]):
        self.parts, self.means, self.stds = parts, means, stds

    def __call__(self, f: np.ndarray) -> np.ndarray:
        z = np.min([(np.log(d(f)) - m) / sd for d, m, sd in zip(self.parts, self.means, self.stds, strict=True)], 0)
        return np.exp(np.clip(z, -ZMAX, ZMAX))


def youden_threshold(genuine: np.ndarray, other: np.ndarray) -> float:
    """The review threshold that maximises flagged non-target share minus flagged genuine share (Youden's J)."""
    best_thr, best_j = 0.5, -1.0
    for thr in np.unique(np.round(np.concatenate([genuine, other]), 4)):
        j = float(np.mean(other < thr) - np.mean(genuine < thr))
        if j > best_j:
            best_thr, best_j = float(thr), j
    return best_thr


def _sqdist(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (y * y).sum(1)[:, None] - 2 * y @ c.T + (c * c).sum(1)[None]


def confidence(logits: np.ndarray, t: float) -> np.ndarray:
    return calibrate(logits, t).max(1)


def typicality(conf: np.ndarray, dists: list[np.ndarray] | np.ndarray, p: dict) -> np.ndarray:
    """sigmoid(-(w z(-conf) + (1 - w) mean_l z(log d_l))); ``dists`` one array per layer (or one array)."""
    if isinstance(dists, np.ndarray):
        dists = [dists]
    means, stds = np.atleast_1d(p["dist_mean"]), np.atleast_1d(p["dist_std"])
    z = np.mean([(np.log(d) - m) / sd for d, m, sd in zip(dists, means, stds, strict=True)], axis=0)
    s = p["w"] * (-conf - p["conf_mean"]) / p["conf_std"] + (1 - p["w"]) * z
    return 1 / (1 + np.exp(s))


def add_output(
    proto, layers: list[tuple[str, tuple[int, int] | None, Distance | LabDistance]], p: dict, temperature: float
) -> None:
    """Append the typicality computation to the graph (opset 13-17 operators, all named review/...)."""
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph

    def const(name: str, value, dtype=np.float32) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), name=f"review/{name}"))
        return f"review/{name}"

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        g.node.append(helper.make_node(op, inputs, [f"review/{name}"], name=f"review/{name}", **attrs))
        return f"review/{name}"

    def wide(name: str, value: np.ndarray) -> str:
        # Large matrices are stored as float16 (half the file; typicality changes by < 1e-3) and widened
        # once when the session loads.
        return node("Cast", [const(f"{name}16", value, np.float16)], name, to=TensorProto.FLOAT)

    def sqdist(y: str, c: np.ndarray, tag: str) -> str:
        yy = node("ReduceSum", [node("Mul", [y, y], f"{tag}_y2"), axes1], f"{tag}_yy", keepdims=1)
        cross = node("MatMul", [y, const(f"{tag}_ct", c.T)], f"{tag}_cross")
        d0 = node("Sub", [yy, node("Mul", [cross, const(f"{tag}_two", 2.0)], f"{tag}_cross2")], f"{tag}_d0")
        return node("Add", [d0, const(f"{tag}_cc", (c * c).sum(1)[None])], f"{tag}_d")

    def distance_nodes(f: str, dist: Distance, tag: str) -> str:
        """Squared Mahalanobis distance to the nearest centre, as Distance.__call__ computes it: review/{tag}_dist."""
        if dist.basis is None:
            d = sqdist(node("MatMul", [f, wide(f"{tag}_proj", dist.proj)], f"{tag}_y"), dist.centres @ dist.proj, tag)
        else:
            yb = node("MatMul", [f, wide(f"{tag}_basis", dist.basis)], f"{tag}_yb")
            cb = dist.centres @ dist.basis
            d = sqdist(node("Mul", [yb, const(f"{tag}_scale", dist.scale)], f"{tag}_y"), cb * dist.scale, tag)
            r = node(
                "Max",
                [
                    node("Sub", [sqdist(f, dist.centres, f"{tag}_raw"), sqdist(yb, cb, f"{tag}_kept")], f"{tag}_r0"),
                    const(f"{tag}_zero2", 0.0),
                ],
                f"{tag}_r",
            )
            d = node("Add", [d, node("Mul", [r, const(f"{tag}_inv_rest", 1.0 / dist.rest)], f"{tag}_rs")], f"{tag}_dfull")
        return node(
            "Max", [node("ReduceMin", [d], f"{tag}_dmin", axes=[1], keepdims=0), const(f"{tag}_eps", 1e-6)], f"{tag}_dist"
        )

    axes1 = const("axes1", [1], np.int64)
    # calibrated confidence
    scaled = node("Div", ["logits", const("temperature", temperature)], "scaled")
    conf = node("ReduceMax", [node("Softmax", [scaled], "softmax", axis=1)], "confidence", axes=[1], keepdims=0)
    means, stds = np.atleast_1d(p["dist_mean"]), np.atleast_1d(p["dist_std"])
    zsum = None
    for i, (tensor, axes, dist) in enumerate(layers):
        tag = f"l{i}"
        f = tensor
        if axes is not None:  # per-channel mean and std over the map's spatial axes
            mean = node("ReduceMean", [tensor], f"{tag}_mean", axes=list(axes), keepdims=0)
            sq = node("ReduceMean", [node("Mul", [tensor, tensor], f"{tag}_x2")], f"{tag}_msq", axes=list(axes), keepdims=0)
            var = node(
                "Max",
                [node("Sub", [sq, node("Mul", [mean, mean], f"{tag}_m2")], f"{tag}_var0"), const(f"{tag}_zero", 0.0)],
                f"{tag}_var",
            )
            f = node("Concat", [mean, node("Sqrt", [var], f"{tag}_std")], f"{tag}_f", axis=1)
        else:
            f = node("Identity", [tensor], f"{tag}_f")  # named, so site adaptation can read the layer's features
        if isinstance(dist, LabDistance):
            ts = []
            for j, (part, m, sd) in enumerate(zip(dist.parts, dist.means, dist.stds, strict=True)):
                dj = distance_nodes(f, part, f"{tag}s{j}")
                logd = node("Log", [dj], f"{tag}s{j}_logd")
                za = node("Mul", [logd, const(f"{tag}s{j}_a", 1 / sd)], f"{tag}s{j}_za")
                ts.append(node("Add", [za, const(f"{tag}s{j}_b", -m / sd)], f"{tag}s{j}_z"))
            zmin = node("Min", [node("Min", ts, f"{tag}_zlab"), const(f"{tag}_zmax", ZMAX)], f"{tag}_zcap")
            zmin = node("Max", [zmin, const(f"{tag}_zfloor", -ZMAX)], f"{tag}_zclip")
            dmin = node("Exp", [zmin], f"{tag}_dist")
        else:
            dmin = distance_nodes(f, dist, tag)
        # (1 - w) / L * (log d - mean) / std, summed over layers
        k = (1 - p["w"]) / len(layers) / stds[i]
        z = node(
            "Add",
            [
                node("Mul", [node("Log", [dmin], f"{tag}_logd"), const(f"{tag}_k", k)], f"{tag}_zk"),
                const(f"{tag}_c", -k * means[i]),
            ],
            f"{tag}_z",
        )
        zsum = z if zsum is None else node("Add", [zsum, z], f"{tag}_zsum")
    a = -p["w"] / p["conf_std"]
    c = p["w"] * (-p["conf_mean"]) / p["conf_std"]
    s = node("Add", [node("Add", [node("Mul", [conf, const("a", a)], "sa"), zsum], "s0"), const("c", c)], "s")
    g.node.append(helper.make_node("Sigmoid", [node("Neg", [s], "neg_s")], [OUTPUT], name="review/typicality"))
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N"]))


class OwnStatistics:
    """Each lab's graph re-normalised on up to ``training.renormalise.MAX_IMAGES`` of its own training images
    (rules/own_stats_review.txt).

    Why: a network trained with per-lab batch normalisation is re-normalised at a new lab by calibrate, so its
    review rule must have seen every training lab the same way, each in its own normalisation, not through the
    mixture statistics the file carries. A folder's lab is its first path component (pbc/val -> pbc); its images
    come from the fit source of that lab, or, for a lab with none (pbc/other when PBC is held out), from the
    folder itself, as calibrate would at a new lab.
    """

    def __init__(self, proto, model: Model, fit_sources: list[str], n_images: int = 0):
        self._proto, self._model = proto, model
        self._n = max(rn.MIN_IMAGES, min(n_images, rn.MAX_IMAGES)) if n_images else rn.MAX_IMAGES
        self._sources = {rel.split("/")[0]: rel for rel in fit_sources}
        self._record = rn.read_record(model.info.extra, OnnxFile(proto.SerializeToString()))
        if self._record is None:
            raise SystemExit(f"{model.path.name} carries no training statistics (python -m training.analysis.source_stats)")
        self._cache: dict[str, object] = {}
        self._images: dict[str, np.ndarray] = {}

    def images(self, rel: str) -> np.ndarray:
        """The model input of the images ``rel``'s lab is re-normalised on (read once per lab)."""
        lab = rel.split("/")[0]
        if lab not in self._images:
            folder = self._sources.get(lab, rel)
            data = shared_root() / "data"
            paths = list_other(data) if folder == "pbc/other" else [p for p, _ in list_labelled(data / folder)]
            chosen = paths[:: max(1, -(-len(paths) // self._n))]
            prep = self._model.info.preprocessing
            self._images[lab] = normalise(np.stack([load_for_model(p, self._model.input_size, prep) for p in chosen]), prep)
        return self._images[lab]

    def proto_for(self, rel: str):
        import onnx

        lab = rel.split("/")[0]
        if lab not in self._cache:
            f = rn.renormalise(OnnxFile(self._proto.SerializeToString()), self._record, self.images(rel), self._model.input_name)
            self._cache[lab] = onnx.load_from_string(f.to_bytes())
            print(f"[own statistics] {lab}: re-normalised on its own images", flush=True)
        return self._cache[lab]

    def assess_as(self, path: Path, rel: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The written file at ``path``, re-normalised on ``rel``'s lab, assessing ``x``."""
        import tempfile

        f = rn.renormalise(OnnxFile(path.read_bytes()), self._record, self.images(rel), self._model.input_name)
        with tempfile.TemporaryDirectory() as tmp:
            q = Path(tmp) / "renormalised.onnx"
            q.write_bytes(f.to_bytes())
            return Model(q).assess(x)


def main(argv: list[str] | None = None) -> int:
    import onnx

    from training.export_onnx import read_metadata, set_metadata

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--out", type=Path, default=None, help="default: rewrite --model in place")
    ap.add_argument("--train-step", type=int, default=4, help="use every n-th blood-cells/TRAIN image")
    ap.add_argument(
        "--limit",
        type=int,
        default=0,
        help="images per split, and with --own-statistics per re-normalisation (quick checks only)",
    )
    ap.add_argument(
        "--layers",
        choices=sorted(LAYER_SETS),
        default="five",
        help="features the distance is measured on (v1.2.0: five; 'last' = the pooled vector, v1.1.0)",
    )
    ap.add_argument(
        "--magnifications",
        type=float,
        nargs="+",
        default=[1.0],
        help="also fit the typical region on training images at these magnifications "
        "(training.magnification), so another lab's magnification is not flagged by itself",
    )
    ap.add_argument(
        "--fit-sources",
        nargs="+",
        default=["pbc/train", "blood-cells/TRAIN"],
        help="labelled folders whose training cells define 'typical' (a one-lab model: only its lab)",
    )
    ap.add_argument(
        "--genuine",
        nargs="+",
        default=["pbc/val", "blood-cells/TEST_SIMPLE"],
        help="genuine validation folders the parts are standardised on",
    )
    ap.add_argument(
        "--per-lab",
        action="store_true",
        help="judge each cell against each training lab on its own (LabDistance); --fit-sources and --genuine "
        "then name the labs in the same order",
    )
    ap.add_argument(
        "--own-statistics",
        action="store_true",
        help="see each lab's cells through the network re-normalised on its own training images (the model must carry "
        "training statistics: training.analysis.source_stats; rules/own_stats_review.txt); needs --per-lab",
    )
    ap.add_argument(
        "--w-genuine",
        nargs="+",
        help="choose w by the AUROC against these genuine folders only (a subset of --genuine; default: all of them)",
    )
    ap.add_argument(
        "--w-floor",
        type=float,
        default=0.0,
        help="only a w whose AUROC against all --genuine folders reaches this is chosen (none does: chosen on all)",
    )
    args = ap.parse_args(argv)
    if args.w_genuine and not set(args.w_genuine) <= set(args.genuine):
        ap.error("--w-genuine names folders of --genuine")
    if args.per_lab and len(args.fit_sources) != len(args.genuine):
        ap.error("--per-lab pairs --fit-sources with --genuine: give one genuine folder per fit source")
    if args.own_statistics and not args.per_lab:
        ap.error("--own-statistics judges each lab in its own normalisation: it needs --per-lab")
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

    seen_as = OwnStatistics(proto, model, args.fit_sources, args.limit) if args.own_statistics else None

    def through(rel: str):
        """The graph a folder's cells are seen through: the model's, or (--own-statistics) its lab's re-normalised one."""
        return proto if seen_as is None else seen_as.proto_for(rel)

    keys = LAYER_SETS[args.layers]
    fits, groups = [], []
    for mi, mag in enumerate(args.magnifications):
        sources = [(rel, args.train_step if rel == "blood-cells/TRAIN" else 1) for rel in args.fit_sources]
        for gi, (rel, step) in enumerate(sources):
            items = take(list_labelled(data / rel)[::step])
            f, _, axes = features_and_logits(through(rel), model, [p for p, _ in items], keys, magnification=mag)
            fits.append(f)
            groups.append(np.asarray([y for _, y in items]) + 4 * gi + 4 * len(sources) * mi)
    groups_all = np.concatenate(groups)
    genuine_sets = [take(list_labelled(data / rel)) for rel in args.genuine]
    genuine = [it for items in genuine_sets for it in items]
    parts_g = [
        features_and_logits(through(rel), model, [p for p, _ in items], keys)
        for rel, items in zip(args.genuine, genuine_sets, strict=True)
    ]
    gf = [np.concatenate([pg[0][j] for pg in parts_g]) for j in range(len(keys))]
    gl = np.concatenate([pg[1] for pg in parts_g])
    dists: list[Distance] | list[LabDistance]
    if args.per_lab:
        n_src = len(args.fit_sources)
        fit_src = np.tile(np.repeat(np.arange(n_src), [len(f[0]) for f in fits[:n_src]]), len(args.magnifications))
        gen_lab = np.repeat(np.arange(n_src), [len(items) for items in genuine_sets])
        dists = []
        for j in range(len(keys)):
            feats = np.concatenate([f[j] for f in fits])
            parts = [Distance(feats[fit_src == s], groups_all[fit_src == s]) for s in range(n_src)]
            logs = [np.log(part(gf[j][gen_lab == s])) for s, part in enumerate(parts)]
            dists.append(LabDistance(parts, [float(v.mean()) for v in logs], [float(v.std() + 1e-9) for v in logs]))
    else:
        dists = [Distance(np.concatenate([f[j] for f in fits]), groups_all) for j in range(len(keys))]
    other = take(list_other(data))
    of, ol, _ = features_and_logits(through("pbc/other"), model, other, keys)
    g_conf, g_dist = confidence(gl, t), [d(f) for d, f in zip(dists, gf, strict=True)]
    o_conf, o_dist = confidence(ol, t), [d(f) for d, f in zip(dists, of, strict=True)]
    params = {
        "conf_mean": float(-g_conf.mean()),
        "conf_std": float(g_conf.std() + 1e-9),
        "dist_mean": [float(np.log(d).mean()) for d in g_dist],
        "dist_std": [float(np.log(d).std() + 1e-9) for d in g_dist],
    }
    if len(keys) == 1:  # the v1.1.0 metadata layout
        params["dist_mean"], params["dist_std"] = params["dist_mean"][0], params["dist_std"][0]
    # which genuine cells w is chosen against (rules/three_labs_nols_r.txt: within PBC, the issue's own figure)
    w_names = args.w_genuine or args.genuine
    in_w = np.concatenate([np.full(len(items), rel in w_names) for rel, items in zip(args.genuine, genuine_sets, strict=True)])
    table = []
    for wt in WEIGHTS:
        p = dict(params, w=wt)
        # higher typicality = genuine: AUROC of "other" scored by (1 - typicality)
        o_typ, g_typ_w = -typicality(o_conf[0::2], [d[0::2] for d in o_dist], p), -typicality(g_conf, g_dist, p)
        table.append((auroc(o_typ, g_typ_w[in_w]), auroc(o_typ, g_typ_w), wt))
        print(
            f"w={wt:<5} AUROC other(even half) vs {' + '.join(w_names)} = {table[-1][0]:.3f}; vs all genuine = {table[-1][1]:.3f}"
        )
    allowed = [row for row in table if row[1] >= args.w_floor]
    floor_met = bool(allowed)
    allowed = allowed or [max(table, key=lambda r: (r[1], r[2]))]
    best_auc, _, best_w = max(allowed)
    params["w"] = best_w
    print(f"chosen w={best_w} (validation AUROC {best_auc:.3f}; w=1 is confidence alone: {table[-1][0]:.3f})")

    g_typ = typicality(g_conf, g_dist, params)
    threshold = youden_threshold(g_typ, typicality(o_conf[0::2], [d[0::2] for d in o_dist], params))
    print(
        f"review threshold {threshold:.4f} (Youden J, genuine validation vs even half of pbc/other); "
        f"flags {np.mean(g_typ < threshold):.1%} of genuine validation cells"
    )

    add_output(proto, [(layer_tensor(proto, k), ax, d) for k, ax, d in zip(keys, axes, dists, strict=True)], params, t)
    meta = read_metadata(proto).with_updates(
        review_output=OUTPUT,
        review_threshold=threshold,
        review_score={
            "formula": "sigmoid(-(w*z(-confidence) + (1-w)*mean over layers of z(log Mahalanobis distance to the "
            "nearest class/source centre)))"
            + (
                "; per lab: the distance is exp(min over training labs of the log distance to that lab's centres in "
                "its own metric, standardised on its own genuine validation cells)"
                if args.per_lab
                else ""
            ),
            "per_lab": bool(args.per_lab),
            "own_statistics": bool(args.own_statistics),
            "layers": [k or "pooled features" for k in keys],
            "fitted_on": f"features of {sum(len(f[0]) for f in fits) // len(args.magnifications)} training images "
            f"({', '.join(args.fit_sources)}; every {args.train_step}th blood-cells/TRAIN"
            + (
                f"; each at magnifications {', '.join(f'x{m:g}' for m in args.magnifications)}"
                if args.magnifications != [1.0]
                else ""
            )
            + f"); z on {' + '.join(args.genuine)}; w on even half of pbc/other vs {' + '.join(w_names)}"
            + (
                (f" (all genuine AUROC >= {args.w_floor:g})" if floor_met else f" (no w reached {args.w_floor:g}: chosen on all)")
                if args.w_floor
                else ""
            ),
            "temperature": t,
            **params,
        },
    )
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    check = Model(out)
    prep = check.info.preprocessing
    x16 = normalise(np.stack([load_for_model(p, check.input_size, prep) for p, _ in genuine[:16]]), prep)
    if seen_as is not None:  # the written file, re-normalised on the first genuine folder's lab as calibrate would
        _, typ = seen_as.assess_as(out, args.genuine[0], x16)
    else:
        _, typ = check.assess(x16)
    want = typicality(g_conf[:16], [d[:16] for d in g_dist], params)
    err = float(np.abs(typ - want).max())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); graph vs numpy typicality max |d| = {err:.2e}")
    if err > 1e-3:
        raise SystemExit("the typicality in the graph disagrees with the fitted formula")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
