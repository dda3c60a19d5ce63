"""The case archive's file: its schema, the migrations that bring an older file up to date, and how it is opened.

Why a separate module: the schema is the contract with every archive a lab has kept (for years), so it changes
only by appending a migration step, never by editing one. ``PRAGMA user_version`` holds how many steps a file has
had; ``PRAGMA application_id`` marks the file as ours, so another program's database is never touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from hv_desktop.core.system.paths import display_name

#: "HVA1": marks a SQLite file as a HematoVision case archive.
APPLICATION_ID = 0x48564131

#: WAL with FULL: each committed change is on disk before the call returns, so a power cut (not only a kill -9)
#: keeps it; NORMAL would be safe against a kill but may lose the last commits on a power cut. Measured with
#: benchmarks/archive_speed.py: reviews are made by hand, so the extra fsync per review costs nothing a person sees.
SYNCHRONOUS = "FULL"

#: MIGRATIONS[v] brings a file from version v to v + 1, in one transaction. Append only: a step once shipped is
#: never edited (files that had it must stay readable).
MIGRATIONS: list[tuple[str, ...]] = [
    (  # 1: cases, their cells, sign-offs and the audit trail
        """CREATE TABLE cases (
            case_id TEXT PRIMARY KEY, operator TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'signed')))""",
        """CREATE TABLE cells (
            cell_id TEXT PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
            position INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT, label TEXT, confidence REAL,
            probabilities TEXT NOT NULL DEFAULT '{}', needs_review INTEGER NOT NULL DEFAULT 0, typicality REAL,
            error TEXT, timestamp TEXT NOT NULL DEFAULT '', model_name TEXT NOT NULL DEFAULT '',
            model_version TEXT NOT NULL DEFAULT '', reviewer_label TEXT, UNIQUE (case_id, position))""",
        """CREATE TABLE sign_offs (
            case_id TEXT PRIMARY KEY REFERENCES cases (case_id) ON DELETE CASCADE, operator TEXT NOT NULL,
            at TEXT NOT NULL, override_reason TEXT NOT NULL DEFAULT '', unreviewed_flagged INTEGER NOT NULL DEFAULT 0)""",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, case_id TEXT, event TEXT NOT NULL, at TEXT NOT NULL, json TEXT NOT NULL)",
        "CREATE INDEX audit_case ON audit (case_id, id)",
    ),
    (  # 2: finding cases (by sample ID and operator, case-insensitive; by date; by status) and one-time imports
        "ALTER TABLE cases ADD COLUMN id_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE cases ADD COLUMN operator_key TEXT NOT NULL DEFAULT ''",
        "UPDATE cases SET id_key = hv_fold(case_id), operator_key = hv_fold(operator)",
        "ALTER TABLE sign_offs ADD COLUMN operator_key TEXT NOT NULL DEFAULT ''",
        "UPDATE sign_offs SET operator_key = hv_fold(operator)",
        "CREATE INDEX cases_id_key ON cases (id_key)",
        "CREATE INDEX cases_operator ON cases (operator_key)",
        "CREATE INDEX cases_created ON cases (created_at)",
        "CREATE INDEX cases_status ON cases (status, created_at)",
        "CREATE INDEX sign_offs_operator ON sign_offs (operator_key)",
        "CREATE INDEX cells_review ON cells (case_id, reviewer_label)",
        "CREATE TABLE imports (sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, at TEXT NOT NULL, report TEXT NOT NULL)",
    ),
    (  # 3: the lab's cell types as signed, so a signed case's differential never follows later preferences
        "ALTER TABLE sign_offs ADD COLUMN cell_types TEXT NOT NULL DEFAULT ''",
    ),
    (  # 4: the open session (the JSON autosave went): the cases open in the window, in order, and other state
        """CREATE TABLE open_cases (
            case_id TEXT PRIMARY KEY REFERENCES cases (case_id) ON DELETE CASCADE, position INTEGER NOT NULL)""",
        "CREATE TABLE session (key TEXT PRIMARY KEY, json TEXT NOT NULL)",
    ),
    (  # 5: a cell of a camera field: which cell of its field, its box, cut by the edge, or a field with none (issue 28)
        "ALTER TABLE cells ADD COLUMN cell_index INTEGER",
        "ALTER TABLE cells ADD COLUMN cell_box TEXT",
        "ALTER TABLE cells ADD COLUMN cell_at_edge INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE cells ADD COLUMN no_cell INTEGER NOT NULL DEFAULT 0",
    ),
]
VERSION = len(MIGRATIONS)


class ArchiveError(Exception):
    """The archive refused a change or could not be read or written; the message is for the user."""


class ArchiveLocked(ArchiveError):
    """A change was asked of a signed-off case."""


class ArchiveTooNew(ArchiveError):
    """The file was written by a newer HematoVision; it is left exactly as it was."""


def fold(text: str | None) -> str:
    """The form IDs and names are compared in: case-insensitive for every script (SQLite's NOCASE folds ASCII only)."""
    return (text or "").casefold()


@contextmanager
def transaction(conn: sqlite3.Connection, what: str = "change") -> Iterator[sqlite3.Connection]:
    """One change, all or nothing (BEGIN IMMEDIATE: the write lock is taken before anything is read, so a check
    made inside still holds when the change is written). sqlite3 errors become an :class:`ArchiveError`."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise ArchiveError(f"the case archive is busy or cannot be written ({exc})") from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise ArchiveError(f"the {what} was not saved in the case archive ({exc})") from exc
        raise


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several reads that see one state of the file (another connection may be writing meanwhile)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """The archive at ``path`` (created when missing), up to date; ArchiveError when it is not ours, damaged or
    newer than this app (a newer file is only read, never written)."""
    name = display_name(path)
    try:
        conn = sqlite3.connect(os.fspath(path), timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise ArchiveError(f"the case archive {name} cannot be opened ({exc})") from exc
    try:
        _check_file(conn, name)  # before any setting that writes to the file
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")  # where a file system cannot, SQLite keeps its rollback journal
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        conn.create_function("hv_fold", 1, fold, deterministic=True)
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ArchiveError(f"{name} is not a HematoVision case archive, or it is damaged ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _check_file(conn: sqlite3.Connection, name: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    ours = app_id == APPLICATION_ID or (app_id == 0 and version == 0 and not _has_tables(conn))
    if not ours:
        raise ArchiveError(f"{name} is not a HematoVision case archive; it was left as it is")
    if version > VERSION:
        raise ArchiveTooNew(
            f"the case archive {name} was written by a newer HematoVision (archive version {version}; this app reads "
            f"up to {VERSION}): update HematoVision to open it; the archive was not changed"
        )


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the steps a file lacks, each in its own transaction (a failed step leaves the file at the version
    before it, whole). Re-read under the write lock: two windows opening one old file migrate it once."""
    while conn.execute("PRAGMA user_version").fetchone()[0] < VERSION:  # an up-to-date file is not written
        with transaction(conn, "update of the archive's format"):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= VERSION:
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def plain_json(value: object, what: str, limit: int) -> str:
    """``value`` as the JSON text a row keeps: plain data only (no NaN, no objects), at most ``limit`` characters;
    anything else is refused as it enters (ArchiveError naming ``what``), never cut on load."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArchiveError(f"{what} is not plain data ({exc})") from exc
    if len(text) > limit:
        raise ArchiveError(f"{what} is {len(text):,} characters long; at most {limit:,} are kept")
    return text
