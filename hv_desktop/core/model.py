"""Load an ONNX classifier and everything needed to use it from the file itself.

The model is data, not code: labels, input size, normalisation, channel order,
calibration temperature and the needs-review threshold travel in the ONNX
file's metadata (key ``hematovision``, a JSON object), so a lab can drop in a
newer model without reinstalling. The file is read into memory and handed to
onnxruntime as bytes: an ONNX file that points at external weight files is
therefore refused instead of reading arbitrary paths beside it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hv_desktop.core.files import NotRegularFile, not_regular_reason, read_regular
from hv_desktop.core.preprocess import CROPS, Preprocessing

METADATA_KEY = "hematovision"
MAX_MODEL_BYTES = 512 * 1024 * 1024
DEFAULT_REVIEW_THRESHOLD = 0.6
#: A "cell" square up to twice the short side (padded with background): a site model for a lab whose cells
#: fill more of the frame than the training labs' (hv_desktop.core.adapt chooses it).
#: A "nucleus" square: from a cell and its rim up to a field of many cells, in nucleus radii.
MIN_CROP_RADII, MAX_CROP_RADII = 2.0, 40.0
MAX_CROP_FRACTION = 2.0

#: Stated wherever a result is shown or exported.
INTENDED_USE = (
    "Decision support for trained laboratory staff: pre-classifies white blood cells for review. "
    "Not a diagnosis; every result must be confirmed by a qualified person."
)


class ModelError(Exception):
    """A model file that cannot be used, with a message fit for a dialog.

    ``plain`` and ``technical``: for a file that is not a model at all, the one line for a person and the
    parser's own reason, which a terminal shows on a second line."""

    def __init__(self, message: str, plain: str = "", technical: str = "") -> None:
        super().__init__(message)
        self.plain, self.technical = plain or message, technical


def _not_a_model(name: str, reason: str) -> ModelError:
    return ModelError(
        f"{name} is not a valid ONNX model ({reason})", plain=f"{name} is not a HematoVision model file", technical=reason
    )


@dataclass
class ModelInfo:
    """What the metadata says about a model (shown in About and stamped on exports)."""

    name: str
    version: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    temperature: float = 1.0
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    output_kind: str = "logits"  # or "probabilities"
    extra: dict = field(default_factory=dict)


