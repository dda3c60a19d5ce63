"""Save and restore a review session (results + reviewer labels) as JSON.

The GUI autosaves through this after every review action, atomically, so a
crash, a power cut or a kill loses at most the action in progress. Plain JSON:
a session file is data and can never run code when it is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from hv_desktop.core.inference.result import Result, decode, result_json
from hv_desktop.core.system.writing import atomic_write_text

FORMAT = "hematovision-session"
FORMAT_VERSION = 1


class SessionError(Exception):
    pass


#: A session file larger than this is not read (10,000 results take about 5 MB).
MAX_SESSION_BYTES = 512 * 1024 * 1024


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
            results.append(decode(d))
        except (TypeError, ValueError):
            skipped += 1
    header: dict[str, object] = {k: v for k, v in data.items() if k != "results" and isinstance(v, (str, int, float, type(None)))}
    extra = data.get("extra")
    header["extra"] = extra if isinstance(extra, dict) else {}  # its readers type-check what they take
    header["skipped"] = skipped
    name, version = (str(data.get(k)) if isinstance(data.get(k), str) else "" for k in ("model_name", "model_version"))
    for r in results:  # saved before results named their model: the one the session was saved with made them
        if r.ok and not r.model_name:
            r.model_name, r.model_version = name, version
    return results, header


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number a session holds")
