"""The case archive as the one store of the open session (issue 29): the cases open in the window, the current one
and the consultation come back after a restart, an old JSON autosave is imported whole once and renamed aside, a
kill -9 during a review burst loses at most the review in progress, and a version 3 archive is migrated. No Qt."""

from __future__ import annotations

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

from hv_desktop.core.cases.consultation import ConsultationState
from hv_desktop.core.cases.review import MAX_NOTE, CaseInfo, CaseLocked, ReviewSession
from hv_desktop.core.inference.result import encode
from hv_desktop.core.storage import archive_schema
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.storage.autosave import import_autosave
from hv_desktop.core.storage.session import save_session
from hv_desktop.core.workspace import Workspace
from tests.support import ROOT
from tests.unit.test_workspace import _cells


def _window(path: Path) -> Workspace:
    """A workspace as the window has it: over the archive, its open session restored."""
    ws = Workspace(CaseArchive.open(path))
    for _ in ws.restore_open():
        pass
    return ws


def test_two_cases_reopen_after_a_restart_with_their_reviews_and_sign_off(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    ws = _window(path)
    ws.new_case("S-1", "A. Tech", "ward 3")
    ws.add_results(_cells(6, "a"))
    ws.new_case("S-2", "A. Tech")
    ws.add_results(_cells(3, "b"))
    ws.review.current = "S-1"
    ws.assign(0, "basophil")
    ws.accept_unflagged()
    ws.sign_off("A. Tech", "2026-12-02T11:00", "row 3 left for the consultant")
    ws.review.current = "S-2"  # the window switches cases itself, then records
    ws.assign(7, "monocyte")
    ws.record_open()
    assert ws.archive is not None
    ws.archive.close()
    cli = Workspace(CaseArchive.open(path))  # the command line's workspace never writes over the open session
    cli.new_case("CLI-1")
    assert cli.archive is not None
    cli.archive.close()

    again = Workspace(CaseArchive.open(path))
    steps = list(again.restore_open(chunk=4))
    assert steps == [(0, 9), (4, 9), (8, 9), (9, 9)]  # cases first, then the cells a chunk at a time
    assert list(again.review.cases) == ["S-1", "S-2"] and again.review.current == "S-2"
    assert again.review.cases["S-1"] == CaseInfo("S-1", "A. Tech", "ward 3")
    assert [r.case for r in again.results] == ["S-2"] * 3 + ["S-1"] * 6  # the case shown comes in first
    for case in ("S-1", "S-2"):
        assert [encode(r) for r in again.review.case_results(case)] == [encode(r) for r in ws.review.case_results(case)]
    s1 = [r.reviewer_label for r in again.review.case_results("S-1")]
    assert s1 == ["basophil", "lymphocyte", "monocyte", None, "eosinophil", "lymphocyte"]
    assert again.review.signoffs == {"S-1": ws.review.signoffs["S-1"]} and again.review.audit == ws.review.audit
    with pytest.raises(CaseLocked):
        again.assign(4, "monocyte")  # a cell of S-1
    again.assign(2, "neutrophil")  # the restored session goes on being archived
    assert again.archive is not None and again.archive.load_case("S-2").results[2].reviewer_label == "neutrophil"


def test_the_consultation_round_trips_through_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    ws = _window(path)
    ws.new_case("C-1")
    ws.add_results(_cells(2, "c"))
    heard: list[str] = []
    ws.subscribe(lambda change: heard.append(change.kind))
    labels: dict[str, str | None] = {ws.results[0].cell_id: "monocyte", ws.results[1].cell_id: None}
    state = ConsultationState("reply", "p" * 16, {"case_id": "C-1", "operator": "Lab A", "signed_off": None}, labels, {"q1": "X"})
    ws.consultation = state
    assert heard == ["consultation"] and ConsultationState.from_json(json.loads(json.dumps(state.to_json()))) == state
    with pytest.raises(ValueError, match="at most 64"):
        ws.consultation = ConsultationState(sent={"x" * 65: "C-1"})  # refused as it enters, nothing changed
    assert ws.consultation == state
    assert ws.archive is not None
    ws.archive.close()

    again = _window(path)
    assert again.consultation == state and again.consultation is not state
    again.clear()  # a new session: the package goes, the requests sent stay (their replies still come back)
    assert again.archive is not None
    again.archive.close()
    third = _window(path)
    assert third.consultation == ConsultationState(sent={"q1": "X"}) and third.review.cases == {} and third.results == []


def _old_autosave(path: Path) -> tuple[ReviewSession, dict]:
    s = ReviewSession()
    s.new_case("A-1", "Ann", "n" * MAX_NOTE)
    s.results += _cells(4, "a")
    for r in s.results:
        r.case = "A-1"
    s.assign(0, "basophil")
    s.sign_off("Ann", "2026-11-26T10:00", "left for the consultant")
    s.new_case("B-2", "Bob")
    s.cases["B-2"].note = "x" * (MAX_NOTE + 500)  # written before the limits: comes back whole
    b = _cells(2, "b")
    for r in b:
        r.case, r.reviewer_label = "B-2", "monocyte"
    s.results += b
    s.current = "A-1"
    s.audit += [{"event": "exported", "case": "B-2", "at": f"t{i}", "n": i} for i in range(300)]
    consultation = {
        "kind": "request",
        "package_id": "pkg1",
        "case": {"case_id": "B-2"},
        "sender_labels": {b[0].cell_id: "eosinophil"},
    }
    save_session(path, s.results, "M", "1", {**s.to_extra(), "consultation": consultation})
    return s, consultation


def test_an_old_json_autosave_is_imported_whole_once_and_renamed_aside(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    autosave = data / "autosave.json"
    s, consultation = _old_autosave(autosave)
    original = autosave.read_bytes()
    with CaseArchive.open(data / "cases.sqlite") as a:
        outcome = import_autosave(a, autosave)
    assert outcome is not None and outcome.report is not None and outcome.kept_as is not None
    assert (outcome.report.cases, outcome.report.cells, outcome.report.sign_offs, outcome.report.audit_events) == (2, 6, 1, 301)
    assert outcome.report.ignored == [] and outcome.report.skipped == 0 and "2 cases, 6 cells" in outcome.message
    assert not autosave.exists() and outcome.kept_as.name.startswith("autosave.imported-")
    assert outcome.kept_as.read_bytes() == original  # renamed, never rewritten nor deleted

    ws = _window(data / "cases.sqlite")  # the imported cases are the open session
    assert ws.review.cases == s.cases and ws.review.current == "A-1" and ws.review.signoffs == s.signoffs
    assert [encode(r) for r in ws.results] == [encode(r) for r in s.results]
    assert ws.review.audit == s.audit  # every event, in order
    assert ws.consultation == ConsultationState.from_json(consultation)
    assert ws.archive is not None
    ws.archive.close()

    autosave.write_bytes(original)  # the same file again (a rename that failed, a copy put back): nothing twice
    with CaseArchive.open(data / "cases.sqlite") as a:
        second = import_autosave(a, autosave)
        assert second is not None and second.report is not None and second.report.already_imported
        assert a.connection.execute("SELECT count(*) FROM cells").fetchone()[0] == 6 and not autosave.exists()
        assert len(a.find_cases()) == 2


def test_an_unreadable_autosave_is_renamed_aside_and_nothing_is_imported(tmp_path: Path) -> None:
    autosave = tmp_path / "autosave.json"
    autosave.write_text('{"format": "hematovision-session", "version": 1, "results": [')
    with CaseArchive.open(tmp_path / "cases.sqlite") as a:
        outcome = import_autosave(a, autosave)
        assert outcome is not None and outcome.report is None and "could not be restored" in outcome.message
        assert a.find_cases() == []
    assert outcome.kept_as is not None and outcome.kept_as.name.startswith("autosave.unrestorable-") and not autosave.exists()
    assert import_autosave(CaseArchive.open(tmp_path / "cases.sqlite"), autosave) is None  # nothing left to import


CHILD = """
import sys
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.workspace import Workspace
ws = Workspace(CaseArchive.open(sys.argv[1]))
for _ in ws.restore_open():
    pass
i = 0
while True:
    ws.assign(i % len(ws.results), f"L{i}")
    print(i, flush=True)  # after the change returned: every number printed is a review the archive must keep
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
@pytest.mark.parametrize("stop_after", [25, 140])
def test_a_kill_during_a_review_burst_loses_at_most_the_review_in_progress(tmp_path: Path, stop_after: int) -> None:
    path = tmp_path / "cases.sqlite"
    ws = _window(path)
    ws.new_case("K")
    ws.add_results(_cells(20, "k"))
    ids = [r.cell_id for r in ws.results]
    assert ws.archive is not None
    ws.archive.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    reported, deadline = -1, time.monotonic() + 60
    while reported < stop_after and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, f"the reviewer stopped by itself: {child.stderr.read() if child.stderr else ''}"
        reported = int(line)
    os.kill(child.pid, signal.SIGKILL)
    reported = max([reported, *map(int, child.stdout.read().split())])
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    def state(last: int) -> list[str | None]:
        out: dict[str, str | None] = dict.fromkeys(ids)
        for i in range(last + 1):
            out[ids[i % len(ids)]] = f"L{i}"
        return list(out.values())

    again = _window(path)  # what the next start shows
    assert [r.reviewer_label for r in again.results] in (state(reported), state(reported + 1))


def test_a_version_3_archive_is_migrated_to_keep_the_open_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cases.sqlite"
    with monkeypatch.context() as m:  # the archive as version 3 wrote it (migration steps are append-only)
        m.setattr(archive_schema, "MIGRATIONS", archive_schema.MIGRATIONS[:3])
        m.setattr(archive_schema, "VERSION", 3)
        with CaseArchive.open(path) as a:
            a.upsert_case(CaseInfo("V3-1", "Ann"))
    conn = sqlite3.connect(path)
    old_columns = "cell_id, case_id, position, path, label, probabilities, timestamp"  # version 3's cells table
    rows = [(f"v3-{i}", "V3-1", i, f"/slides/cell_{i}.png", "neutrophil", "{}", "") for i in range(3)]
    conn.executemany(f"INSERT INTO cells ({old_columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('open_cases', 'session')").fetchone()[0] == 0
    conn.close()

    with CaseArchive.open(path) as a:
        assert a.connection.execute("PRAGMA user_version").fetchone()[0] == archive_schema.VERSION == 5
        back = a.load_case("V3-1").results
        assert [r.path.name for r in back] == ["cell_0.png", "cell_1.png", "cell_2.png"]
        assert all(r.cell_index is None and r.cell_box is None and not r.no_cell for r in back)  # version 5's columns
    ws = _window(path)  # nothing was open in a version 3 file; its cases are in the archive
    assert ws.review.cases == {}
    ws.open_archived("V3-1")
    assert ws.archive is not None
    ws.archive.close()
    assert list(_window(path).review.cases) == ["V3-1"]
