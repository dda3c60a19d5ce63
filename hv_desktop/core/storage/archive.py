"""The case archive: a lab's cases, their cells, reviews, sign-offs and audit trail, kept for years in one SQLite
file (the standard library's sqlite3, WAL).

Why: a session used to be one JSON autosave rewritten whole after every review (a 10,000-cell session froze the
window while it restored, and there was no archive of signed cases). Here each change is one small transaction:
nothing is ever rewritten whole, a kill -9 loses at most the change in progress, and a signed case can be found
again by its sample ID, date, operator or status. Limits are enforced when data enters, never by dropping on load.

One :class:`CaseArchive` per thread (sqlite3 connections stay on the thread that opened them); WAL lets another
connection (a loader thread, a second window) read while this one writes. The file's schema and its migrations
are in :mod:`hv_desktop.core.storage.archive_schema`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hv_desktop.core.cases.review import (
    MAX_CASE_ID,
    MAX_NAME,
    MAX_NOTE,
    MAX_REASON,
    RECLASSIFIED_FIELDS,
    CaseInfo,
    SignOff,
    check_text,
    sign_off,
)
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive_import import ImportPlan, ImportReport, SessionFile, plan_import, read_session_file
from hv_desktop.core.storage.archive_rows import CELL_COLUMNS, cell_id_of, cell_row, result_of
from hv_desktop.core.storage.archive_schema import (
    ArchiveError,
    ArchiveLocked,
    ArchiveTooNew,
    connect,
    fold,
    plain_json,
    snapshot,
    transaction,
)
from hv_desktop.core.storage.archive_session import CONSULTATION, open_case_ids, set_value, write_open
from hv_desktop.core.storage.archive_session import audit_event as _audit_event
from hv_desktop.core.system.paths import path_to_text

__all__ = ["ArchiveError", "ArchiveLocked", "ArchiveTooNew", "ArchivedCase", "CaseArchive", "CaseSummary", "ImportReport"]

#: Result's per-cell ID (added to Result by the cells-in-a-field work); read and set by name so this module works
#: with a Result that has it and one that does not yet.
#: The cell columns, in the order :func:`_cell_row` writes them.
MAX_AUDIT_JSON = 100_000


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass
class CaseSummary:
    """One row of the archive's case list."""

    case_id: str
    operator: str
    created_at: str
    status: str
    n_cells: int
    n_reviewed: int
    signed_by: str = ""
    signed_at: str = ""


@dataclass
class ArchivedCase:
    """A case read back whole: its details, its cells in the order they were added, its sign-off and audit."""

    info: CaseInfo
    created_at: str
    status: str
    results: list[Result]
    sign_off: SignOff | None
    audit: list[dict] = field(default_factory=list)

    @property
    def locked(self) -> bool:
        return self.sign_off is not None