def decode_workers(cores: int | None = None) -> int:
    """Threads that read and decode images ahead of inference: half the cores, 1 to 4."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def default_threads(cores: int | None = None) -> int:
    """Inference threads: the cores the decoders leave free, up to 8.

    Measured on 2 cores (benchmarks/throughput.py): 1 inference thread + 1
    decoder gave 707 images/s end to end, 2 + 1 only 500 (oversubscribed),
    although 2 threads win when the model runs alone. $HV_THREADS overrides.
    """
    env = os.environ.get("HV_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cores = cores or os.cpu_count() or 1
    return max(1, min(8, cores - decode_workers(cores)))


_CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
MAX_LABELS = 64


def check_structure(data: bytes, name: str) -> None:
    """Refuse, before onnxruntime sees the bytes, what a HematoVision model never needs and an attacker can use:
    weights in external files (onnxruntime would read them relative to the working directory), control flow
    (an endless Loop hangs inference) and model-local functions (which could hide either)."""
    from hv_desktop.core.onnx_proto import OnnxFile, ProtoError, parse

    try:
        f = OnnxFile(data)
        if any(x.number == 25 for x in f.model):
            raise ModelError(f"{name} defines its own functions, which HematoVision models do not use")
        for field_ in f.graph:
            if field_.number == 5:  # initializer: external_data (13) or data_location EXTERNAL (14 = 1)
                tensor = parse(bytes(field_.value))  # type: ignore[arg-type]
                if any(t.number == 13 or (t.number == 14 and t.value == 1) for t in tensor):
                    raise ModelError(f"{name} refers to external data files, which are not allowed")
            elif field_.number == 1:
                ops = {
                    bytes(t.value).decode("utf-8", "replace")
                    for t in parse(bytes(field_.value))  # type: ignore[arg-type]
                    if t.number == 4
                }
                bad = ops & _CONTROL_FLOW
                if bad:
                    raise ModelError(f"{name} uses control flow ({', '.join(sorted(bad))}), which HematoVision models never need")
    except ProtoError as exc:
        raise _not_a_model(name, str(exc)) from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _num(v, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{what} must be a number in [{lo:g}, {hi:g}]")
    return float(v)


def _int(v, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v or not lo <= v <= hi:
        raise ValueError(f"{what} must be a whole number in [{lo}, {hi}]")
    return int(v)


def _str(v, what: str, limit: int = 200) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise ValueError(f"{what} must be a text of at most {limit} characters")
    return v


def _triple(v, what: str) -> tuple[float, float, float]:
    if not isinstance(v, list) or len(v) != 3:
        raise ValueError(f"{what} needs three values")
    return tuple(_num(x, what, -1e6, 1e6) for x in v)  # type: ignore[return-value]


def _parse_metadata(raw: dict[str, str], path: Path) -> ModelInfo:
    """The metadata, every field type-checked and bounded: a wrong type is a ModelError, never a traceback."""
    if METADATA_KEY not in raw:
        raise ModelError(f"{path.name} is an ONNX model but not a HematoVision model (no '{METADATA_KEY}' metadata)")
    if len(raw[METADATA_KEY]) > 8 * 1024 * 1024:
        raise ModelError(f"{path.name}: model metadata is too large")
    try:
        meta = json.loads(raw[METADATA_KEY], parse_constant=_refuse_constant)
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
        labels_raw = meta.get("labels")
        if not isinstance(labels_raw, list) or not 2 <= len(labels_raw) <= MAX_LABELS:
            raise ValueError(f"labels must be a list of 2 to {MAX_LABELS} names")
        labels = tuple(_str(x, "each label", 100) for x in labels_raw)
        p = meta.get("preprocessing", {})
        if not isinstance(p, dict):
            raise ValueError("preprocessing must be an object")
        prep = Preprocessing(
            width=_int(p.get("width", 224), "width", 8, 4096),
            height=_int(p.get("height", 224), "height", 8, 4096),
            mean=_triple(p.get("mean", [127.5] * 3), "mean"),
            std=_triple(p.get("std", [127.5] * 3), "std"),
            channel_order=_str(p.get("channel_order", "RGB"), "channel_order", 8).upper(),
            layout=_str(p.get("layout", "NHWC"), "layout", 8).upper(),
            crop=_str(p.get("crop", "none"), "crop", 32).lower(),
            crop_fraction=_num(p.get("crop_fraction", 1.0), "crop_fraction", 0.2, MAX_CROP_FRACTION),
            crop_radii=_num(p.get("crop_radii", 7.0), "crop_radii", MIN_CROP_RADII, MAX_CROP_RADII),
        )
        for key in ("scores_output", "cam_output", "review_output", "embedding_output"):
            if key in meta and meta[key] is not None:
                _str(meta[key], key, 256)
        info = ModelInfo(
            name=_str(meta.get("name", path.stem), "name"),
            version=_str(meta.get("version", "unknown"), "version", 64),
            labels=labels,
            preprocessing=prep,
            temperature=_num(meta.get("temperature", 1.0), "temperature", 1e-3, 1e3),
            review_threshold=_num(meta.get("review_threshold", DEFAULT_REVIEW_THRESHOLD), "review_threshold", 0, 1),
            output_kind=_str(meta.get("output_kind", "logits"), "output_kind", 32),
            extra={k: v for k, v in meta.items() if k not in ("labels", "preprocessing")},
        )
    except RecursionError:
        raise ModelError(f"{path.name}: model metadata is malformed (nested too deeply)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path.name}: model metadata is malformed ({exc})") from None
    problems = []
    if len(set(labels)) != len(labels):
        problems.append("labels must be at least two distinct names")
    if prep.channel_order not in ("RGB", "BGR") or prep.layout not in ("NHWC", "NCHW"):
        problems.append("channel order must be RGB/BGR and layout NHWC/NCHW")
    if prep.crop not in CROPS:
        problems.append(
            f"crop '{prep.crop}' is not one this app knows ({', '.join(CROPS)}): the model needs a newer HematoVision"
        )
    if any(s == 0 for s in prep.std):
        problems.append("mean and std need three values, std non-zero")
    if info.output_kind not in ("logits", "probabilities"):
        problems.append("output_kind must be 'logits' or 'probabilities'")
    if problems:
        raise ModelError(f"{path.name}: " + "; ".join(problems))
    return info


def _telemetry_off(ort) -> None:
    """onnxruntime can log events (process path, error texts) on some platforms: a clinic PC keeps none."""
    try:
        ort.disable_telemetry_events()
    except Exception:  # older or other builds without the switch
        pass


class Model:
    """An onnxruntime session plus the metadata that says how to feed it."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        _telemetry_off(ort)
        self.path = Path(path)
        odd = not_regular_reason(self.path)
        if odd and odd != "a folder":
            raise ModelError(f"{self.path.name} is {odd}, not a model file")
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise ModelError(f"model file not found: {self.path}") from None
        except OSError as exc:
            raise ModelError(f"model file cannot be read: {self.path} ({exc.strerror})") from None
        if self.path.is_dir():
            raise ModelError(f"{self.path} is a folder, not a model file")
        if size == 0:
            raise ModelError(f"{self.path.name} is empty (0 bytes)")
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"{self.path.name} is too large to be a HematoVision model ({size / 1e6:.0f} MB)")
        try:
            data = read_regular(self.path, MAX_MODEL_BYTES)
        except NotRegularFile as exc:
            raise ModelError(f"{self.path.name} is {exc.strerror}, not a model file") from None
        except OSError as exc:
            raise ModelError(f"model file cannot be read: {self.path} ({exc.strerror})") from None
        check_structure(data, self.path.name)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            text = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            if "external" in text.lower():
                raise ModelError(f"{self.path.name} refers to external data files, which are not allowed") from None
            raise _not_a_model(self.path.name, text) from None

        self.info = _parse_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self._check_signature()

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path.name}: expected one image input, found {len(inputs)}")
        inp = inputs[0]
        prep = self.info.preprocessing
        if inp.type != "tensor(float)":
            raise ModelError(f"{self.path.name}: input must be float32, is {inp.type}")
        want = (3, prep.height, prep.width) if prep.layout == "NCHW" else (prep.height, prep.width, 3)
        shape = inp.shape
        if len(shape) != 4 or any(isinstance(s, int) and s != w for s, w in zip(shape[1:], want)):
            raise ModelError(f"{self.path.name}: input shape {shape} does not match metadata {prep.layout} {want}")
        self.input_name = inp.name
        self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        outs = {o.name: o for o in self.session.get_outputs()}
        names = list(outs)
        self.scores_name = self.info.extra.get("scores_output", names[0])
        if self.scores_name not in outs:
            raise ModelError(f"{self.path.name}: output '{self.scores_name}' named in metadata is missing")
        oshape = outs[self.scores_name].shape
        if len(oshape) != 2 or (isinstance(oshape[1], int) and oshape[1] != len(self.info.labels)):
            raise ModelError(f"{self.path.name}: output shape {oshape} does not fit {len(self.info.labels)} labels")
        cam = self.info.extra.get("cam_output")
        self.cam_name = cam if cam in outs else None
        # Optional per-image typicality in [0, 1] (higher = more like the training cells), which the
        # needs-review threshold then applies to instead of the calibrated confidence.
        review = self.info.extra.get("review_output")
        if review is not None and review not in outs:
            raise ModelError(f"{self.path.name}: output '{review}' named in metadata is missing")
        self.review_name = review

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.preprocessing.width, self.info.preprocessing.height

    def probabilities(self, tensor: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities for an already-normalised batch."""
        return self.run(tensor, with_cam=False)[0]

    def assess(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, C), review values (N,)) from one inference pass.

        The review value is the model's own typicality output when it has one,
        else the calibrated confidence; below ``info.review_threshold`` means
        the cell needs a person's review.
        """
        if self.review_name is None:
            p = self.run(tensor)[0]
            return p, p.max(axis=1)
        outs = self._fetch(tensor, [self.scores_name, self.review_name])
        typ = np.asarray(outs[1], np.float64).reshape(-1)
        if typ.shape != (len(tensor),):
            raise ModelError(f"model returned review values of shape {np.shape(outs[1])}")
        return self._calibrate(outs[0], len(tensor)), np.nan_to_num(typ, nan=0.0).astype(np.float32)

    def _fetch(self, tensor: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if self.max_batch and len(tensor) > self.max_batch:
            parts = [
                self.session.run(names, {self.input_name: tensor[i : i + self.max_batch]})
                for i in range(0, len(tensor), self.max_batch)
            ]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]
        return self.session.run(names, {self.input_name: tensor})

    def _calibrate(self, raw: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(raw, dtype=np.float64)
        if scores.shape != (n, len(self.info.labels)):
            raise ModelError(f"model returned scores of shape {scores.shape}")
        if self.info.output_kind == "probabilities":
            scores = np.log(np.clip(scores, 1e-12, 1.0))
        z = scores / self.info.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return np.nan_to_num(p, nan=1.0 / p.shape[1]).astype(np.float32)

    def run(self, tensor: np.ndarray, with_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, C), class-activation maps (N, h, w, C) or None)."""
        names = [self.scores_name] + ([self.cam_name] if with_cam and self.cam_name else [])
        outs = self._fetch(tensor, names)
        cams = np.asarray(outs[1]) if len(outs) > 1 else None
        return self._calibrate(outs[0], len(tensor)), cams


def bundled_model_path() -> Path:
    """$HV_MODEL, else the shipped assets/model/hematovision.onnx (source tree or PyInstaller bundle)."""
    import sys

    env = os.environ.get("HV_MODEL")
    if env:
        return Path(env)
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2]))
    path = base / "assets" / "model" / "hematovision.onnx"
    installed = Path(sys.prefix) / "share" / "hematovision" / "model" / "hematovision.onnx"
    return path if path.exists() or not installed.exists() else installed
