"""One file's outcome (:class:`Result`) and its JSON form, shared by the session file, the autosave and consultation
packages: one definition of what a result holds and how it is written and read back."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hv_desktop.core.system.paths import path_to_text, text_to_path


@dataclass
class Result:
    """The outcome for one file: a prediction, or an error with a plain message."""

    path: Path
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    needs_review: bool = False
    #: the value the needs-review threshold was applied to (model typicality, or confidence)
    typicality: float | None = None
    error: str | None = None
    sha256: str | None = None
    timestamp: str = ""
    reviewer_label: str | None = None
    #: the case (sample) this cell belongs to in a review session ("" before cases are used)
    case: str = ""
    #: the model that produced this result (name, version): a row keeps it when the session's model changes
    model_name: str = ""
    model_version: str = ""
    #: the cell's identity (issue 30): packages, replies and merges match cells by it, never by their bytes (two
    #: identical files are two cells) or their display name; given when the result is made, kept in its JSON form
    cell_id: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)
    #: a camera field's white cell (issue 28, ``core.inference.fields``): its number in the field (1, 2, ... top to bottom;
    #: None for a file classified as one cell), its box (x0, y0, x1, y1, exclusive) in the stored image's pixels,
    #: and whether the field's border cuts it (left out of a differential by default, as in a manual count)
    cell_index: int | None = None
    cell_box: tuple[int, int, int, int] | None = None
    cell_at_edge: bool = False
    #: a field in which no white cell was found: its one row, neither an error nor a class
    no_cell: bool = False
    #: small RGB uint8 preview (only when asked for; never exported)
    thumbnail: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: ((reviewer_label, case), JSON text) cached by hv_desktop.core.storage.session.result_json
    _json: tuple[tuple[str | None, str], str] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def result_fields(r: Result) -> dict[str, object]:
    """One result's classification as JSON values, in the order a session file and a consultation package's case
    file both store it (each adds its own fields around these)."""
    return {
        "label": r.label,
        "confidence": r.confidence,
        "probabilities": r.probabilities,
        "needs_review": r.needs_review,
        "typicality": r.typicality,
        "error": r.error,
        "sha256": r.sha256,
        **cell_fields(r),
    }


#: What the one row of a field in which no white cell was found says (``Result.no_cell``).
NO_CELL = "no white cell found"


def cell_fields(r: Result) -> dict[str, object]:
    """A camera field's cell as JSON values; nothing for a file classified as one cell (its JSON stays as it was)."""
    if r.cell_index is None and r.cell_box is None and not r.no_cell and not r.cell_at_edge:
        return {}
    return {
        "cell_index": r.cell_index,
        "cell_box": None if r.cell_box is None else list(r.cell_box),
        "cell_at_edge": r.cell_at_edge,
        "no_cell": r.no_cell,
    }


def checked_cell_fields(d: dict) -> dict[str, Any]:
    """The :class:`Result` keywords of :func:`cell_fields` read back, typed (TypeError when one is not what a
    cell holds; absent ones take their defaults)."""
    index, box = d.get("cell_index"), d.get("cell_box")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 10**6):
        raise TypeError("cell_index is not a cell number")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in box):
            raise TypeError("cell_box is not four whole numbers")
        if not (0 <= box[0] <= box[2] <= 10**6 and 0 <= box[1] <= box[3] <= 10**6):
            raise TypeError("cell_box is not a box in an image")
        box = tuple(box)
    flags = {k: d.get(k, False) for k in ("cell_at_edge", "no_cell")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise TypeError("cell_at_edge / no_cell are not true/false")
    return {"cell_index": index, "cell_box": box, **flags}


def encode(r: Result) -> dict[str, object]:
    return {
        "path": path_to_text(r.path),
        **result_fields(r),
        "timestamp": r.timestamp,
        "reviewer_label": r.reviewer_label,
        "case": r.case,
        "model_name": r.model_name,
        "model_version": r.model_version,
        "cell_id": r.cell_id,
    }


_TEXT_FIELDS = ("label", "error", "sha256", "timestamp", "reviewer_label", "case", "model_name", "model_version")


def checked_text(v: object, limit: int = 4096) -> str | None:
    """None, or a text of at most ``limit`` characters; TypeError otherwise (files from outside are typed)."""
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise TypeError("not a short text")
    return v


_CELL_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def checked_cell_id(v: object) -> str | None:
    """None (not given), or a cell ID of 1-64 letters, digits, '-' and '_'; TypeError otherwise."""
    if v is None:
        return None
    if not isinstance(v, str) or not _CELL_ID.fullmatch(v):
        raise TypeError("not a cell ID")
    return v


def derived_cell_id(*parts: object) -> str:
    """The cell ID of a cell saved before cells had one: derived from what the file says of it, so every load of
    that file gives the same ID."""
    text = "\0".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def checked_number(v: object) -> float | None:
    """None, or a finite number (not a bool); TypeError otherwise."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError("not a finite number")
    return float(v)


def decode(d: object) -> Result:
    """One result, every field type-checked (TypeError when one is not what a session holds)."""
    if not isinstance(d, dict):
        raise TypeError("a result is not an object")
    path = checked_text(d.get("path"), 32768)
    if not path:
        raise TypeError("a result has no path")
    probs = d.get("probabilities") or {}
    if not isinstance(probs, dict) or len(probs) > 1000:
        raise TypeError("probabilities are not a table")
    texts = {k: checked_text(d.get(k)) for k in _TEXT_FIELDS}
    needs = d.get("needs_review", False)
    if not isinstance(needs, bool):
        raise TypeError("needs_review is not true/false")
    return Result(
        path=text_to_path(path),
        label=texts["label"],
        confidence=checked_number(d.get("confidence")),
        probabilities={checked_text(k) or "": checked_number(v) or 0.0 for k, v in probs.items()},
        needs_review=needs,
        typicality=checked_number(d.get("typicality")),
        error=texts["error"],
        sha256=texts["sha256"],
        timestamp=texts["timestamp"] or "",
        reviewer_label=texts["reviewer_label"],
        case=texts["case"] or "",
        model_name=texts["model_name"] or "",
        model_version=texts["model_version"] or "",
        cell_id=checked_cell_id(d.get("cell_id"))
        or derived_cell_id(path, texts["sha256"], texts["timestamp"], texts["case"], texts["error"]),
        **checked_cell_fields(d),
    )


def result_json(r: Result) -> str:
    """One result's JSON text, cached on the result: after classification only the reviewer's label (and the case
    it is filed under) changes,
    so an autosave after a review re-encodes one result, not the whole session."""
    cached = r._json
    key = (r.reviewer_label, r.case)
    if cached is not None and cached[0] == key:
        return cached[1]
    text = json.dumps(encode(r), ensure_ascii=False)
    r._json = (key, text)
    return text
