"""The metadata a HematoVision model file carries: one dataclass, read by the app and written by training.

The model is data, not code: labels, preprocessing (input size, normalisation, channel order, crop), the
calibration temperature, the review rule, the embedding and head that site adaptation refits, where a site
model came from and the versions all travel in the ONNX file's metadata (key ``hematovision``, a JSON
object). :class:`ModelMetadata` is that object: :meth:`ModelMetadata.from_json` type-checks and bounds every
field (a wrong one is a :class:`ModelError` with a plain message, never a traceback) and
:meth:`ModelMetadata.to_json` writes it back. Keys this version does not know (a newer model's) are kept in
``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hv_desktop.core.imaging.preprocess import CROPS, MAX_CROP_FRACTION, Preprocessing
from hv_desktop.core.inference.colour import ChannelStats, reference_from

METADATA_KEY = "hematovision"
MAX_METADATA_CHARS = 8 * 1024 * 1024
MAX_LABELS = 64
DEFAULT_REVIEW_THRESHOLD = 0.6
#: A review threshold of 1 flags every cell: what a site model carries when its reviewed cells could not show that
#: the cells it would leave unflagged are right (hv_desktop.core.site.adapt.unflag_check, issue 27).
FLAG_ALL = 1.0


def needs_review(value: float, threshold: float) -> bool:
    """The one needs-review rule: the review value below the model's threshold, or every cell at FLAG_ALL; a value
    that is not a number is flagged (it compares false with everything)."""
    return threshold >= FLAG_ALL or not value >= threshold


OUTPUT_KINDS = ("logits", "probabilities")


class ModelError(Exception):
    """A model file that cannot be used, with a message fit for a dialog.

    ``plain`` and ``technical``: for a file that is not a model at all, the one line for a person and the
    parser's own reason, which a terminal shows on a second line."""

    def __init__(self, message: str, plain: str = "", technical: str = "") -> None:
        super().__init__(message)
        self.plain, self.technical = plain or message, technical


# ---------------------------------------------------------------------------------------------- field checks


