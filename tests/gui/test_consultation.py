"""Consultation in the window (issue 30, item 5): cells never mix, a reply is checked against the request it answers,
a package is never opened over a run, and a reply is merged cell by cell (accept / keep) from a non-modal list
that jumps to the cell."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.report import ReportInfo  # noqa: E402
from hv_desktop.gui.results_model import COL_SENDER  # noqa: E402


def _smear(folder, twins: bool = True):
    """Four cells; with ``twins`` the first is also saved, byte for byte, as twin.png (TEST_SIMPLE has such pairs)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate([(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]):
        Image.new("RGB", (24, 24), c).save(folder / f"cell_{i}.png")
    if twins:
        shutil.copyfile(folder / "cell_0.png", folder / "twin.png")
    return folder


@pytest.fixture(autouse=True)
def boxes(monkeypatch):
    """Every message box said (a modal box would wait for a click that never comes offscreen)."""
    said: list[str] = []
    for kind in ("information", "warning", "critical"):
        monkeypatch.setattr(QMessageBox, kind, lambda *a, _kind=kind, **k: said.append(f"{_kind}: {a[2]}"))
    return said


@pytest.fixture
def make_window(qtbot, tmp_path, tiny_model_path):
    made = []

    def make(name: str) -> MainWindow:
        w = MainWindow(
            model_path=tiny_model_path,
            settings=QSettings(str(tmp_path / f"{name}.ini"), QSettings.IniFormat),
            autosave_path=tmp_path / name / "autosave.json",
        )
        qtbot.addWidget(w)
        w.ask_case = lambda _name: "add"
        made.append(w)
        return w

    yield make
    for w in made:
        if w.is_running():
            w.cancel_run()
            qtbot.waitUntil(lambda w=w: not w.is_running(), timeout=10000)


def _run(qtbot, w, paths):
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        w.classify(paths)


def _row(w, name):
    return next(i for i, r in enumerate(w.results.results) if r.path.name == name)


def _sent_and_answered(qtbot, tmp_path, make_window, case_id="S-1", lab=None, answer=None):
    """A lab's case sent out, opened by a consultant who reviews it (``answer``: name -> class) and replies."""
    lab = lab or make_window("lab")
    _run(qtbot, lab, [_smear(tmp_path / case_id)])
    lab.workspace.assign(_row(lab, "cell_0.png"), "neutrophil")
    lab.workspace.assign(_row(lab, "twin.png"), "eosinophil")  # the same bytes, another reading
    assert lab.export_consultation(tmp_path / f"{case_id}.zip", ReportInfo(case_id, "", "Lab"))
    cons = make_window(f"consultant-{case_id}")
    assert cons.open_package(tmp_path / f"{case_id}.zip")
    for name, label in (answer or {}).items():
        cons.workspace.assign(_row(cons, name), label)
    assert cons.export_consultation(tmp_path / f"{case_id}-reply.zip", ReportInfo(case_id, "", "Consultant"))
    return lab, cons, tmp_path / f"{case_id}-reply.zip"


def test_identical_files_show_their_own_senders_review(qtbot, tmp_path, make_window):
    _, cons, _ = _sent_and_answered(qtbot, tmp_path, make_window)
    sender = {r.path.name: cons.results.data(cons.results.index(i, COL_SENDER)) for i, r in enumerate(cons.results.results)}
    assert sender["cell_0.png"] == "Neutrophil" and sender["twin.png"] == "Eosinophil"


def test_the_reply_lists_exactly_the_cells_the_consultant_disagrees_on(qtbot, tmp_path, make_window):
    answer = {"cell_0.png": "neutrophil", "twin.png": "eosinophil", "cell_1.png": "monocyte"}
    lab, _, reply = _sent_and_answered(qtbot, tmp_path, make_window, answer=answer)
    assert lab.open_package(reply)
    assert lab.exports.last_disagreements == [("cell_1.png", None, "monocyte")]  # the twins agree, each with its own


def test_a_reply_for_another_case_is_refused(qtbot, tmp_path, make_window, boxes):
    lab, _, _ = _sent_and_answered(qtbot, tmp_path, make_window, "S-1")
    _, _, other_reply = _sent_and_answered(qtbot, tmp_path, make_window, "S-2", lab=make_window("other-lab"))
    before = [r.reviewer_label for r in lab.results.results]
    assert not lab.open_package(other_reply)
    assert boxes and boxes[-1].startswith("warning") and "S-2" in boxes[-1]
    assert not any("agrees" in b for b in boxes)  # never "the consultant agrees with every review"
    assert lab.exports.last_disagreements == [] and [r.reviewer_label for r in lab.results.results] == before


def test_a_package_is_not_opened_while_a_run_is_in_progress(qtbot, tmp_path, make_window):
    import numpy as np

    _, _, _ = _sent_and_answered(qtbot, tmp_path, make_window, "S-1")
    w = make_window("busy")
    folder = tmp_path / "many"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "seed.png")  # slow to decode, so the run lasts
    data = (folder / "seed.png").read_bytes()
    for i in range(300):
        (folder / f"cell_{i:04d}.png").write_bytes(data)
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.classify([folder])
        qtbot.waitUntil(lambda: w.results.rowCount() > 0, timeout=20000)
        assert w.is_running()
        assert not w.open_package(tmp_path / "S-1.zip", replace=True)
        assert "run" in w.statusBar().currentMessage()
    assert w.results.rowCount() == 301
    assert all(r.case in w.review.cases for r in w.results.results)  # never filed under a case that is gone


