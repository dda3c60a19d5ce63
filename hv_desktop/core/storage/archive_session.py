"""The open session in the case archive (schema v4): which cases the window has open, in order, the current one,
and the consultation, beside the cases, cells, reviews, sign-offs and audit the archive already holds.

Why: the archive is the one store of a session (issue 29); the JSON autosave, rewritten whole after every review,
went. Each write here is one small transaction (or part of the caller's); the window's restore reads the heads
of the open cases here and their cells in chunks (:meth:`hv_desktop.core.storage.archive.CaseArchive.cells_in_chunks`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from hv_desktop.core.cases.review import CaseInfo, SignOff
from hv_desktop.core.storage.archive_schema import ArchiveError, plain_json, snapshot, transaction

CURRENT, CONSULTATION = "current_case", "consultation"
MAX_VALUE_JSON = 64 * 1024 * 1024


@dataclass
class OpenCase:
    info: CaseInfo
    sign_off: SignOff | None


@dataclass
class OpenSession:
    """What the archive holds of the open session: its cases (without cells), the current one, the audit of those
    cases in the order it happened, the consultation's JSON form and how many cells the cases hold."""

    cases: list[OpenCase] = field(default_factory=list)
    current: str = ""
    audit: list[dict] = field(default_factory=list)
    consultation: object = None
    cells: int = 0


def set_value(conn: sqlite3.Connection, key: str, value: object) -> None:
    """One value of the session (JSON; None removes it), in the caller's transaction."""
    if value is None:
        conn.execute("DELETE FROM session WHERE key = ?", (key,))
        return
    text = plain_json(value, f"the session's {key}", MAX_VALUE_JSON)
    conn.execute(
        "INSERT INTO session (key, json) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET json = excluded.json", (key, text)
    )


def write_open(conn: sqlite3.Connection, case_ids: Sequence[str], current: str) -> None:
    """The open cases (only those the archive holds) and the current one, in the caller's transaction."""
    conn.execute("DELETE FROM open_cases")
    conn.executemany(
        "INSERT INTO open_cases (case_id, position) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM cases WHERE case_id = ?)",
        [(cid, i, cid) for i, cid in enumerate(case_ids)],
    )
    set_value(conn, CURRENT, current or None)


def record_open(conn: sqlite3.Connection, case_ids: Sequence[str], current: str) -> None:
    """:func:`write_open` as one transaction."""
    with transaction(conn, "list of open cases"):
        write_open(conn, case_ids, current)


def record_value(conn: sqlite3.Connection, key: str, value: object) -> None:
    """:func:`set_value` as one transaction."""
    with transaction(conn, f"session's {key}"):
        set_value(conn, key, value)


def open_case_ids(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT case_id FROM open_cases ORDER BY position")]


def read_open(conn: sqlite3.Connection) -> OpenSession:
    """The open session as the archive holds it, read in one snapshot (no cells: those come in chunks)."""
    try:
        with snapshot(conn):
            return _read_open(conn)
    except sqlite3.Error as exc:
        raise ArchiveError(f"the open session cannot be read from the case archive ({exc})") from exc


def _read_open(conn: sqlite3.Connection) -> OpenSession:
    rows = conn.execute(
        "SELECT c.case_id, c.operator, c.note, s.operator, s.at, s.override_reason, s.unreviewed_flagged, s.cell_types "
        "FROM open_cases o JOIN cases c ON c.case_id = o.case_id LEFT JOIN sign_offs s ON s.case_id = o.case_id "
        "ORDER BY o.position"
    ).fetchall()
    cases = [OpenCase(CaseInfo(*row[:3]), SignOff(*row[3:]) if row[3] is not None else None) for row in rows]
    values = {key: _json(text) for key, text in conn.execute("SELECT key, json FROM session")}
    audit = [
        audit_event(kind, at, text)
        for kind, at, text in conn.execute(
            "SELECT event, at, json FROM audit WHERE case_id IN (SELECT case_id FROM open_cases) ORDER BY id"
        )
    ]
    cells = conn.execute("SELECT count(*) FROM cells WHERE case_id IN (SELECT case_id FROM open_cases)").fetchone()[0]
    current = values.get(CURRENT)
    return OpenSession(cases, current if isinstance(current, str) else "", audit, values.get(CONSULTATION), cells)


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def audit_event(kind: str, at: str, text: str) -> dict:
    """An audit row as the event it stored (one that cannot be parsed is shown by its columns, never dropped)."""
    event = _json(text)
    return event if isinstance(event, dict) else {"event": kind, "at": at, "unreadable": text}
