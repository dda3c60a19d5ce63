"""Research: re-normalise a model on a lab's own unlabelled images (AdaBN), written into a new model file.

Measured against `hematovision calibrate` alone and not shipped: docs/research/rules/renorm.txt and
docs/research/site_adaptation.md ▸ AdaBN inside calibrate.

Why it was tried: a network's batch normalisations were fitted to its training labs' images. At a lab with another
stain, camera or focus every channel's activations sit elsewhere, the layers after it misread them, and the
needs-review rule flags nearly every cell. Re-estimating each normalisation on a few dozen of the lab's images, so
each channel has the mean and spread it had on the training images, undoes part of that without a label.

How: the model file carries, under the metadata key ``renormalisation``, each folded normalisation's output tensor
and the per-channel mean and spread it had on training images (:func:`source_record`, written by
``training.analysis.source_stats``). :func:`renormalise` corrects the normalisations one at a time in graph order
(a layer's statistics depend on every correction before it; all at once diverges) and folds each correction into
the layer's own constants, so the result is an ordinary model file of the same graph. :func:`threshold_at_rate`
then sets the needs-review threshold so the lab's images are flagged as often as the training labs' validation
cells were (``reference_flag_rate``). Numpy and onnxruntime only, so it could move into the app unchanged.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hv_desktop.core.inference.onnx_proto import OnnxFile, ProtoError

#: The metadata key (inside the model's "hematovision" JSON) that holds the training statistics.
RECORD_KEY = "renormalisation"
#: Images re-normalised on: enough for a stable per-channel mean and spread, few enough for seconds.
MAX_IMAGES = 128
#: Fewer lab images than this give noisy statistics.
MIN_IMAGES = 20
#: A channel's correction is limited to this factor either way (a nearly dead channel must not explode).
MAX_GAIN = 5.0


class RenormaliseError(Exception):
    """A model or input that cannot be re-normalised, with a one-line message fit for a terminal or a dialog."""


class Unit(NamedTuple):
    """One folded normalisation: the tensor it writes, its scale and shift constants, and how they apply."""

    output: str
    scale: str
    shift: str
    kind: str  # "conv": weight and bias of a Conv; "affine": the Mul and Add constants after a depthwise Conv


@dataclass(frozen=True)
class Record:
    """The training labs' statistics a model file carries (see the module docstring)."""

    units: list[Unit]
    mean: list[np.ndarray]
    std: list[np.ndarray]
    reference_flag_rate: float


def find_units(f: OnnxFile) -> list[Unit]:
    """Every normalisation of the graph that can be re-estimated, in graph order."""
    nodes = f.nodes()
    inits = set(f.initializer_names)
    consumers: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for n in nodes:
        for i in n[1]:
            consumers.setdefault(i, []).append(n)

    def only_consumer(tensor: str, op: str) -> tuple[str, list[str], list[str]] | None:
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0][0] == op else None

    units = []
    for op, inputs, outputs in nodes:
        if op != "Conv" or not outputs:
            continue
        if len(inputs) == 3 and inputs[1] in inits and inputs[2] in inits:
            units.append(Unit(outputs[0], inputs[1], inputs[2], "conv"))
            continue
        mul = only_consumer(outputs[0], "Mul")
        add = only_consumer(mul[2][0], "Add") if mul and mul[2] else None
        scale = [i for i in mul[1] if i in inits] if mul else []
        shift = [i for i in add[1] if i in inits] if add and add[2] else []
        if add and scale and shift:
            units.append(Unit(add[2][0], scale[0], shift[0], "affine"))
    return units


