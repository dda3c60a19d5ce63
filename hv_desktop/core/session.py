"""Save and restore a review session (results + reviewer labels) as JSON.

The GUI autosaves through this after every review action, atomically, so a
crash, a power cut or a kill loses at most the action in progress. Plain JSON:
a session file is data and can never run code when it is opened.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

from hv_desktop.core.batch import Result
from hv_desktop.core.export import atomic_write_text
from hv_desktop.core.paths import path_to_text, text_to_path

FORMAT = "hematovision-session"
FORMAT_VERSION = 1


class SessionError(Exception):
    pass


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
    }


def _encode(r: Result) -> dict[str, object]:
    return {
        "path": path_to_text(r.path),
        **result_fields(r),
        "timestamp": r.timestamp,
        "reviewer_label": r.reviewer_label,
        "case": r.case,
    }


#: A session file larger than this is not read (10,000 results take about 5 MB).
MAX_SESSION_BYTES = 512 * 1024 * 1024
_TEXT_FIELDS = ("label", "error", "sha256", "timestamp", "reviewer_label", "case")


def checked_text(v, limit: int = 4096) -> str | None:
    """None, or a text of at most ``limit`` characters; TypeError otherwise (files from outside are typed)."""
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise TypeError("not a short text")
    return v


def checked_number(v) -> float | None:
    """None, or a finite number (not a bool); TypeError otherwise."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError("not a finite number")
    return float(v)


def _decode(d) -> Result:
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
    )


def result_json(r: Result) -> str:
    """One result's JSON text, cached on the result: after classification only the reviewer's label (and the case
    it is filed under) changes,
    so an autosave after a review re-encodes one result, not the whole session."""
    cached = r._json
    key = (r.reviewer_label, r.case)
    if cached is not None and cached[0] == key:
        return cached[1]
    text = json.dumps(_encode(r), ensure_ascii=False)
    r._json = (key, text)
    return text


def session_json(results: Iterable[Result], model_name: str = "", model_version: str = "", extra: dict | None = None) -> str:
    """The session as JSON text, assembled from per-result texts (identical to one ``json.dumps``).

    Why: encoding 5,000 results costs ~40 ms of Python; in the GUI's autosave thread that competed for the GIL
    with the window and stalled its event loop by up to 75 ms at the end of a run. The window encodes each
    result as it arrives (``result_json``), so the autosave only joins strings.
    """
    head = json.dumps(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_name": model_name,
            "model_version": model_version,
            "extra": extra or {},
            "results": [],
        },
        ensure_ascii=False,
    )
    return head[:-3] + "[" + ", ".join(result_json(r) for r in results) + "]}"


def save_session(
    path: str | os.PathLike, results: Iterable[Result], model_name: str = "", model_version: str = "", extra: dict | None = None
) -> None:
    atomic_write_text(path, session_json(results, model_name, model_version, extra))


def load_session(path: str | os.PathLike) -> tuple[list[Result], dict]:
    """(results, header) or :class:`SessionError` with a plain message; never another exception.

    Bounded and typed: the file's size is capped, deep nesting and non-finite numbers are refused, and a result
    with a field of the wrong type is left out (counted in ``header["skipped"]``) instead of breaking the
    table later.
    """
    try:
        p = Path(path)
        if p.stat().st_size > MAX_SESSION_BYTES:
            raise SessionError("saved session is too large to restore")
        data = json.loads(p.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except SessionError:
        raise
    except FileNotFoundError:
        raise SessionError("no saved session") from None
    except RecursionError:
        raise SessionError("saved session is unreadable (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise SessionError(f"saved session is unreadable ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SessionError("not a HematoVision session file")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SessionError("saved session has no valid format version")
    if version > FORMAT_VERSION:
        raise SessionError("session saved by a newer HematoVision")
    items = data.get("results")
    if not isinstance(items, list):
        raise SessionError("saved session holds no result list")
    results, skipped = [], 0
    for d in items:
        try:
            results.append(_decode(d))
        except (TypeError, ValueError):
            skipped += 1
    header: dict[str, object] = {k: v for k, v in data.items() if k != "results" and isinstance(v, (str, int, float, type(None)))}
    extra = data.get("extra")
    header["extra"] = extra if isinstance(extra, dict) else {}  # its readers type-check what they take
    header["skipped"] = skipped
    return results, header


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a session holds")
