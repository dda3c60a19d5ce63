"""The case archive's file (issue 29): an older file is migrated with its data, a newer or foreign one is refused
untouched, a writer killed with SIGKILL mid-burst loses at most the change in progress, and a JSON autosave is
imported whole, once. No Qt."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hv_desktop.core.cases.review import MAX_NOTE, MAX_REASON, CaseInfo, ReviewSession
from hv_desktop.core.inference.result import Result, encode
from hv_desktop.core.storage import archive_schema
from hv_desktop.core.storage.archive import ArchiveError, ArchiveTooNew, CaseArchive
from hv_desktop.core.storage.session import save_session
from tests.support import ROOT

#: Version 1 of the archive, written out as it shipped (not taken from the code, which may move on).
V1 = """
CREATE TABLE cases (case_id TEXT PRIMARY KEY, operator TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'signed')));
CREATE TABLE cells (cell_id TEXT PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
    position INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT, label TEXT, confidence REAL,
    probabilities TEXT NOT NULL DEFAULT '{}', needs_review INTEGER NOT NULL DEFAULT 0, typicality REAL,
    error TEXT, timestamp TEXT NOT NULL DEFAULT '', model_name TEXT NOT NULL DEFAULT '',
    model_version TEXT NOT NULL DEFAULT '', reviewer_label TEXT, UNIQUE (case_id, position));
CREATE TABLE sign_offs (case_id TEXT PRIMARY KEY REFERENCES cases (case_id) ON DELETE CASCADE, operator TEXT NOT NULL,
    at TEXT NOT NULL, override_reason TEXT NOT NULL DEFAULT '', unreviewed_flagged INTEGER NOT NULL DEFAULT 0);
CREATE TABLE audit (id INTEGER PRIMARY KEY, case_id TEXT, event TEXT NOT NULL, at TEXT NOT NULL, json TEXT NOT NULL);
CREATE INDEX audit_case ON audit (case_id, id);
INSERT INTO cases VALUES ('Ärztin-7', 'ÅSA Berg', 'kept', '2025-03-01T09:00:00+01:00', 'signed');
INSERT INTO cells VALUES ('c1', 'Ärztin-7', 0, '/s/1.jpg', NULL, 'neutrophil', 0.9, '{"neutrophil": 0.9}', 1, 0.5,
    NULL, '2025-03-01T09:00:00+01:00', 'HematoVision', '1.2.0', 'monocyte');
INSERT INTO sign_offs VALUES ('Ärztin-7', 'Åsa Berg', '2025-03-01T10:00', '', 0);
INSERT INTO audit (case_id, event, at, json) VALUES ('Ärztin-7', 'signed off', '2025-03-01T10:00',
    '{"event": "signed off", "case": "Ärztin-7", "operator": "Åsa Berg", "at": "2025-03-01T10:00"}');
