"""The window keeps no JSON autosave (issue 29): the open session comes back from the case archive a chunk per
event-loop turn (a 10,000-cell session froze the window while it restored), the case shown first; the
consultation comes back with it; a new session empties the open session, never the archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hv_desktop.core.cases.consultation import ConsultationState  # noqa: E402
from hv_desktop.core.storage.archive import CaseArchive  # noqa: E402
from hv_desktop.core.workspace import Workspace  # noqa: E402
from hv_desktop.gui import persistence  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.results_model import COL_SENDER  # noqa: E402
from tests.unit.test_workspace import _cells  # noqa: E402


def _window(qtbot: QtBot, data: Path, model: Path) -> MainWindow:
    w = MainWindow(
        model_path=model,
        settings=QSettings(str(data.parent / "s.ini"), QSettings.Format.IniFormat),
        autosave_path=data / "autosave.json",
    )
    qtbot.addWidget(w)
    return w


def _open_session(data: Path, cases: dict[str, int], current: str) -> None:
    """An open session in the archive, as a window that closed left it."""
    data.mkdir(parents=True, exist_ok=True)
    ws = Workspace(CaseArchive.open(data / "cases.sqlite"))
    for _ in ws.restore_open():
        pass
    for cid, n in cases.items():
        ws.new_case(cid, "A. Tech")
        ws.add_results(_cells(n, cid))
    ws.review.current = current
    ws.record_open()
    assert ws.archive is not None
    ws.archive.close()


def test_the_open_session_comes_back_a_chunk_per_turn_the_case_shown_first(
    qtbot: QtBot, tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "RESTORE_CHUNK", 100)
    data = tmp_path / "data"
    _open_session(data, {"S-1": 250, "S-2": 120, "S-3": 30}, "S-2")
    w = _window(qtbot, data, tiny_model_path)
    assert w.persistence.restoring and w.results.rowCount() == 0  # the window is built before any cell comes
    assert list(w.review.cases) == ["S-1", "S-2", "S-3"] and w.review.current == "S-2"
    counts = []
    while w.persistence.restoring:
        QApplication.processEvents()
        counts.append(w.results.rowCount())
    assert counts[0] <= 100 and len(set(counts)) >= 4  # one chunk per turn, never all at once
    assert w.results.rowCount() == 400 and [r.case for r in w.results.results[:120]] == ["S-2"] * 120
    assert len(w.review.case_results("S-1")) == 250 and "Restored the previous session" in w.statusBar().currentMessage()


def test_the_consultation_comes_back_and_a_new_session_empties_only_the_open_session(
    qtbot: QtBot, tmp_path: Path, tiny_model_path: Path
) -> None:
    data = tmp_path / "data"
    _open_session(data, {"C-1": 3}, "C-1")
    w1 = _window(qtbot, data, tiny_model_path)
    qtbot.waitUntil(lambda: not w1.persistence.restoring, timeout=10000)
    first = w1.results.results[0].cell_id
    state = ConsultationState("request", "pkg-1", {"case_id": "C-1"}, {first: "monocyte"}, {"sent-1": "C-1"})
    w1.workspace.consultation = state  # what opening a package does (the window shows it)
    assert w1.exports.consultation == state and w1.results.sender_labels == {first: "monocyte"}  # one state, shown
    w1.autosave()
    w1.close()

    w2 = _window(qtbot, data, tiny_model_path)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 3 and not w2.persistence.restoring, timeout=10000)
    assert w2.exports.consultation.received and w2.exports.sent == {"sent-1": "C-1"}
    assert w2.results.sender_labels == {first: "monocyte"} and not w2.results_pane.table.isColumnHidden(COL_SENDER)
    w2.new_session()
    assert w2.results.rowCount() == 0 and not w2.exports.consultation.received and w2.exports.sent == {"sent-1": "C-1"}
    assert w2.results_pane.table.isColumnHidden(COL_SENDER)
    w2.close()

    w3 = _window(qtbot, data, tiny_model_path)
    qtbot.waitUntil(lambda: not w3.persistence.restoring, timeout=10000)
    assert w3.results.rowCount() == 0 and w3.review.cases == {}  # the open session is empty ...
    assert w3.workspace.archive is not None and len(w3.workspace.archive.load_case("C-1").results) == 3  # ... not the archive
    assert w3.exports.sent == {"sent-1": "C-1"}  # a reply to the request sent still finds its case
