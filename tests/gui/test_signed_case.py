"""A signed-off case means what it says (issue 30, items 1-4): each test replays one break of the hostile review
through the window as a person would, and failed on the code before the fix."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.report import ReportInfo  # noqa: E402
from tests.support.gui import images as _images  # noqa: E402
from tests.support.gui import run as _run  # noqa: E402
from tests.support.onnx_factory import tiny_model  # noqa: E402


def _window(qtbot, tmp_path, model, autosave=None):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=model, settings=settings, autosave_path=autosave or tmp_path / "autosave.json")
    qtbot.addWidget(w)
    w.ask_case = lambda name: "add"
    w.show()
    return w


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_path):
    w = _window(qtbot, tmp_path, tiny_model_path)
    yield w
    if w.is_running():
        w.cancel_run()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=10000)


def _signed_case(qtbot, w, tmp_path, case_id="CASE-A", operator="A. Tech"):
    w.new_case(case_id, ask=False)
    _run(qtbot, w, lambda: w.classify([_images(tmp_path / case_id, 4)]))
    w.accept_unflagged(ask=False)
    assert w.sign_off_case(operator, "reviewed on screen")
    return case_id


def _pdf_text(path) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(p.extract_text() for p in PdfReader(str(path)).pages).split())


# --- 1. report identity
def test_no_final_report_carries_an_id_other_than_its_cases(qtbot, window, tmp_path, monkeypatch):
    from hv_desktop.gui import dialogs

    _signed_case(qtbot, window, tmp_path)
    out = tmp_path / "report.pdf"
    assert not window.export_report(out, ReportInfo("OTHER-ID-999", "", "B. Other"))  # refused, said why
    assert not out.exists() and "CASE-A" in window.statusBar().currentMessage()

    def type_over(dlg):  # a person typing another ID and name into the dialog
        dlg.case_id.selectAll()
        qtbot.keyClicks(dlg.case_id, "OTHER-ID-999")
        qtbot.keyClicks(dlg.operator, "B. Other")
        return 1

    monkeypatch.setattr(dialogs.ReportDialog, "exec", type_over)
    assert window.export_report(out)
    text = _pdf_text(out)
    assert "CASE-A" in text and "FINAL" in text and "A. Tech" in text
    assert "OTHER-ID-999" not in text and "B. Other" not in text


def test_an_unsigned_cases_report_details_go_into_the_case(qtbot, window, tmp_path):
    window.new_case("S-12", ask=False)
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "s12", 2)]))
    assert window.export_report(tmp_path / "r.pdf", ReportInfo("", "smear from ward 3", "C. Tech"))
    case = window.review.cases["S-12"]
    assert (case.operator, case.note) == ("C. Tech", "smear from ward 3")  # report and case agree
    assert "PRELIMINARY" in _pdf_text(tmp_path / "r.pdf")


# --- 2. a model switch never changes a signed-off case; rows keep their model
def test_a_site_model_leaves_the_signed_case_and_rows_keep_their_model(qtbot, window, tmp_path):
    other = tiny_model(
        tmp_path / "other.onnx",
        labels=["neutrophil", "monocyte", "lymphocyte", "eosinophil"],
        metadata={"name": "Site model", "version": "9.9.9"},
    )
    _signed_case(qtbot, window, tmp_path)
    signed_before = [(r.label, r.confidence, r.reviewer_label) for r in window.review.case_results("CASE-A")]
    window.new_case("CASE-B", ask=False)
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "b", 4)]))
    old_name = window.model.info.name
    _run(qtbot, window, lambda: window.runner.use_site_model(other))
    a, b = window.review.case_results("CASE-A"), window.review.case_results("CASE-B")
    assert [(r.label, r.confidence, r.reviewer_label) for r in a] == signed_before
    assert {r.model_name for r in a} == {old_name} and {r.model_name for r in b} == {"Site model"}
    assert [r.label for r in b] != [r.label for r in a]  # B really was re-classified
    assert "signed-off" in window.statusBar().currentMessage() or window.review.audit[-1]["event"] == "signed off"
    window.review.current = "CASE-A"
    assert window.export_csv(tmp_path / "a.csv")
    with open(tmp_path / "a.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model_name"] for r in rows} == {old_name}  # not the model loaded now


def test_accept_all_with_no_current_case_leaves_signed_cases_alone(qtbot, window, tmp_path):
    _signed_case(qtbot, window, tmp_path)
    cells = window.review.case_results("CASE-A")
    for r in cells:
        r.reviewer_label = None  # as a restore of an older session could leave them
    window.review.current = ""
    assert window.review.unflagged_rows() == []
    window.accept_unflagged(ask=False)
    assert all(r.reviewer_label is None for r in cells)


# --- 3. restore never drops what the app let in
def test_limits_are_enforced_on_entry(qtbot, window, tmp_path, monkeypatch):
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    from hv_desktop.gui import dialogs

    class Answer:
        class _T:
            def __init__(self, t):
                self.t = t

            def text(self):
                return self.t

            def toPlainText(self):
                return self.t

        case_id, operator, note = _T("LONG"), _T("me"), _T("x" * 4001)

    monkeypatch.setattr(dialogs, "ask_case_details", lambda *a, **k: Answer)
    assert window.new_case("LONG", ask=True) is None and "4,000" in warned[-1]
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "c", 2)]))
    window.accept_unflagged(ask=False)
    assert not window.sign_off_case("A. Tech", "r" * 2001) and "2,000" in warned[-1]
    assert window.sign_off_case("A. Tech", "r" * 2000)


def _legacy_autosave(w: MainWindow, folder: Path) -> Path:
    """``w``'s session as a version without the case archive saved it, in a data folder of its own."""
    from hv_desktop.core.storage.session import save_session

    folder.mkdir(parents=True, exist_ok=True)
    save_session(folder / "autosave.json", w.results.results, "tiny", "1", w.review.to_extra())
    return folder / "autosave.json"


