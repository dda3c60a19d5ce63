"""Camera fields in the window (issue 28, item 3): the Cases menu's "camera fields" setting makes a run classify
every white cell (a row per cell with its box, one "no white cell" row for a field without), the preview draws
the field's boxes and a click on one selects its cell, the differential counts cells from fields and leaves the
edge cells out unless the setting counts them. Fields are drawn here (tests/unit/test_detect.py's ``field``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from pytestqt.qtbot import QtBot

from hv_desktop.core.cases.runs import RunQueue
from hv_desktop.core.inference.result import Result
from hv_desktop.gui.cell_mode import EDGE_KEY, IMAGES_KEY
from hv_desktop.gui.main_window import MainWindow
from hv_desktop.gui.preview_pane import PreviewPane
from hv_desktop.gui.results_model import COL_FILE, COL_STATUS, NO_CELL_TEXT
from tests.unit.test_detect import field


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    monkeypatch.setattr(w, "ask_case", lambda name: "add")
    w.resize(1300, 760)
    w.show()
    yield w
    if w.is_running():
        w.cancel_run()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=10000)


def _save(tmp_path: Path, name: str, **kwargs: Any) -> Path:
    path = tmp_path / name
    field(**kwargs).save(path)
    return path


def _run(qtbot: QtBot, w: MainWindow, paths: list[Path], fields: bool = True) -> None:
    w.cell_mode.set_fields(fields)
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        w.classify(paths)


def _ready(qtbot: QtBot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.preview_pane.loader.pending, timeout=10000)


def _inside(box: tuple[int, int, int, int] | None, x: float, y: float) -> bool:
    assert box is not None
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def _diff_row(w: MainWindow, name: str) -> str:
    table = w.differential_pane.diff_table
    names = [item.text() if (item := table.verticalHeaderItem(i)) else "" for i in range(table.rowCount())]
    cell = table.item(names.index(name), 0)
    assert cell is not None
    return cell.text()


def test_the_setting_is_kept_and_crops_stay_one_row_per_file(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    assert window.cell_mode.crops.isChecked()  # today's behaviour by default
    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    _run(qtbot, window, [path], fields=False)
    assert len(window.results.results) == 1 and window.results.results[0].cell_index is None
    window.cell_mode.fields.trigger()  # the menu
    assert window.settings.value(IMAGES_KEY) == "fields"
    _run(qtbot, window, [path])  # both kinds in one session
    assert [r.cell_index for r in window.results.results] == [None, 1, 2]
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus.index("&Cases") == menus.index("&File") + 1


def test_a_field_with_two_white_cells_gives_two_rows_with_boxes(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    _run(qtbot, window, [path])
    rows = window.results.results
    assert [r.cell_index for r in rows] == [1, 2]
    assert _inside(rows[0].cell_box, 180, 200) and _inside(rows[1].cell_box, 450, 300)
    names = [window.results.index(i, COL_FILE).data() for i in range(2)]
    assert names == ["two.png · cell 1 of 2", "two.png · cell 2 of 2"]
    for r in rows:  # the thumbnail is the cell's square, not the 4:3 field
        assert r.thumbnail is not None and r.thumbnail.shape[0] == r.thumbnail.shape[1]
    assert window.runner.queue.done == 1 == window.runner.queue.total  # progress counts files, as its total
    assert _diff_row(window, "Classified") == "2"
    assert window.differential_pane.source.text() == "2 cells from 1 field"
    assert window.differential_pane.source.isVisible()


def test_a_field_with_no_white_cell_gives_one_row_that_says_so(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    path = _save(tmp_path, "none.png")
    _run(qtbot, window, [path])
    (r,) = window.results.results
    assert r.no_cell and r.ok and r.label is None
    assert window.results.index(0, COL_STATUS).data() == NO_CELL_TEXT
    assert window.results.index(0, COL_FILE).data() == "none.png · no white cell"
    window.results_pane.select_source_row(0)
    _ready(qtbot, window)
    assert window.preview_pane.cells_note.text() == "No white cell was found in this field."
    assert window.preview_pane.cells_note.isVisible()
    assert window.preview_pane.pixmap is not None  # the field is shown
    assert _diff_row(window, "Classified") == "0" and _diff_row(window, "✕ Failed") == "0"
    assert "1 field with no white cell" in window.differential_pane.source.text()


def test_an_edge_cell_is_marked_and_kept_out_of_the_differential(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    path = _save(tmp_path, "edge.png", nuclei=[(300, 240), (630, 100)])
    _run(qtbot, window, [path])
    rows = window.results.results
    (edge,) = [i for i, r in enumerate(rows) if r.cell_at_edge]
    assert len(rows) == 2 and _inside(rows[edge].cell_box, 625, 100)
    assert _diff_row(window, "Classified") == "1"
    assert window.differential_pane.source.text() == "1 cell from 1 field · 1 edge cell left out"
    window.differential_pane.diff_mode.setCurrentIndex(1)  # by review: left out too
    assert _diff_row(window, "White cells (WBC)") == "1"
    window.preview_pane.cell_zoom.setChecked(False)
    window.results_pane.select_source_row(edge)
    _ready(qtbot, window)
    assert "Cell at the image edge" in window.preview_pane.preview_title.text()
    window.cell_mode.edge.trigger()  # Cases ▸ Count Cells at the Field Edge
    assert window.settings.value(EDGE_KEY) == "count"
    assert _diff_row(window, "White cells (WBC)") == "2"
    assert window.differential_pane.source.text() == "2 cells from 1 field · 1 edge cell counted"


def _label_point(pane: PreviewPane, box: tuple[int, int, int, int]) -> QPoint:
    """The centre of ``box`` (the picture's pixels) in the picture label's coordinates, as the pane fits it."""
    shown = pane.preview.pixmap()
    area = pane.preview.contentsRect()
    scale = shown.width() / pane._view_size[0]
    x = area.x() + (area.width() - shown.width()) / 2 + (box[0] + box[2]) / 2 * scale
    y = area.y() + (area.height() - shown.height()) / 2 + (box[1] + box[3]) / 2 * scale
    return QPoint(round(x), round(y))


def test_the_preview_draws_every_box_and_a_click_on_one_selects_its_cell(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    _run(qtbot, window, [path])
    pane = window.preview_pane
    pane.cell_zoom.setChecked(False)  # the whole field
    window.results_pane.select_source_row(0)
    _ready(qtbot, window)
    assert len(pane.boxes) == 2 and pane.result is window.results.results[0]
    assert pane.pixmap is not None
    pixels = pane.pixmap.toImage()
    b0, b1 = pane.boxes
    assert pixels.pixelColor(b0[0] + 1, (b0[1] + b0[3]) // 2).green() > 150  # the selected cell: green
    assert pixels.pixelColor(b1[0], (b1[1] + b1[3]) // 2).blue() > 200  # the other: blue
    qtbot.mouseClick(pane.preview, Qt.MouseButton.LeftButton, pos=_label_point(pane, b1))
    assert window.results_pane.current()[1] == 1  # the table's row of cell 2
    _ready(qtbot, window)
    assert pane.result is window.results.results[1]
    assert "two.png · cell 2 of 2" in pane.preview_title.text()
    qtbot.mouseClick(pane.preview, Qt.MouseButton.LeftButton, pos=QPoint(2, 2))  # off every box: nothing changes
    assert window.results_pane.current()[1] == 1


def test_a_fields_cells_split_across_bundles_are_all_kept() -> None:
    """The worker hands rows over every ~80 ms: a field's second cell in the next bundle was taken for a repeat."""
    queue = RunQueue()
    queue.begin("A")
    cells = [Result(Path("f.png"), label="x", sha256="s", cell_index=i, cell_box=(0, 0, 9, 9)) for i in (1, 2)]
    assert queue.fresh(cells[:1]) == cells[:1] and queue.fresh(cells[1:]) == cells[1:]
    assert queue.done == 1 and queue.skipped == 0


def test_reclassifying_keeps_each_cell_its_own_result(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    crop = _save(tmp_path, "crop.png", nuclei=[(320, 240)])
    _run(qtbot, window, [crop], fields=False)
    _run(qtbot, window, [path])
    rows = window.results.results
    before = [dict(r.probabilities) for r in rows]
    assert before[1] != before[2]
    for r in rows:
        r.probabilities = {}
    with qtbot.waitSignal(window.runFinished, timeout=30000):
        window.runner.reclassify()
    assert [r.cell_index for r in rows] == [None, 1, 2]
    for r, old in zip(rows, before, strict=True):
        assert r.probabilities == pytest.approx(old)
    assert np.isclose(sum(rows[1].probabilities.values()), 1.0, atol=1e-3)


def test_a_restored_fields_cells_keep_their_boxes_and_own_thumbnails(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    """Thumbnails are not kept: a restored session made the whole 4:3 field each cell's picture."""
    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    _run(qtbot, window, [path])
    boxes = [r.cell_box for r in window.results.results]
    model = window.model.path if window.model else None
    w2 = MainWindow(model_path=model, settings=window.settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 2, timeout=10000)
    qtbot.waitUntil(lambda: all(r.thumbnail is not None for r in w2.results.results), timeout=10000)
    assert [r.cell_box for r in w2.results.results] == boxes
    for r in w2.results.results:
        assert r.thumbnail is not None and r.thumbnail.shape == (96, 96, 3)


def test_cell_thumbnails_are_each_cells_square(tmp_path: Path) -> None:
    """What a restored session's cells get (hv_desktop.gui.persistence): the cell's square, not the field."""
    from hv_desktop.core.inference.fields import cell_thumbnails

    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    rows = [Result(path, label="x", cell_index=i, cell_box=b) for i, b in ((1, (150, 170, 210, 230)), (2, (420, 270, 480, 330)))]
    crop = Result(path, label="x")
    cell_thumbnails([*rows, crop], 96)
    assert crop.thumbnail is None  # a file classified as one cell: rebuild_thumbnails' job
    for r in rows:
        assert r.thumbnail is not None and r.thumbnail.shape == (96, 96, 3)
        centre = r.thumbnail[40:56, 40:56].astype(int)
        assert (centre[..., 2] - centre[..., 1]).mean() > 60  # the purple nucleus in the middle


def test_a_fields_second_cell_arriving_in_a_later_bundle_gets_its_box_drawn(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, tiny_model_path: Path
) -> None:
    """CI, under load: the first cell was shown (and selected) from the run's first bundle, the second cell came in
    the next, and the preview kept drawing one box until another row was chosen."""
    from hv_desktop.core.inference.fields import classify_field_paths
    from hv_desktop.core.inference.model import Model

    path = _save(tmp_path, "two.png", nuclei=[(180, 200), (450, 300)])
    cells = list(classify_field_paths([path], Model(tiny_model_path)))
    assert len(cells) == 2
    window.preview_pane.cell_zoom.setChecked(False)
    window.workspace.add_results(cells[:1])
    window.runner.rowsAdded.emit()  # the first bundle: its one cell is selected and shown
    _ready(qtbot, window)
    assert len(window.preview_pane.boxes) == 1
    window.workspace.add_results(cells[1:])
    window.runner.rowsAdded.emit()  # the next bundle
    _ready(qtbot, window)
    assert len(window.preview_pane.boxes) == 2 and window.results_pane.current()[1] == 0
