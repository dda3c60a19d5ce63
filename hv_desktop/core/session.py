"""Save and restore a review session (results + reviewer labels) as JSON.

The GUI autosaves through this after every review action, atomically, so a
crash, a power cut or a kill loses at most the action in progress. Plain JSON:
a session file is data and can never run code when it is opened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from hv_desktop.core.batch import Result
from hv_desktop.core.export import atomic_write_text

FORMAT = "hematovision-session"
FORMAT_VERSION = 1


class SessionError(Exception):
    pass


def _encode(r: Result) -> dict:
    return {"path": str(r.path), "label": r.label, "confidence": r.confidence, "probabilities": r.probabilities,
            "needs_review": r.needs_review, "typicality": r.typicality, "error": r.error, "sha256": r.sha256, "timestamp": r.timestamp,
            "reviewer_label": r.reviewer_label}


def _decode(d: dict) -> Result:
    return Result(path=Path(d["path"]), label=d.get("label"), confidence=d.get("confidence"),
                  probabilities={str(k): float(v) for k, v in (d.get("probabilities") or {}).items()},
                  needs_review=bool(d.get("needs_review")),
                  typicality=None if d.get("typicality") is None else float(d["typicality"]), error=d.get("error"), sha256=d.get("sha256"),
                  timestamp=d.get("timestamp") or "", reviewer_label=d.get("reviewer_label"))


def result_json(r: Result) -> str:
    """One result's JSON text, cached on the result: after classification only the reviewer's label changes,
    so an autosave after a review re-encodes one result, not the whole session."""
    cached = r._json
    if cached is not None and cached[0] == r.reviewer_label:
        return cached[1]
    text = json.dumps(_encode(r), ensure_ascii=False)
    r._json = (r.reviewer_label, text)
    return text


def session_json(results: Iterable[Result], model_name: str = "", model_version: str = "", extra: dict | None = None) -> str:
    """The session as JSON text, assembled from per-result texts (identical to one ``json.dumps``).

    Why: encoding 5,000 results costs ~40 ms of Python; in the GUI's autosave thread that competed for the GIL
    with the window and stalled its event loop by up to 75 ms at the end of a run. The window encodes each
    result as it arrives (``result_json``), so the autosave only joins strings.
    """
    head = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "model_name": model_name,
                       "model_version": model_version, "extra": extra or {}, "results": []}, ensure_ascii=False)
    return head[:-3] + "[" + ", ".join(result_json(r) for r in results) + "]}"


def save_session(path: str | os.PathLike, results: Iterable[Result], model_name: str = "",
                 model_version: str = "", extra: dict | None = None) -> None:
    atomic_write_text(path, session_json(results, model_name, model_version, extra))


def load_session(path: str | os.PathLike) -> tuple[list[Result], dict]:
    """(results, header) or :class:`SessionError` with a plain message."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise SessionError("not a HematoVision session file")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise SessionError("session saved by a newer HematoVision")
        results = [_decode(d) for d in data["results"]]
    except SessionError:
        raise
    except FileNotFoundError:
        raise SessionError("no saved session") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SessionError(f"saved session is unreadable ({exc.__class__.__name__})") from None
    header = {k: v for k, v in data.items() if k != "results"}
    return results, header
