"""The window over the case archive (issue 29): each change reaches the archive as it happens, Cases ▸ Case Archive
finds a case and reopens it read-only, an autosave from before the archive goes in once, and an archive that
cannot be used never stops the work."""

from __future__ import annotations

import os
import sqlite3

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402

from hv_desktop.core.storage.archive import CaseArchive  # noqa: E402
from hv_desktop.core.storage.session import save_session  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from tests.support.gui import images as _images  # noqa: E402
from tests.support.gui import run as _run  # noqa: E402


def _window(qtbot, tmp_path, model):
    w = MainWindow(
        model_path=model,
        settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat),
        autosave_path=tmp_path / "data" / "autosave.json",
    )
    qtbot.addWidget(w)
    w.ask_case = lambda name: "add"
    return w


def _archived(tmp_path, case_id):
    with CaseArchive.open(tmp_path / "data" / "cases.sqlite") as a:  # another connection, as another process
        return a.load_case(case_id)


def test_every_change_reaches_the_archive_as_it_happens(qtbot, tmp_path, tiny_model_path):
    w = _window(qtbot, tmp_path, tiny_model_path)
    w.new_case("S-300", ask=False)
    _run(qtbot, w, lambda: w.classify([_images(tmp_path / "smear", 4)]))
    assert len(_archived(tmp_path, "S-300").results) == 4
    w.results_pane.table.setFocus()
    w.results_pane.table.selectRow(0)
    qtbot.keyClick(w.results_pane.table, "3")
    assert _archived(tmp_path, "S-300").results[0].reviewer_label == "monocyte"  # no autosave needed
    w.accept_unflagged(ask=False)
    assert w.sign_off_case("A. Tech", "one flagged cell left for the haematologist")
    case = _archived(tmp_path, "S-300")
    assert case.sign_off is not None and case.sign_off.operator == "A. Tech"
    assert [r.reviewer_label for r in case.results] == [r.reviewer_label for r in w.review.case_results("S-300")]
    assert w.unlock_case("a cell was misread")
    assert _archived(tmp_path, "S-300").audit[-1]["event"] == "unlocked"


def test_the_archive_finds_a_case_and_reopens_it_read_only(qtbot, tmp_path, tiny_model_path):
    w = _window(qtbot, tmp_path, tiny_model_path)
    w.new_case("S-301", ask=False)
    _run(qtbot, w, lambda: w.classify([_images(tmp_path / "a", 3)]))
    w.accept_unflagged(ask=False)
    assert w.sign_off_case("B. Tech", "reviewed")
    w.new_case("T-9", ask=False)
    _run(qtbot, w, lambda: w.classify([_images(tmp_path / "b", 2)]))
    w.clear_session()
    dlg = w.open_archive()
    qtbot.addWidget(dlg)
    assert {c.case_id for c in dlg.cases} == {"T-9", "S-301"}
    qtbot.keyClicks(dlg.text, "s-30")
    assert [c.case_id for c in dlg.cases] == ["S-301"]
    dlg.text.clear()
    dlg.status.setCurrentText("Signed off")
    assert [c.case_id for c in dlg.cases] == ["S-301"] and dlg.table.item(0, 6).text() == "B. Tech"
    dlg.status.setCurrentText("Any status")
    qtbot.keyClicks(dlg.operator, "b. tech")  # T-9 was opened by B. Tech too, after the sign-off
    assert {c.case_id for c in dlg.cases} == {"S-301", "T-9"}
    dlg.operator.setText("someone else")
    assert dlg.cases == [] and not dlg.open_button.isEnabled()
    dlg.operator.clear()
    dlg.text.setText("S-301")
    assert dlg.reopen()
    assert w.review.current == "S-301" and w.review.signed is not None and w.results.rowCount() == 3
    before = [r.reviewer_label for r in w.results.results]
    w.results_pane.table.setFocus()
    w.results_pane.table.selectRow(0)
    qtbot.keyClick(w.results_pane.table, "4")
    assert [r.reviewer_label for r in w.results.results] == before  # read-only: signed off
    assert "signed off" in w.statusBar().currentMessage()


def test_an_autosave_from_before_the_archive_goes_in_once(qtbot, tmp_path, tiny_model_path):
    w1 = _window(qtbot, tmp_path, tiny_model_path)
    w1.new_case("OLD-1", ask=False)
    _run(qtbot, w1, lambda: w1.classify([_images(tmp_path / "old", 3)]))
    w1.results_pane.table.selectRow(1)
    qtbot.keyClick(w1.results_pane.table, "2")
    autosave = tmp_path / "data" / "autosave.json"  # the session as a version without the archive saved it
    save_session(autosave, w1.results.results, "tiny", "1", w1.review.to_extra())
    w1.close()
    (tmp_path / "data" / "cases.sqlite").unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / "data" / f"cases.sqlite{extra}").unlink(missing_ok=True)
    w2 = _window(qtbot, tmp_path, tiny_model_path)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 3 and not w2.persistence.restoring, timeout=10000)
    case = _archived(tmp_path, "OLD-1")
    assert len(case.results) == 3 and case.results[1].reviewer_label == "lymphocyte"
    assert w2.review.current == "OLD-1" and w2.results.results[1].reviewer_label == "lymphocyte"
    kept = [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith("autosave.")]
    assert not autosave.exists() and len(kept) == 1 and kept[0].startswith("autosave.imported-")  # renamed, kept
    w2.close()
    w3 = _window(qtbot, tmp_path, tiny_model_path)  # a second start restores from the archive and adds nothing
    qtbot.waitUntil(lambda: w3.results.rowCount() == 3 and not w3.persistence.restoring, timeout=10000)
    assert len(_archived(tmp_path, "OLD-1").results) == 3 and w3.results.results[1].reviewer_label == "lymphocyte"


@pytest.mark.parametrize("damage", ["newer", "garbage"])
def test_an_archive_that_cannot_be_used_never_stops_the_work(qtbot, tmp_path, tiny_model_path, damage):
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "cases.sqlite"
    if damage == "newer":
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA user_version = 999")
    else:
        path.write_bytes(b"not a database" * 100)
    before = path.read_bytes()
    w = _window(qtbot, tmp_path, tiny_model_path)
    assert w.workspace.archive is None and "case archive" in w.statusBar().currentMessage()
    _run(qtbot, w, lambda: w.classify([_images(tmp_path / "c", 2)]))
    assert w.results.rowCount() == 2 and path.read_bytes() == before  # the file is left as it was