def test_merge_shows_each_disagreement_and_accepts_or_keeps_per_cell(qtbot, tmp_path, make_window):
    answer = {"cell_0.png": "monocyte", "cell_1.png": "monocyte", "twin.png": "eosinophil"}
    lab, _, reply = _sent_and_answered(qtbot, tmp_path, make_window, answer=answer)
    lab.show()
    assert lab.open_package(reply)
    dlg = lab.exports.merge_dialog
    assert dlg is not None and dlg.isVisible() and not dlg.isModal()
    rows = [[dlg.table.item(i, c).text() for c in range(3)] for i in range(dlg.table.rowCount())]
    assert rows == [["cell_0.png", "Neutrophil", "Monocyte"], ["cell_1.png", "(model: Lymphocyte)", "Monocyte"]]
    dlg.table.selectRow(1)  # the list jumps to the cell in the main table
    r, row = lab.results_pane.current()
    assert r is not None and r.path.name == "cell_1.png"
    dlg.accept_button.click()  # the consultant's class, as a normal review
    assert lab.results.results[row].reviewer_label == "monocyte"
    assert "accepted" in dlg.table.item(1, 3).text().lower()
    lab.undo_review()  # undoable like any review
    assert lab.results.results[row].reviewer_label is None
    dlg.table.selectRow(0)
    dlg.keep_button.click()
    assert lab.results.results[_row(lab, "cell_0.png")].reviewer_label == "neutrophil"
    assert "kept" in dlg.table.item(0, 3).text().lower()
    assert lab.sign_off_case("A. Tech", "checked")  # a signed-off case cannot take the consultant's class
    dlg.table.selectRow(1)
    dlg.accept_button.click()
    assert lab.results.results[row].reviewer_label is None
    assert "signed off" in lab.statusBar().currentMessage()


def test_the_request_and_its_cells_survive_a_restart(qtbot, tmp_path, make_window):
    """The lab closes the app between sending and the reply: the request's ID and the cells' IDs come back from
    the autosave, so the reply still merges, into the right cells."""
    lab, _, reply = _sent_and_answered(qtbot, tmp_path, make_window, answer={"twin.png": "basophil"})
    lab.autosave(wait=True)
    again = make_window("lab")  # the same autosave and settings
    qtbot.waitUntil(lambda: again.results.rowCount() == 5, timeout=10000)
    assert again.exports.sent == lab.exports.sent and len(again.exports.sent) == 1
    assert [r.cell_id for r in again.results.results] == [r.cell_id for r in lab.results.results]
    assert again.open_package(reply)
    assert again.exports.last_disagreements == [("twin.png", "eosinophil", "basophil")]
