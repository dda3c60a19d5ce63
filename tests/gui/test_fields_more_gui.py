"""Camera fields in the window, the rest of issue 28 item 3: the saved heatmap of a cell is its own square, a
field without a white cell has none, the report follows the edge-cell setting and shows cells, and practice
mode opens beside a session of field rows."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from hv_desktop.core.inference.fields import cell_square
from hv_desktop.gui.cell_mode import EDGE_KEY
from hv_desktop.gui.main_window import MainWindow
from hv_desktop.gui.report import ReportInfo
from tests.unit.test_detect import field


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    monkeypatch.setattr(w, "ask_case", lambda name: "add")
    yield w
    if w.is_running():
        w.cancel_run()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=10000)


@pytest.fixture
def fields_run(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> MainWindow:
    field(nuclei=[(180, 200), (450, 300)]).save(tmp_path / "a_two.png")
    field(seed=1).save(tmp_path / "b_none.png")
    field(nuclei=[(300, 240), (630, 100)], seed=2).save(tmp_path / "c_edge.png")
    window.cell_mode.set_fields(True)
    with qtbot.waitSignal(window.runFinished, timeout=30000):
        window.classify([tmp_path / n for n in ("a_two.png", "b_none.png", "c_edge.png")])
    assert len(window.results.results) == 5
    return window


def _row(w: MainWindow, name: str, index: int | None) -> int:
    return next(i for i, r in enumerate(w.results.results) if r.path.name == name and r.cell_index == index)


def test_save_heatmap_of_a_cell_is_its_square_and_a_field_without_a_cell_has_none(fields_run: MainWindow, tmp_path: Path) -> None:
    w = fields_run
    w.results_pane.select_source_row(_row(w, "a_two.png", 2))
    r = w.current_result()
    assert r is not None and r.cell_index == 2 and r.cell_box is not None
    out = tmp_path / "cell2.png"
    assert w.save_heatmap(out)
    side = cell_square(r.cell_box)[2] - cell_square(r.cell_box)[0]
    with Image.open(out) as im:
        assert im.size == (side, side + 22)
    w.results_pane.select_source_row(_row(w, "b_none.png", None))
    assert not w.save_heatmap(tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def _text(path: Path) -> str:
    reader = PdfReader(str(path))
    return " ".join(unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in reader.pages)).split())


def test_the_windows_report_counts_cells_from_fields_as_the_edge_setting_says(fields_run: MainWindow, tmp_path: Path) -> None:
    w = fields_run
    assert w.export_report(tmp_path / "skip.pdf", ReportInfo("", "", "Op"))
    text = _text(tmp_path / "skip.pdf")
    assert "3 cells from 2 fields · 1 edge cell left out" in text and "cell 2 of 2" in text and "b_none" not in text
    w.settings.setValue(EDGE_KEY, "count")
    assert w.export_report(tmp_path / "count.pdf", ReportInfo("", "", "Op"))
    assert "4 cells from 2 fields · 1 edge cell counted" in _text(tmp_path / "count.pdf")


def test_practice_opens_beside_a_session_of_field_rows(qtbot: QtBot, fields_run: MainWindow, tmp_path: Path) -> None:
    root = tmp_path / "practice"
    (root / "lymphocyte").mkdir(parents=True)
    field(nuclei=[(300, 240)]).save(root / "lymphocyte" / "f.png")
    win = fields_run.open_practice(root)
    assert win is not None
    qtbot.addWidget(win)
    qtbot.keyClick(win, "l")
    assert "The model says" in win.feedback.text()
    assert len(fields_run.results.results) == 5  # the session's rows are untouched