def _session(data: bytes, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def channel_stats(
    f: OnnxFile, x: np.ndarray, tensors: list[str], input_name: str, threads: int | None = None, batch: int = 32
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per tensor: (mean, spread) per channel over images and positions of ``x`` (NCHW activations)."""
    probe = OnnxFile(f.to_bytes())
    for name in tensors:
        probe.add_output(name)
    session = _session(probe.to_bytes(), threads)
    counts = np.zeros(len(tensors))
    sums = [np.zeros(0)] * len(tensors)
    squares = [np.zeros(0)] * len(tensors)
    for i in range(0, len(x), batch):
        for j, o in enumerate(session.run(tensors, {input_name: x[i : i + batch]})):
            a = np.asarray(o, dtype=np.float64)
            if a.ndim != 4:
                raise RenormaliseError(f"normalisation output {tensors[j]} is not an image-shaped tensor")
            s, q = a.sum(axis=(0, 2, 3)), (a * a).sum(axis=(0, 2, 3))
            sums[j] = s if i == 0 else sums[j] + s
            squares[j] = q if i == 0 else squares[j] + q
            counts[j] += a.shape[0] * a.shape[2] * a.shape[3]
    stats = []
    for s, q, n in zip(sums, squares, counts, strict=True):
        mean = s / n
        stats.append((mean, np.sqrt(np.maximum(q / n - mean * mean, 0.0))))
    return stats


def _encode(arrays: list[np.ndarray]) -> str:
    return base64.b64encode(np.concatenate(arrays).astype("<f4").tobytes()).decode("ascii")


def source_record(f: OnnxFile, x: np.ndarray, input_name: str, reference_flag_rate: float, note: str) -> dict:
    """The metadata record for a model from (already normalised) images of its training labs."""
    units = find_units(f)
    if not units:
        raise RenormaliseError("the model has no folded normalisation to record")
    stats = channel_stats(f, x, [u.output for u in units], input_name)
    return {
        "units": [list(u) for u in units],
        "channels": [len(m) for m, _ in stats],
        "mean": _encode([m for m, _ in stats]),
        "std": _encode([s for _, s in stats]),
        "reference_flag_rate": round(float(reference_flag_rate), 4),
        "fitted_on": note,
    }


def read_record(extra: dict, f: OnnxFile) -> Record | None:
    """The file's record, checked against its graph; None when it has none. A record that does not fit the
    graph (edited, or copied from another model) is refused: corrections to the wrong layers would be silent."""
    raw = extra.get(RECORD_KEY)
    if raw is None:
        return None
    bad = RenormaliseError("the model's normalisation statistics are damaged or belong to another model")
    try:
        units = [Unit(*(str(v) for v in u)) for u in raw["units"]]
        channels = [int(c) for c in raw["channels"]]
        mean = np.frombuffer(base64.b64decode(raw["mean"], validate=True), dtype="<f4").astype(np.float64)
        std = np.frombuffer(base64.b64decode(raw["std"], validate=True), dtype="<f4").astype(np.float64)
        rate = float(raw["reference_flag_rate"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad from exc
    if units != find_units(f) or len(channels) != len(units) or sum(channels) != len(mean) or len(mean) != len(std):
        raise bad
    if not (0.0 <= rate < 1.0) or not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
        raise bad
    cuts = np.cumsum(channels)[:-1]
    try:
        for u, c in zip(units, channels, strict=True):
            scale = f.initializer(u.scale)
            rows = scale.size if u.kind == "affine" else scale.shape[0]  # Mul constant / Conv weight (out, in, kh, kw)
            if f.initializer(u.shift).size != c or rows != c:
                raise bad
    except (KeyError, ProtoError) as exc:
        raise bad from exc
    return Record(units, np.split(mean, cuts), np.split(std, cuts), rate)


def renormalise(
    f: OnnxFile,
    record: Record,
    x: np.ndarray,
    input_name: str,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> OnnxFile:
    """A copy of ``f`` whose normalisations give, on the lab's images ``x`` (normalised model input, NCHW or as
    the model takes it), each channel the training mean and spread of ``record``."""
    if len(x) < MIN_IMAGES:
        raise RenormaliseError(f"{len(x)} image(s) to re-normalise on; at least {MIN_IMAGES} are needed")
    cur = OnnxFile(f.to_bytes())
    for i, (unit, ms, ss) in enumerate(zip(record.units, record.mean, record.std, strict=True)):
        if cancel and cancel():
            raise RenormaliseError("cancelled")
        if progress:
            progress(i / len(record.units))
        ((mt, st),) = channel_stats(cur, x, [unit.output], input_name, threads)
        ok = (ss > 1e-4) & (st > 1e-4)
        k = np.clip(np.where(ok, ss / np.maximum(st, 1e-9), 1.0), 1 / MAX_GAIN, MAX_GAIN)
        mt = np.where(ok, mt, ms)
        a = cur.initializer(unit.scale).astype(np.float64)
        c = cur.initializer(unit.shift).astype(np.float64)
        # z' = (z - mt) k + ms, folded into the layer's scale (weight) and shift (bias)
        if unit.kind == "conv":
            cur.set_initializer(unit.scale, (a * k.reshape((-1,) + (1,) * (a.ndim - 1))).astype(np.float32))
            cur.set_initializer(unit.shift, ((c - mt) * k + ms).astype(np.float32))
        else:
            cur.set_initializer(unit.scale, (a * k.reshape(a.shape)).astype(np.float32))
            shape = c.shape
            new = (c - mt.reshape(shape)) * k.reshape(shape) + ms.reshape(shape)
            cur.set_initializer(unit.shift, new.astype(np.float32))
    if progress:
        progress(1.0)
    return cur


def review_values(f: OnnxFile, x: np.ndarray, input_name: str, review_output: str | None) -> np.ndarray | None:
    """The model's review values (its typicality output) on ``x``; None for a model without one."""
    if review_output is None:
        return None
    session = _session(f.to_bytes(), None)
    parts = [session.run([review_output], {input_name: x[i : i + 32]})[0] for i in range(0, len(x), 32)]
    return np.nan_to_num(np.concatenate([np.asarray(p, np.float64).reshape(-1) for p in parts]), nan=0.0)


def threshold_at_rate(review_values: np.ndarray, rate: float) -> float:
    """The review threshold under which ``rate`` of these images' review values fall (flagged: below it)."""
    v = np.sort(np.asarray(review_values, dtype=np.float64))
    if not len(v):
        raise RenormaliseError("no review values to set the threshold from")
    return float(np.clip(np.quantile(v, rate), 0.0, 1.0))