PRAGMA application_id = 1213612337;
PRAGMA user_version = 1;
"""


def _v1(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(V1)
    conn.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_version_1_archive_is_migrated_and_its_data_survives(tmp_path):
    path = _v1(tmp_path / "old.sqlite")
    with CaseArchive.open(path) as a:
        assert a._conn.execute("PRAGMA user_version").fetchone()[0] == archive_schema.VERSION == 5
        assert [c.case_id for c in a.find_cases(text="ärztin")] == ["Ärztin-7"]  # step 2's search keys were filled in
        assert [c.case_id for c in a.find_cases(operator="åsa berg", status="signed")] == ["Ärztin-7"]
        case = a.load_case("Ärztin-7")
        assert case.sign_off is not None and case.sign_off.operator == "Åsa Berg"
        (r,) = case.results
        assert (r.label, r.reviewer_label, r.probabilities) == ("neutrophil", "monocyte", {"neutrophil": 0.9})
        assert (r.needs_review, r.typicality, r.model_version) == (True, 0.5, "1.2.0")
        assert case.audit == [{"event": "signed off", "case": "Ärztin-7", "operator": "Åsa Berg", "at": "2025-03-01T10:00"}]
        a.upsert_case(CaseInfo("new"))  # and the migrated file takes new data
        assert a._conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 0


def test_a_failed_migration_step_leaves_the_file_at_its_version_whole(tmp_path, monkeypatch):
    path = _v1(tmp_path / "old.sqlite")
    broken = (archive_schema.MIGRATIONS[1][0], "CREATE INDEX broken ON no_such_table (x)")
    monkeypatch.setattr(archive_schema, "MIGRATIONS", [archive_schema.MIGRATIONS[0], broken])
    with pytest.raises(ArchiveError, match="not saved"):
        CaseArchive.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [row[1] for row in conn.execute("PRAGMA table_info(cases)")] == ["case_id", "operator", "note", "created_at", "status"]
    assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
    conn.close()


def test_an_archive_from_a_newer_version_is_refused_and_left_exactly_as_it_was(tmp_path):
    path = tmp_path / "future.sqlite"
    with CaseArchive.open(path) as a:
        a.upsert_case(CaseInfo("C"))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {archive_schema.VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before, files = _digest(path), sorted(os.listdir(tmp_path))
    with pytest.raises(ArchiveTooNew, match="newer HematoVision.*not changed"):
        CaseArchive.open(path)
    assert _digest(path) == before and sorted(os.listdir(tmp_path)) == files


@pytest.mark.parametrize("kind", ["another program's database", "a text file"])
def test_a_file_that_is_not_an_archive_is_refused_untouched(tmp_path, kind):
    path = tmp_path / "other.db"
    if kind == "a text file":
        path.write_text('{"format": "hematovision-session"}\n' * 100)
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE cases (x)")
        conn.commit()
        conn.close()
    before = _digest(path)
    with pytest.raises(ArchiveError, match="not a HematoVision case archive"):
        CaseArchive.open(path)
    assert _digest(path) == before


CHILD = """
import sys
from hv_desktop.core.storage.archive import CaseArchive
ids = sys.argv[2].split(",")
with CaseArchive.open(sys.argv[1]) as a:
    i = 0
    while True:
        a.set_review(ids[i % len(ids)], f"L{i}")
        print(i, flush=True)  # after the commit: every number printed is a review the archive must keep
        i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