def test_a_restore_keeps_long_texts_many_events_and_the_lock(qtbot, tmp_path, tiny_model_path):
    w1 = _window(qtbot, tmp_path, tiny_model_path)
    _signed_case(qtbot, w1, tmp_path)
    for i in range(1200):  # an older app let these in: its autosave goes into the archive whole
        w1.review.audit.append({"event": "unlocked", "case": "CASE-A", "at": f"t{i}", "reason": "r"})
    w1.review.cases["CASE-A"].note = "n" * 5000
    w1.review.signoffs["CASE-A"].override_reason = "long " * 600
    autosave = _legacy_autosave(w1, tmp_path / "old")
    w2 = _window(qtbot, tmp_path, tiny_model_path, autosave)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 4 and not w2.persistence.restoring, timeout=10000)
    assert w2.review.signoffs["CASE-A"].override_reason == "long " * 600  # still locked, reason whole
    assert len(w2.review.cases["CASE-A"].note) == 5000 and len(w2.review.audit) == 1201
    w2.close()
    w3 = _window(qtbot, tmp_path, tiny_model_path, autosave)  # and from the archive at the next start
    qtbot.waitUntil(lambda: w3.results.rowCount() == 4 and not w3.persistence.restoring, timeout=10000)
    assert w3.review.signed is not None and w3.review.signed.override_reason == "long " * 600
    assert len(w3.review.cases["CASE-A"].note) == 5000 and len(w3.review.audit) == 1201


def test_a_session_restored_in_part_is_kept_whole_and_the_user_told(qtbot, tmp_path, tiny_model_path):
    w1 = _window(qtbot, tmp_path, tiny_model_path)
    _run(qtbot, w1, lambda: w1.classify([_images(tmp_path / "p", 3)]))
    autosave = _legacy_autosave(w1, tmp_path / "old")
    w1.close()
    data = json.loads(autosave.read_text())
    data["results"][1]["confidence"] = "not a number"
    autosave.write_text(json.dumps(data))
    w2 = _window(qtbot, tmp_path, tiny_model_path, autosave)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 2 and not w2.persistence.restoring, timeout=10000)
    kept = list((tmp_path / "old").glob("autosave.imported-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == data and not autosave.exists()
    said = w2.statusBar().currentMessage()  # on the status line: no box at start
    assert "1 unreadable cells" in said and kept[0].name in said


# --- 4. camera images are never lost
def test_watch_while_the_case_is_signed_off_files_images_in_a_new_case(qtbot, window, tmp_path, monkeypatch):
    boxes = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: boxes.append(a))
    _signed_case(qtbot, window, tmp_path)
    camera = tmp_path / "camera"
    camera.mkdir()
    window.toggle_watch(camera)
    _images(camera, 5)
    qtbot.waitUntil(lambda: window.results.rowCount() == 9 and not window.is_running(), timeout=10000)
    new = [r for r in window.results.results if r.path.parent == camera]
    assert len(new) == 5 and all(r.ok for r in new) and {r.case for r in new} != {"CASE-A"}
    assert len(window.review.case_results("CASE-A")) == 4 and not boxes
    assert "signed off" in window.statusBar().currentMessage()
    window.toggle_watch()


def test_watch_does_not_classify_a_file_paused_after_its_header(qtbot, window, tmp_path):
    camera = tmp_path / "camera"
    camera.mkdir()
    window.toggle_watch(camera)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (5, 5, 250)).save(buf, "JPEG")
    data = buf.getvalue()
    with open(camera / "slow.jpg", "wb") as fh:
        fh.write(data[:200])  # the header, then the camera pauses longer than the settle time
        fh.flush()
        qtbot.wait(1500)
        fh.write(data[200:])
    qtbot.waitUntil(lambda: window.results.rowCount() >= 1 and not window.is_running(), timeout=10000)
    qtbot.wait(1500)  # any second row would have come by now
    assert [(r.path.name, r.ok) for r in window.results.results] == [("slow.jpg", True)]
    window.toggle_watch()


def test_the_same_images_opened_as_a_new_case_fill_that_case(qtbot, window, tmp_path):
    folder = _images(tmp_path / "same", 3)
    _run(qtbot, window, lambda: window.classify([folder]))
    window.new_case("SECOND", ask=False)
    _run(qtbot, window, lambda: window.classify([folder]))
    assert len(window.review.case_results("SECOND")) == 3
    _run(qtbot, window, lambda: window.classify([folder]))  # the same case again: no duplicates
    assert len(window.review.case_results("SECOND")) == 3
