"""Load an ONNX classifier and everything needed to use it from the file itself.

The model is data, not code: labels, input size, normalisation, channel order,
calibration temperature and the needs-review threshold travel in the ONNX
file's metadata (key ``hematovision``, a JSON object), so a lab can drop in a
newer model without reinstalling. The file is read into memory and handed to
onnxruntime as bytes: an ONNX file that points at external weight files is
therefore refused instead of reading arbitrary paths beside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from hv_desktop.core.inference.metadata import DEFAULT_REVIEW_THRESHOLD as DEFAULT_REVIEW_THRESHOLD
from hv_desktop.core.inference.metadata import MAX_CROP_FRACTION as MAX_CROP_FRACTION
from hv_desktop.core.inference.metadata import METADATA_KEY, ModelMetadata
from hv_desktop.core.inference.metadata import ModelError as ModelError
from hv_desktop.core.system.files import NotRegularFile, not_regular_reason, read_regular

MAX_MODEL_BYTES = 512 * 1024 * 1024

#: Stated wherever a result is shown or exported.
INTENDED_USE = (
    "Decision support for trained laboratory staff: pre-classifies white blood cells for review. "
    "Not a diagnosis; every result must be confirmed by a qualified person."
)


#: What Microsoft calls the download that installs the DLLs onnxruntime (>= 1.21) needs on Windows.
VC_REDIST = "Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64)"


class RuntimeMissing(ModelError):
    """onnxruntime itself cannot be loaded (not the model file's fault): nothing can be classified here."""


def runtime_message(exc: ImportError) -> str:
    """What a person can do about onnxruntime failing to import, in words. Why: on a Windows PC without a
    current Visual C++ runtime its extension fails with "DLL load failed", which names no cause."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    if "DLL load failed" in text:
        return (
            "the ONNX runtime (onnxruntime) cannot start because Windows lacks a current Microsoft Visual C++ "
            f'runtime. Install the "{VC_REDIST}" from Microsoft (vc_redist.x64.exe), then start HematoVision '
            f"again. ({text})"
        )
    return f"the ONNX runtime (onnxruntime) cannot be loaded ({text}); reinstall HematoVision"


def load_onnxruntime() -> ModuleType:
    """The onnxruntime module, or a RuntimeMissing naming what to install (never a traceback)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeMissing(runtime_message(exc)) from None
    return onnxruntime


def runtime_problem() -> str | None:
    """Why no model can run on this PC (None: onnxruntime loads); asked once at start-up by the window."""
    try:
        load_onnxruntime()
    except RuntimeMissing as exc:
        return str(exc)
    return None


def _not_a_model(name: str, reason: str) -> ModelError:
    return ModelError(
        f"{name} is not a valid ONNX model ({reason})", plain=f"{name} is not a HematoVision model file", technical=reason
    )


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


def check_structure(data: bytes, name: str) -> None:
    """Refuse, before onnxruntime sees the bytes, what a HematoVision model never needs and an attacker can use:
    weights in external files (onnxruntime would read them relative to the working directory), control flow
    (an endless Loop hangs inference) and model-local functions (which could hide either)."""
    from hv_desktop.core.inference.onnx_proto import OnnxFile, ProtoError, parse

    try:
        f = OnnxFile(data)
        if any(x.number == 25 for x in f.model):
            raise ModelError(f"{name} defines its own functions, which HematoVision models do not use")
        for field_ in f.graph:
            if field_.number == 5:  # initializer: external_data (13) or data_location EXTERNAL (14 = 1)
                tensor = parse(bytes(field_.value))
                if any(t.number == 13 or (t.number == 14 and t.value == 1) for t in tensor):
                    raise ModelError(f"{name} refers to external data files, which are not allowed")
            elif field_.number == 1:
                ops = {bytes(t.value).decode("utf-8", "replace") for t in parse(bytes(field_.value)) if t.number == 4}
                bad = ops & _CONTROL_FLOW
                if bad:
                    raise ModelError(f"{name} uses control flow ({', '.join(sorted(bad))}), which HematoVision models never need")
    except ProtoError as exc:
        raise _not_a_model(name, str(exc)) from None


def read_metadata(raw: dict[str, str], path: Path) -> ModelMetadata:
    """The model's :class:`ModelMetadata` from onnxruntime's metadata map (a ModelError when unusable)."""
    if METADATA_KEY not in raw:
        raise ModelError(f"{path.name} is an ONNX model but not a HematoVision model (no '{METADATA_KEY}' metadata)")
    return ModelMetadata.from_json(raw[METADATA_KEY], path.name)


def _telemetry_off(ort: ModuleType) -> None:
    """onnxruntime can log events (process path, error texts) on some platforms: a clinic PC keeps none."""
    with contextlib.suppress(Exception):  # older or other builds without the switch
        ort.disable_telemetry_events()


class Model:
    """An onnxruntime session plus the metadata that says how to feed it."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = load_onnxruntime()
        _telemetry_off(ort)
        self.path = Path(path)
        #: the inference threads asked for (None: the default), so a model derived from this one runs the same way
        self.threads = threads
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

        self.info = read_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
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
        if len(shape) != 4 or any(isinstance(s, int) and s != w for s, w in zip(shape[1:], want, strict=True)):
            raise ModelError(f"{self.path.name}: input shape {shape} does not match metadata {prep.layout} {want}")
        self.input_name = inp.name
        self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        outs = {o.name: o for o in self.session.get_outputs()}
        names = list(outs)
        self.scores_name = self.info.scores_output or names[0]
        if self.scores_name not in outs:
            raise ModelError(f"{self.path.name}: output '{self.scores_name}' named in metadata is missing")
        oshape = outs[self.scores_name].shape
        if len(oshape) != 2 or (isinstance(oshape[1], int) and oshape[1] != len(self.info.labels)):
            raise ModelError(f"{self.path.name}: output shape {oshape} does not fit {len(self.info.labels)} labels")
        cam = self.info.cam_output
        self.cam_name = cam if cam in outs else None
        # Optional per-image typicality in [0, 1] (higher = more like the training cells), which the
        # needs-review threshold then applies to instead of the calibrated confidence.
        review = self.info.review_output
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
    """$HV_MODEL, else the shipped model, package data found like every shipped file (core.system.resources)."""
    from hv_desktop.core.system.resources import shipped_model_path

    env = os.environ.get("HV_MODEL")
    return Path(env) if env else shipped_model_path()
