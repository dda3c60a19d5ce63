"""One cell as a row of the case archive and back: every field checked as it enters (an ArchiveError names the one
that is not), nothing cut on load. A cell of a camera field keeps which cell of its field it is, its box, whether
the field's edge cuts it and whether the field had no white cell (issue 28), so a reopened case counts cells as
it did."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import uuid

from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.system.paths import path_to_text, text_to_path

CELL_COLUMNS = (
    "cell_id, case_id, position, path, sha256, label, confidence, probabilities, needs_review, typicality, error, "
    "timestamp, model_name, model_version, reviewer_label, cell_index, cell_box, cell_at_edge, no_cell"
)
#: Longest text a cell keeps (the session loader's bounds: a path, any other text, a probability table).
MAX_PATH, MAX_CELL_TEXT, MAX_CLASSES = 32768, 4096, 1000
#: Largest cell index and box coordinate kept (an image is at most 80 megapixels, so a side fits easily).
MAX_COORD = 10**7

_CELL_ID = "cell_id"
_RESULT_HAS_ID = any(f.name == _CELL_ID for f in dataclasses.fields(Result))


def cell_id_of(r: Result) -> str:
    """The cell's ID (given one now when it has none)."""
    cid = getattr(r, _CELL_ID, "") or ""
    if not cid:
        cid = uuid.uuid4().hex
        if _RESULT_HAS_ID:
            setattr(r, _CELL_ID, cid)
    return cid


def cell_row(cell_id: str, case_id: str, position: int, r: Result) -> tuple:
    """One cell as the archive stores it, every field checked (ArchiveError naming the one that is not)."""
    path = path_to_text(r.path)
    if len(path) > MAX_PATH:
        raise ArchiveError(f"a cell's file name is {len(path):,} characters long; at most {MAX_PATH:,} are kept")
    texts = (r.sha256, r.label, r.error, r.timestamp, r.model_name, r.model_version, r.reviewer_label, cell_id)
    if any(t is not None and (not isinstance(t, str) or len(t) > MAX_CELL_TEXT) for t in texts):
        raise ArchiveError(f"a text of the cell {path!r} is not a text of at most {MAX_CELL_TEXT:,} characters")
    numbers_ = [r.confidence, r.typicality, *r.probabilities.values()]
    if len(r.probabilities) > MAX_CLASSES or not all(n is None or _finite(n) for n in numbers_):
        raise ArchiveError(f"the classification of the cell {path!r} holds a value that is not a finite number")
    probabilities = json.dumps({str(k): float(v) for k, v in r.probabilities.items()}, ensure_ascii=False)
    index, box = _cell_place(r, path)
    return (
        cell_id, case_id, position, path, r.sha256, r.label, _float(r.confidence), probabilities,
        int(bool(r.needs_review)), _float(r.typicality), r.error, r.timestamp or "", r.model_name or "",
        r.model_version or "", r.reviewer_label or None, index, box, int(bool(r.cell_at_edge)), int(bool(r.no_cell)),
    )  # fmt: skip


def _cell_place(r: Result, path: str) -> tuple[int | None, str | None]:
    """The cell's index in its field and its box (JSON), checked; (None, None) for a single-cell image."""
    index, box = r.cell_index, r.cell_box
    if index is not None and (not _whole(index) or not 0 <= index <= MAX_COORD):
        raise ArchiveError(f"the cell {path!r} has a cell number that is not a whole number in [0, {MAX_COORD:,}]")
    if box is None:
        return index, None
    if len(box) != 4 or not all(_whole(v) and abs(v) <= MAX_COORD for v in box):
        raise ArchiveError(f"the cell {path!r} has a box that is not four whole numbers")
    return index, json.dumps([int(v) for v in box])


def result_of(row: tuple) -> Result:
    """The cell a row holds (TypeError / ValueError when the row is damaged)."""
    cell_id, case_id, _, path, sha, label, conf, probs, needs, typ, error, ts, name, version, reviewed = row[:15]
    index, box, at_edge, no_cell = row[15:]
    r = Result(
        path=text_to_path(path), label=label, confidence=conf, probabilities=json.loads(probs),
        needs_review=bool(needs), typicality=typ, error=error, sha256=sha, timestamp=ts, reviewer_label=reviewed,
        case=case_id, model_name=name, model_version=version, cell_index=None if index is None else int(index),
        cell_box=None if box is None else _box(json.loads(box)), cell_at_edge=bool(at_edge), no_cell=bool(no_cell),
    )  # fmt: skip
    if _RESULT_HAS_ID:
        setattr(r, _CELL_ID, cell_id)
    return r


def _box(v: object) -> tuple[int, int, int, int]:
    if not isinstance(v, list) or len(v) != 4 or not all(_whole(x) for x in v):
        raise ValueError("a cell's box is not four whole numbers")
    return int(v[0]), int(v[1]), int(v[2]), int(v[3])


def _whole(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Integral)


def _finite(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(float(v))  # numpy's too


def _float(v: float | None) -> float | None:
    return None if v is None else float(v)