def _num(v: Any, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{what} must be a number in [{lo:g}, {hi:g}]")
    return float(v)


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v or not lo <= v <= hi:
        raise ValueError(f"{what} must be a whole number in [{lo}, {hi}]")
    return int(v)


def _str(v: Any, what: str, limit: int = 200) -> str:
    if not isinstance(v, str) or len(v) > limit or not _encodable(v):
        raise ValueError(f"{what} must be a text of at most {limit} characters")
    return v


def _encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a lone surrogate would break every CSV stamped with it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _triple(v: Any, what: str) -> tuple[float, float, float]:
    if not isinstance(v, list) or len(v) != 3:
        raise ValueError(f"{what} needs three values")
    a, b, c = (_num(x, what, -1e6, 1e6) for x in v)
    return a, b, c


def _optional_name(meta: dict, key: str) -> str | None:
    value = meta.get(key)
    return None if value is None else _str(value, key, 256)


def _optional_text(meta: dict, key: str) -> str | None:
    value = meta.get(key)
    return None if value is None else _str(value, key, 2000)


def _optional_object(meta: dict, key: str) -> dict | None:
    value = meta.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def _optional_fields(meta: dict) -> dict[str, Any]:
    """The optional fields: output names, descriptive texts and objects (None when absent)."""
    names = ("scores_output", "cam_output", "review_output", "embedding_output")
    out: dict[str, Any] = {k: _optional_name(meta, k) for k in names}
    out.update({k: _optional_text(meta, k) for k in ("intended_use", "app_version_at_export", "exported", "architecture")})
    out.update({k: _optional_object(meta, k) for k in ("review_score", "head", "site_adaptation", "training_data", "metrics")})
    out["colour_reference"] = _optional_object(meta, "colour_reference")
    reference_from(out["colour_reference"])  # type-checked now, so a bad one is refused on load
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


#: The preprocessing keys :class:`Preprocessing` holds; any other (e.g. the "resize" description) is kept as is.
_PREP_KEYS = ("width", "height", "mean", "std", "channel_order", "layout", "crop", "crop_fraction", "crop_radii")


def _prep_keys(crop: str) -> tuple[str, ...]:
    """The keys :class:`Preprocessing` holds for a model with this crop: crop_radii belongs to the "nucleus" crop;
    on any other it is kept as written, like any unknown key (so older models round-trip to the same bytes)."""
    return _PREP_KEYS if crop == "nucleus" else _PREP_KEYS[:-1]


#: A "nucleus" square: from a cell and its rim up to a field of many cells, in nucleus radii.
MIN_CROP_RADII, MAX_CROP_RADII = 2.0, 40.0


def _preprocessing(p: Any) -> tuple[Preprocessing, dict]:
    if not isinstance(p, dict):
        raise ValueError("preprocessing must be an object")
    d = Preprocessing()
    crop = _str(p.get("crop", d.crop), "crop", 32).lower()
    keys = _prep_keys(crop)
    prep = Preprocessing(
        width=_int(p.get("width", d.width), "width", 8, 4096),
        height=_int(p.get("height", d.height), "height", 8, 4096),
        mean=_triple(p.get("mean", list(d.mean)), "mean"),
        std=_triple(p.get("std", list(d.std)), "std"),
        channel_order=_str(p.get("channel_order", d.channel_order), "channel_order", 8).upper(),
        layout=_str(p.get("layout", d.layout), "layout", 8).upper(),
        crop=crop,
        crop_fraction=_num(p.get("crop_fraction", d.crop_fraction), "crop_fraction", 0.2, MAX_CROP_FRACTION),
        crop_radii=_num(p.get("crop_radii", d.crop_radii), "crop_radii", MIN_CROP_RADII, MAX_CROP_RADII)
        if "crop_radii" in keys
        else d.crop_radii,
    )
    return prep, {k: v for k, v in p.items() if k not in keys}


# ---------------------------------------------------------------------------------------------- the dataclass


@dataclass
class ModelMetadata:
    """Everything a model file says about itself (shown in About, stamped on exports, used to feed it)."""

    name: str
    version: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    #: preprocessing keys beyond :class:`Preprocessing`'s, e.g. "resize" (the policy in words)
    preprocessing_notes: dict = field(default_factory=dict)
    temperature: float = 1.0  # calibration: softmax(scores / temperature)
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    output_kind: str = "logits"  # or "probabilities"
    scores_output: str | None = None  # None: the graph's first output
    cam_output: str | None = None
    #: a per-image typicality output the review threshold applies to (else the calibrated confidence)
    review_output: str | None = None
    review_score: dict | None = None  # how the typicality was fitted (training.review)
    embedding_output: str | None = None  # the pooled features the head reads (site adaptation refits the head)
    head: dict | None = None  # {"weight": initializer name, "bias": initializer name}
    site_adaptation: dict | None = None  # provenance of a site model (hv_desktop.core.site.adapt)
    intended_use: str | None = None
    app_version_at_export: str | None = None
    exported: str | None = None
    architecture: str | None = None
    training_data: dict | None = None
    metrics: dict | None = None
    #: the training labs' per-channel mean and spread of the crops the model sees (hv_desktop.core.inference.colour):
    #: what calibrate matches a lab's colours to
    colour_reference: dict | None = None
    #: keys this version does not know (a newer model's): kept and written back unchanged
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_json(cls, text: str, file_name: str = "model") -> ModelMetadata:
        """Parse and validate; ``file_name`` names the model in messages (its stem is the default name)."""
        if len(text) > MAX_METADATA_CHARS:
            raise ModelError(f"{file_name}: model metadata is too large")
        try:
            meta = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ModelError(f"{file_name}: model metadata is malformed (nested too deeply)") from None
        except ValueError as exc:
            raise ModelError(f"{file_name}: model metadata is malformed ({exc})") from None
        return cls.from_dict(meta, file_name)

    @classmethod
    def from_dict(cls, meta: Any, file_name: str = "model") -> ModelMetadata:
        try:
            out = cls._fields_from(meta, Path(file_name).stem)
        except RecursionError:
            raise ModelError(f"{file_name}: model metadata is malformed (nested too deeply)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{file_name}: model metadata is malformed ({exc})") from None
        problems = out.problems()
        if problems:
            raise ModelError(f"{file_name}: " + "; ".join(problems))
        return out

    @classmethod
    def _fields_from(cls, meta: Any, default_name: str) -> ModelMetadata:
        """Every field type-checked and bounded (ValueError names the first wrong one)."""
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
        labels_raw = meta.get("labels")
        if not isinstance(labels_raw, list) or not 2 <= len(labels_raw) <= MAX_LABELS:
            raise ValueError(f"labels must be a list of 2 to {MAX_LABELS} names")
        labels = tuple(_str(x, "each label", 100) for x in labels_raw)
        prep, notes = _preprocessing(meta.get("preprocessing", {}))
        return cls(
            name=_str(meta.get("name", default_name), "name"),
            version=_str(meta.get("version", "unknown"), "version", 64),
            labels=labels,
            preprocessing=prep,
            preprocessing_notes=notes,
            temperature=_num(meta.get("temperature", 1.0), "temperature", 1e-3, 1e3),
            review_threshold=_num(meta.get("review_threshold", DEFAULT_REVIEW_THRESHOLD), "review_threshold", 0, 1),
            output_kind=_str(meta.get("output_kind", "logits"), "output_kind", 32),
            **_optional_fields(meta),
            extra={k: v for k, v in meta.items() if k not in _KNOWN},
        )

    def problems(self) -> list[str]:
        """What makes the (well-typed) metadata unusable by this app, in words; [] when it is fine."""
        prep = self.preprocessing
        problems = []
        if len(set(self.labels)) != len(self.labels):
            problems.append("labels must be at least two distinct names")
        if prep.channel_order not in ("RGB", "BGR") or prep.layout not in ("NHWC", "NCHW"):
            problems.append("channel order must be RGB/BGR and layout NHWC/NCHW")
        if prep.crop not in CROPS:
            problems.append(
                f"crop '{prep.crop}' is not one this app knows ({', '.join(CROPS)}): the model needs a newer HematoVision"
            )
        if any(s == 0 for s in prep.std):
            problems.append("mean and std need three values, std non-zero")
        if self.output_kind not in OUTPUT_KINDS:
            problems.append("output_kind must be 'logits' or 'probabilities'")
        return problems

    def colour(self) -> ChannelStats | None:
        """The colour reference, typed (None: the model has none, so calibrate matches magnification only)."""
        return reference_from(self.colour_reference)

    # ------------------------------------------------------------------ writing

    def to_dict(self) -> dict:
        """The JSON object (fields that are None are left out; unknown keys are written back)."""
        prep = self.preprocessing
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("preprocessing", "preprocessing_notes", "extra") and value is not None:
                out[f.name] = list(value) if f.name == "labels" else value
        out["preprocessing"] = {
            **{k: getattr(prep, k) for k in _prep_keys(prep.crop)},
            "mean": list(prep.mean),
            "std": list(prep.std),
            **self.preprocessing_notes,
        }
        return out

    def to_json(self) -> str:
        """The text stored under :data:`METADATA_KEY` (keys sorted: the same metadata, the same bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_updates(self, **changes: Any) -> ModelMetadata:
        """A copy with fields (or unknown keys, into ``extra``) changed, validated like a file's."""
        known = {k: v for k, v in changes.items() if k in _FIELDS}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in _FIELDS}}
        updated = replace(self, **known, extra=extra)
        return ModelMetadata.from_dict(json.loads(updated.to_json()), self.name)


_FIELDS = frozenset(f.name for f in fields(ModelMetadata))
_KNOWN = (_FIELDS - {"preprocessing_notes", "extra"}) | {"preprocessing"}