@pytest.mark.parametrize("stop_after", [40, 173])
def test_a_writer_killed_mid_burst_keeps_every_committed_review(tmp_path, stop_after):
    path = tmp_path / "a.sqlite"
    with CaseArchive.open(path) as a:
        a.upsert_case(CaseInfo("K"))
        ids = a.add_cells("K", [Result(Path(f"/s/{i}.jpg"), label="neutrophil", confidence=0.9) for i in range(30)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path), ",".join(ids)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    reported, deadline = -1, time.monotonic() + 60
    while reported < stop_after and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, f"the writer stopped by itself: {child.stderr.read() if child.stderr else ''}"
        reported = int(line)
    os.kill(child.pid, signal.SIGKILL)  # mid-burst: it never sleeps between reviews
    rest = child.stdout.read()  # what it had printed before it died
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reported = max([reported, *map(int, rest.split())])

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    labels = dict(conn.execute("SELECT cell_id, reviewer_label FROM cells"))
    conn.close()

    def state(last: int) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(ids)
        for i in range(last + 1):
            out[ids[i % len(ids)]] = f"L{i}"
        return out

    # every review it reported is there; the one in progress is there whole or not at all, and nothing else
    assert labels in (state(reported), state(reported + 1))
    with CaseArchive.open(path) as a:  # and the app opens it as usual
        assert len(a.load_case("K").results) == 30


def _session(tmp_path: Path, n_audit: int = 1500) -> tuple[Path, ReviewSession]:
    s = ReviewSession()
    s.new_case("A-1", "Ann", "n" * MAX_NOTE)  # notes and reasons at their limits come back whole
    s.results += [
        Result(Path(f"/s/a{i}.jpg"), label="neutrophil", confidence=0.9, probabilities={"neutrophil": 0.9},
               needs_review=i == 0, timestamp=f"2026-11-2{i}T09:00:00+01:00", case="A-1")
        for i in range(3)
    ]  # fmt: skip
    s.results.append(Result(Path(os.fsdecode(b"/s/caf\xe9.jpg")), error="empty file", case="A-1"))
    s.sign_off("Ann", "2026-11-26T10:00", "r" * MAX_REASON)
    s.new_case("B-2", "Bob")
    s.cases["B-2"].note = "x" * (MAX_NOTE + 500)  # written before the limits: kept whole, and said so
    s.results.append(Result(Path("/s/b.jpg"), label="lymphocyte", confidence=0.8, case="B-2", reviewer_label="monocyte"))
    s.audit += [{"event": "exported", "case": "B-2", "at": f"t{i}", "n": i} for i in range(n_audit)]
    path = tmp_path / "session.json"
    save_session(path, s.results, "HematoVision", "1.2.2", {**s.to_extra(), "consultation": {"k": "v"}})
    return path, s


def test_a_json_autosave_is_imported_whole_once_and_left_in_place(tmp_path):
    path, s = _session(tmp_path)
    before, mtime = _digest(path), path.stat().st_mtime_ns
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        a.upsert_case(CaseInfo("B-2", "someone", "already here"))  # an ID the archive already holds
        report = a.import_session_json(path)
        assert (report.cases, report.cells, report.sign_offs, report.audit_events) == (2, 5, 1, 1501)
        assert report.renamed == {"B-2": "B-2 (imported)"} and report.ignored == ["extra.consultation"]
        assert len(report.over_limit) == 1 and "note of case 'B-2 (imported)'" in report.over_limit[0]
        assert not report.already_imported and report.problems == [] and report.skipped == 0
        a_case, b_case = a.load_case("A-1"), a.load_case("B-2 (imported)")
        assert a_case.info == s.cases["A-1"] and b_case.info.note == "x" * (MAX_NOTE + 500)
        assert a_case.sign_off == s.signoffs["A-1"] and a_case.status == "signed"
        assert a_case.created_at == "2026-11-20T09:00:00+01:00"  # its first cell's time
        for r in s.results:
            r.model_name, r.model_version = (r.model_name or "HematoVision", r.model_version or "1.2.2") if r.ok else ("", "")
        key = {"B-2": "B-2 (imported)"}
        expected = [dict(encode(r), case=key.get(r.case, r.case)) for r in s.results]
        assert [encode(r) for r in a_case.results + b_case.results] == expected
        assert len(b_case.audit) == 1500 and b_case.audit[-1] == {
            "event": "exported", "case": "B-2 (imported)", "at": "t1499", "n": 1499, "case_in_file": "B-2"
        }  # fmt: skip
        assert a.load_case("B-2").info.note == "already here"  # the archive's own case is untouched
        counts = _counts(a)
        again = a.import_session_json(path)
        assert again.already_imported and again.cases == 0 and _counts(a) == counts  # adds nothing
    assert _digest(path) == before and path.stat().st_mtime_ns == mtime


def _counts(a: CaseArchive) -> tuple[int, ...]:
    return tuple(a._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("cases", "cells", "sign_offs", "audit"))


def test_a_session_from_before_cases_is_imported_into_one_case_with_its_sign_off(tmp_path):
    path = tmp_path / "old.json"
    results = [Result(Path("/s/1.jpg"), label="neutrophil", confidence=0.9, timestamp="2026-01-02T03:04:05")]
    save_session(path, results, "M", "1.0", {"sign_off": {"operator": "Ann", "at": "2026-01-02T05:00"}})
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        report = a.import_session_json(path)
        assert (report.cases, report.cells, report.sign_offs) == (1, 1, 1)
        case = a.load_case("Imported session")
        assert case.locked and case.sign_off is not None and case.sign_off.operator == "Ann"
        assert [r.model_version for r in case.results] == ["1.0"]


def test_an_import_that_fails_writes_nothing(tmp_path):
    path, _ = _session(tmp_path, n_audit=3)
    data = json.loads(path.read_text())
    data["extra"]["audit"].append({"event": "x", "huge": "y" * 200_000})  # over what one audit event may hold
    path.write_text(json.dumps(data))
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        with pytest.raises(ArchiveError, match="audit event"):
            a.import_session_json(path)
        assert _counts(a) == (0, 0, 0, 0) and a.find_cases() == []
    with CaseArchive.open(tmp_path / "a.sqlite") as a, pytest.raises(ArchiveError, match="cannot be imported"):
        a.import_session_json(tmp_path / "missing.json")