class CaseArchive:
    """The archive file, opened (a context manager). Every method that changes something is one transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn, self.path = conn, path

    @classmethod
    def open(cls, path: str | os.PathLike) -> CaseArchive:
        """Open (or create) the archive at ``path``; ArchiveError when it is not one, is damaged or is newer."""
        return cls(connect(path), Path(path))

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for the records kept beside the cases (:mod:`hv_desktop.core.storage.archive_session`)."""
        return self._conn

    def __enter__(self) -> CaseArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- cases
    def upsert_case(self, info: CaseInfo, created_at: str = "") -> None:
        """Add a case, or change its operator and note (refused once it is signed off). ``created_at``: when it
        was opened (default now; kept from the first call)."""
        case_id = _checked("case ID", info.case_id, MAX_CASE_ID)
        if not case_id:
            raise ArchiveError("a case needs an ID (the sample's)")
        if case_id != info.case_id:
            raise ArchiveError("a case ID cannot begin or end with a space")
        operator = _checked("name", info.operator, MAX_NAME)
        note = _checked("note", info.note, MAX_NOTE)
        with transaction(self._conn, "case") as c:
            if self._status(case_id, missing_ok=True) == "signed":
                raise self._locked(case_id)
            c.execute(
                "INSERT INTO cases (case_id, operator, note, created_at, id_key, operator_key) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (case_id) DO UPDATE SET operator = excluded.operator, note = excluded.note, "
                "operator_key = excluded.operator_key",
                (case_id, operator, note, created_at or _now(), fold(case_id), fold(operator)),
            )

    def add_cells(self, case_id: str, results: Sequence[Result]) -> list[str]:
        """Add cells to an open case, after the ones it holds, in one transaction; their IDs (a result's own
        ``cell_id`` where it has one; a new one, also set on the result, where it is empty)."""
        ids = [cell_id_of(r) for r in results]
        with transaction(self._conn, "cells"):
            if self._status(case_id) == "signed":
                raise self._locked(case_id)
            self._insert_cells(case_id, list(zip(ids, results, strict=True)))
        return ids

    def _insert_cells(self, case_id: str, cells: list[tuple[str, Result]]) -> None:
        start = self._conn.execute("SELECT coalesce(max(position), -1) + 1 FROM cells WHERE case_id = ?", (case_id,))
        first = start.fetchone()[0]
        rows = [cell_row(cid, case_id, first + i, r) for i, (cid, r) in enumerate(cells)]
        try:
            self._conn.executemany(
                f"INSERT INTO cells ({CELL_COLUMNS}) VALUES ({', '.join('?' * CELL_COLUMNS.count(','))}, ?)", rows
            )
        except sqlite3.IntegrityError as exc:
            raise ArchiveError(f"a cell is already in the archive, or its case is not ({exc})") from exc

    def reclassify(self, cells: Iterable[tuple[str, Result]]) -> None:
        """A model change: (cell ID, fresh result) pairs; each cell takes the fresh classification and keeps its
        case, position and review. One transaction; refused when a cell's case is signed off."""
        names = [n for n in RECLASSIFIED_FIELDS if n != "probabilities"]
        sql = f"UPDATE cells SET {', '.join(f'{n} = ?' for n in names)}, probabilities = ? WHERE cell_id = ?"
        with transaction(self._conn, "new classification") as c:
            for cid, r in cells:
                self._cell_case(cid, open_only=True)
                row = cell_row(cid, "", 0, r)
                values = dict(zip(CELL_COLUMNS.replace(" ", "").split(","), row, strict=True))
                c.execute(sql, [values[n] for n in names] + [values["probabilities"], cid])

    # --- review
    def set_review(self, cell_id: str, label: str | None) -> None:
        """The reviewer's label of one cell (None: cleared), one transaction; ArchiveLocked when its case is
        signed off."""
        self.set_reviews([(cell_id, label)])

    def set_reviews(self, reviews: Iterable[tuple[str, str | None]]) -> None:
        """Several labels at once (accept-all, an undo step): all or none."""
        with transaction(self._conn, "review") as c:
            for cell_id, label in reviews:
                if label is not None:
                    label = _checked("label", label, MAX_NAME) or None
                self._cell_case(cell_id, open_only=True, classified=True)
                c.execute("UPDATE cells SET reviewer_label = ? WHERE cell_id = ?", (label, cell_id))

    def sign_off(self, case_id: str, signed: SignOff) -> SignOff:
        """Sign a case off (the rule of :func:`hv_desktop.core.cases.review.sign_off`, applied to the cells as the
        archive holds them) and lock it; audited. The sign-off stored."""
        with transaction(self._conn, "sign-off"):
            if self._status(case_id) == "signed":
                raise self._locked(case_id)
            results = self._results(case_id)
            try:
                s = sign_off(results, signed.operator, signed.at, signed.override_reason, signed.cell_types)
            except ValueError as exc:
                raise ArchiveError(str(exc)) from exc
            self._insert_sign_off(case_id, s)
            self._insert_audit(case_id, {"event": "signed off", "case": case_id, **s.as_dict()})
        return s

    def _insert_sign_off(self, case_id: str, s: SignOff) -> None:
        self._conn.execute(
            "INSERT INTO sign_offs (case_id, operator, at, override_reason, unreviewed_flagged, cell_types, operator_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (case_id, s.operator, s.at, s.override_reason, s.unreviewed_flagged, s.cell_types, fold(s.operator)),
        )
        self._conn.execute("UPDATE cases SET status = 'signed' WHERE case_id = ?", (case_id,))

    def unlock(self, case_id: str, reason: str, at: str) -> bool:
        """Unlock a signed-off case with a reason (audited); False when it was not signed off."""
        if not reason.strip():
            raise ArchiveError("give a reason: it is kept with the case")
        reason = _checked("reason", reason, MAX_REASON)
        with transaction(self._conn, "unlock") as c:
            row = c.execute("SELECT operator FROM sign_offs WHERE case_id = ?", (case_id,)).fetchone()
            if row is None:
                self._status(case_id)  # an unknown case is an error, an open one is not
                return False
            c.execute("DELETE FROM sign_offs WHERE case_id = ?", (case_id,))
            c.execute("UPDATE cases SET status = 'open' WHERE case_id = ?", (case_id,))
            event = {"event": "unlocked", "case": case_id, "at": at, "reason": reason, "was_signed_by": row[0]}
            self._insert_audit(case_id, event)
        return True

    def add_audit(self, case_id: str, event: dict) -> None:
        """One event of the case's audit trail (a JSON object; its "event" and "at" are also kept as columns)."""
        with transaction(self._conn, "audit event"):
            self._status(case_id)
            self._insert_audit(case_id, event)

    def _insert_audit(self, case_id: str | None, event: dict) -> None:
        text = plain_json(event, "an audit event", MAX_AUDIT_JSON)
        kind, at = event.get("event"), event.get("at")
        self._conn.execute(
            "INSERT INTO audit (case_id, event, at, json) VALUES (?, ?, ?, ?)",
            (case_id, kind if isinstance(kind, str) else "", at if isinstance(at, str) else "", text),
        )

    # --- finding and reading
    def find_cases(
        self,
        text: str = "",
        operator: str = "",
        status: str = "",
        date_from: str = "",
        date_to: str = "",
        limit: int = 200,
        prefix: bool = False,
    ) -> list[CaseSummary]:
        """Cases, newest first: ``text`` within the sample ID (``prefix``: at its start, by the index), any case;
        ``operator``: the case's operator or who signed it off, whole name; both case-insensitive. ``status``:
        "open" or "signed". ``date_from`` / ``date_to``: ISO dates or times the case was opened on or between,
        both ends included ("2026-11" is the whole month)."""
        if status not in ("", "open", "signed"):
            raise ArchiveError(f"no such case status: {status!r} (open or signed)")
        where, args = ["1"], []
        if text and prefix:
            where.append("id_key >= ? AND id_key < ?")
            args += [fold(text), fold(text) + "\U0010ffff"]
        elif text:
            where.append("id_key LIKE ? ESCAPE '\\'")
            args.append("%" + fold(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if operator:
            where.append("(operator_key = ? OR case_id IN (SELECT case_id FROM sign_offs WHERE operator_key = ?))")
            args += [fold(operator.strip())] * 2
        if status:
            where.append("status = ?")
            args.append(status)
        if date_from:
            where.append("created_at >= ?")
            args.append(date_from)
        if date_to:
            where.append("created_at < ?")
            args.append(date_to + "\U0010ffff")  # every time on that day (month, year) sorts below this
        sql = (
            "SELECT c.case_id, c.operator, c.created_at, c.status, "
            "(SELECT count(*) FROM cells WHERE case_id = c.case_id), "
            "(SELECT count(reviewer_label) FROM cells WHERE case_id = c.case_id), "
            "coalesce(s.operator, ''), coalesce(s.at, '') "
            f"FROM (SELECT * FROM cases WHERE {' AND '.join(where)} ORDER BY created_at DESC, case_id LIMIT ?) c "
            "LEFT JOIN sign_offs s ON s.case_id = c.case_id ORDER BY c.created_at DESC, c.case_id"
        )
        return [CaseSummary(*row) for row in self._read(sql, [*args, max(0, limit)])]

    def load_case(self, case_id: str) -> ArchivedCase:
        """A case whole; ArchiveError when the archive has no such case."""
        with snapshot(self._conn):
            row = self._read("SELECT case_id, operator, note, created_at, status FROM cases WHERE case_id = ?", [case_id])
            if not row:
                raise ArchiveError(f"the archive has no case {case_id!r}")
            cid, operator, note, created_at, status = row[0]
            signed = self._read(
                "SELECT operator, at, override_reason, unreviewed_flagged, cell_types FROM sign_offs WHERE case_id = ?",
                [case_id],
            )
            audit = self._read("SELECT event, at, json FROM audit WHERE case_id = ? ORDER BY id", [case_id])
            results = self._results(case_id)
        return ArchivedCase(
            CaseInfo(cid, operator, note),
            created_at,
            status,
            results,
            SignOff(*signed[0]) if signed else None,
            [_audit_event(*a) for a in audit],
        )

    def has_case(self, case_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM cases WHERE case_id = ?", [case_id]))

    def case_of(self, cell_id: str) -> str:
        """The case a cell belongs to; ArchiveError when the archive has no such cell."""
        return self._cell_case(cell_id)

    def cells_in_chunks(self, case_ids: Sequence[str], chunk: int = 500) -> Iterator[list[Result]]:
        """The cells of ``case_ids``, case by case in the order they were added, ``chunk`` at a time (a window adds
        one chunk per event-loop turn); each chunk is one short read by the case's position index."""
        out: list[Result] = []
        sql = f"SELECT {CELL_COLUMNS} FROM cells WHERE case_id = ? AND position > ? ORDER BY position LIMIT ?"
        for case_id in case_ids:
            after = -1
            while rows := self._read(sql, [case_id, after, max(1, chunk) - len(out)]):
                out += self._parsed(case_id, rows)
                after = rows[-1][2]
                if len(out) >= max(1, chunk):
                    yield out
                    out = []
        if out:
            yield out

    def _parsed(self, case_id: str, rows: list[tuple]) -> list[Result]:
        try:
            return [result_of(row) for row in rows]
        except (TypeError, ValueError) as exc:
            raise ArchiveError(f"a cell of the case {case_id!r} is damaged in the archive ({exc})") from exc

    def _results(self, case_id: str) -> list[Result]:
        rows = self._read(f"SELECT {CELL_COLUMNS} FROM cells WHERE case_id = ? ORDER BY position", [case_id])
        return self._parsed(case_id, rows)

    def _read(self, sql: str, args: Sequence[object]) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise ArchiveError(f"the case archive cannot be read ({exc})") from exc

    # --- checks made inside a transaction
    def _status(self, case_id: str, missing_ok: bool = False) -> str:
        row = self._conn.execute("SELECT status FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None and not missing_ok:
            raise ArchiveError(f"the archive has no case {case_id!r}")
        return row[0] if row else ""

    def _cell_case(self, cell_id: str, open_only: bool = False, classified: bool = False) -> str:
        row = self._read(
            "SELECT c.case_id, k.status, c.error FROM cells c JOIN cases k ON k.case_id = c.case_id WHERE c.cell_id = ?",
            [cell_id],
        )
        if not row:
            raise ArchiveError(f"the archive has no cell {cell_id!r}")
        case_id, status, error = row[0]
        if open_only and status == "signed":
            raise self._locked(case_id)
        if classified and error is not None:
            raise ArchiveError(f"the cell {cell_id!r} was not classified ({error}): there is nothing to review")
        return case_id

    def _locked(self, case_id: str) -> ArchiveLocked:
        row = self._conn.execute("SELECT operator, at FROM sign_offs WHERE case_id = ?", (case_id,)).fetchone()
        who = f" by {row[0]} at {row[1]}" if row else ""
        return ArchiveLocked(f"the case {case_id!r} is signed off{who}: unlock it to change it")

    # --- one-time import of a JSON autosave
    def import_session_json(self, path: str | os.PathLike) -> ImportReport:
        """Import a review session's JSON autosave whole, in one transaction; importing the same file again adds
        nothing (``already_imported``). The file is only read: the caller renames it once this returns."""
        return self.import_session_file(read_session_file(path), path)

    def import_session_file(self, file: SessionFile, path: str | os.PathLike, open_them: bool = False) -> ImportReport:
        """:meth:`import_session_json` of a file already read; ``open_them``: its cases join the open session (the
        current case and the consultation become the file's), in the same transaction."""
        with transaction(self._conn, "import") as c:
            seen = c.execute("SELECT report FROM imports WHERE sha256 = ?", (file.fingerprint,)).fetchone()
            if seen is not None:
                return ImportReport(file.report.path, already_imported=True)
            plan = plan_import(file, {row[0] for row in c.execute("SELECT case_id FROM cases")})
            self._write_plan(plan)
            if open_them:
                self._open_imported(plan, file)
            report = json.dumps(plan.report.as_dict(), ensure_ascii=False)
            c.execute(
                "INSERT INTO imports (sha256, path, at, report) VALUES (?, ?, ?, ?)",
                (plan.fingerprint, path_to_text(path), _now(), report),
            )
        return plan.report

    def _open_imported(self, plan: ImportPlan, file: SessionFile) -> None:
        ids = [case.info.case_id for case in plan.cases]
        current = plan.report.renamed.get(file.session.current, file.session.current)
        write_open(self._conn, [*open_case_ids(self._conn), *ids], current if current in ids else (ids or [""])[-1])
        if file.consultation is not None:
            set_value(self._conn, CONSULTATION, file.consultation)
            plan.report.ignored = [k for k in plan.report.ignored if k != "extra.consultation"]

    def _write_plan(self, plan: ImportPlan) -> None:
        """Write an import's cases as they were (over-limit texts kept whole: they entered before the limits)."""
        taken_ids: set[str] = set()
        for case in plan.cases:
            info = case.info
            self._conn.execute(
                "INSERT INTO cases (case_id, operator, note, created_at, id_key, operator_key) VALUES (?, ?, ?, ?, ?, ?)",
                (info.case_id, info.operator, info.note, case.created_at, fold(info.case_id), fold(info.operator)),
            )
            cells = []
            for r in case.results:
                cid = cell_id_of(r)
                if cid in taken_ids or self._conn.execute("SELECT 1 FROM cells WHERE cell_id = ?", (cid,)).fetchone():
                    cid = uuid.uuid4().hex  # this cell is already archived from another copy of the session
                taken_ids.add(cid)
                cells.append((cid, r))
            self._insert_cells(info.case_id, cells)
            if case.sign_off is not None:
                self._insert_sign_off(info.case_id, case.sign_off)
        for case_id, event in plan.audit:
            self._insert_audit(case_id, event)


def _checked(what: str, text: str, limit: int) -> str:
    """:func:`hv_desktop.core.cases.review.check_text`, its refusal an ArchiveError."""
    try:
        return check_text(what, text, limit)
    except ValueError as exc:
        raise ArchiveError(str(exc)) from exc
