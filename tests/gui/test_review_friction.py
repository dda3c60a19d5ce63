"""Issue 30, item 7: what a newcomer tripped over while reviewing - the keyboard after a run or a case choice,
the differential cut to three rows, and "By review" counting unreviewed cells without saying so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings, QSize  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from hv_desktop.gui.main_window import MainWindow, default_window_size  # noqa: E402
from tests.support.gui import images as _images  # noqa: E402
from tests.support.gui import run as _run  # noqa: E402
from tests.support.ort_missing import break_onnxruntime  # noqa: E402

#: a desktop's taskbar and a window's title bar take this much of the screen's height
TASKBAR, TITLE_BAR = 40, 32


def _window(qtbot, tmp_path, model, size: QSize | None = None) -> MainWindow:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)  # no saved layout
    w = MainWindow(model_path=model, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    w.ask_case = lambda name: "add"
    if size is not None:
        w.resize(size)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(lambda: getattr(w, "_preview_sized", False), timeout=5000)
    return w

    qtbot.wait(20)


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_path):
    w = _window(qtbot, tmp_path, tiny_model_path)
    yield w
    if w.is_running():
        w.cancel_run()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=10000)


# ---------------------------------------------------------------------------------------------- 1. the keyboard


def test_a_review_key_right_after_a_run_reviews_the_selected_cell(qtbot, window, tmp_path):
    """Break: the focus stayed in the Case box, so the first key after a run did nothing."""
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "r", 4)]))
    focused = QApplication.focusWidget()
    assert focused is window.results_pane.table  # where review keys work
    qtbot.keyClick(focused, "2")  # the person presses a key without clicking first
    assert window.results.results[0].reviewer_label == "lymphocyte"
    assert window.results_pane.table.currentIndex().row() == 1  # and moved on


def test_a_review_key_right_after_choosing_a_case_reviews_that_case(qtbot, window, tmp_path, monkeypatch):
    """Break: after choosing a case in the Case box the keys went to the box (a digit or letter picked a case)."""
    _run(qtbot, window, lambda: window.open_paths([_images(tmp_path / "S-1", 4)]))
    window.ask_case = lambda name: "new"
    original = MainWindow.new_case
    monkeypatch.setattr(MainWindow, "new_case", lambda self, name="", ask=True: original(self, "S-2", ask=False))
    _run(qtbot, window, lambda: window.open_paths([_images(tmp_path / "second", 3, start=10)]))
    assert window.review.current == "S-2"
    window.results_pane.case_combo.setFocus()
    window.results_pane.case_combo.setCurrentIndex(window.results_pane.case_combo.findData("S-1"))  # the person picks S-1
    assert window.review.current == "S-1"
    focused = QApplication.focusWidget()
    assert focused is window.results_pane.table
    qtbot.keyClick(focused, "m")
    first_of_s1 = next(r for r in window.results.results if r.case == "S-1")
    assert first_of_s1.reviewer_label == "monocyte"
    assert all(r.reviewer_label is None for r in window.results.results if r.case == "S-2")


def _move_archive(before: Path, now: Path) -> None:
    """The previous session (the case archive holds it) into another data folder, with a fresh window's settings."""
    now.mkdir()
    for f in before.glob("cases.sqlite*"):
        f.replace(now / f.name)


def test_a_review_key_right_after_the_previous_session_is_restored_reviews_a_cell(qtbot, tmp_path, tiny_model_path):
    first = _window(qtbot, tmp_path / "before", tiny_model_path)
    _run(qtbot, first, lambda: first.classify([_images(tmp_path / "r", 3)]))
    first.close()
    _move_archive(tmp_path / "before", tmp_path / "now")
    w = _window(qtbot, tmp_path / "now", tiny_model_path)
    qtbot.waitUntil(lambda: w.results.rowCount() == 3, timeout=10000)
    focused = QApplication.focusWidget()
    assert focused is w.results_pane.table
    qtbot.keyClick(focused, "n")
    assert w.results.results[0].reviewer_label == "neutrophil"


def test_a_finished_run_leaves_the_focus_where_text_is_being_typed(qtbot, window, tmp_path):
    """The name filter keeps the keyboard when a run ends while the person types in it."""
    search = window.results_pane.search
    search.setFocus()
    qtbot.waitUntil(search.hasFocus, timeout=2000)
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "t", 3)]))
    assert QApplication.focusWidget() is search
    qtbot.keyClicks(search, "cell")
    assert search.text() == "cell" and all(r.reviewer_label is None for r in window.results.results)


# ---------------------------------------------------------------------------------------------- 2. the differential


def _rows_shown_whole(table) -> list[bool]:
    viewport = table.viewport().rect()
    return [viewport.contains(table.visualRect(table.model().index(i, 0))) for i in range(table.rowCount())]


@pytest.mark.parametrize("start", ["run", "restored", "resized"])
@pytest.mark.parametrize("screen", [QSize(1366, 768), QSize(1920, 1080)], ids=["1366x768", "1920x1080"])
def test_every_differential_row_shows_without_scrolling(qtbot, tmp_path, tiny_model_path, screen, start):
    """Break: three rows showed and the rest scrolled, at 1366 x 768 and at 1920 x 1080. Now every class, the
    total, the per-100 types and the flagged / failed rows show, at the window's default size on that screen
    (less a taskbar and a title bar), while the picture keeps at least a third of the height: after a run, and
    when the window starts with the previous session."""
    size = default_window_size(QSize(screen.width(), screen.height() - TASKBAR))
    size.setHeight(min(size.height(), screen.height() - TASKBAR - TITLE_BAR))
    if start == "restored":
        first = _window(qtbot, tmp_path / "before", tiny_model_path, size)
        _run(qtbot, first, lambda: first.classify([_images(tmp_path / "d", 8)]))
        first.close()
        _move_archive(tmp_path / "before", tmp_path / "now")
        w = _window(qtbot, tmp_path / "now", tiny_model_path, size)
        qtbot.waitUntil(lambda: w.results.rowCount() == 8, timeout=10000)
        qtbot.wait(50)
    elif start == "resized":  # a window manager gives the window its size (maximised) after it is shown
        w = _window(qtbot, tmp_path, tiny_model_path, QSize(1024, 640))
        _run(qtbot, w, lambda: w.classify([_images(tmp_path / "d", 8)]))
        w.resize(size)
        qtbot.wait(50)
    else:
        w = _window(qtbot, tmp_path, tiny_model_path, size)
        _run(qtbot, w, lambda: w.classify([_images(tmp_path / "d", 8)]))
    table = w.differential_pane.diff_table
    for mode in (0, 1):  # by model, by review
        w.differential_pane.diff_mode.setCurrentIndex(mode)
        qtbot.wait(20)
        names = [table.verticalHeaderItem(i).text() for i in range(table.rowCount())]
        assert {"Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil"} <= set(names)
        assert all(_rows_shown_whole(table)), (mode, names, table.height())
        assert not table.verticalScrollBar().isVisible()
    # a nucleated red cell and a smudge cell bring two rows per 100 white cells
    w.results_pane.table.setFocus()
    for row, key in ((0, "r"), (1, "s")):
        w.results_pane.table.selectRow(row)
        qtbot.keyClick(w.results_pane.table, key)
    w.update_differential()
    qtbot.wait(20)
    names = [table.verticalHeaderItem(i).text() for i in range(table.rowCount())]
    assert "Nucleated red cell /100 WBC" in names and "Smudge cell /100 WBC" in names
    shown = _rows_shown_whole(table)
    essential = names.index("Smudge cell /100 WBC") + 1  # the classes, the WBC total and the per-100 types
    assert all(shown[:essential]), (names, shown)
    assert w.preview_split.sizes()[0] >= size.height() / 3


# ---------------------------------------------------------------------------------------------- 3. by review


def test_by_review_says_what_is_unreviewed_and_gives_the_white_cell_total(qtbot, window, tmp_path):
    """Break: "By review" counted unreviewed cells under the model's class without a word, and had no WBC total."""
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "b", 8)]))
    window.results_pane.table.setFocus()
    window.results_pane.table.selectRow(0)
    qtbot.keyClick(window.results_pane.table, "2")  # one eosinophil reviewed as a lymphocyte
    window.differential_pane.diff_mode.setCurrentIndex(1)
    table = window.differential_pane.diff_table
    headers = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert headers == ["Count", "%", "Unreviewed"]
    rows = {
        table.verticalHeaderItem(i).text(): [table.item(i, j).text() for j in range(table.columnCount())]
        for i in range(table.rowCount())
    }
    assert rows["Lymphocyte"] == ["3", "37.5", "2"]  # 2 by the model, 1 by review
    assert rows["Eosinophil"] == ["1", "12.5", "1"]  # only the model's call
    assert rows["White cells (WBC)"] == ["8", "100.0", "7"]
    note = window.differential_pane.note
    assert note.isVisible() and note.text() == "unreviewed cells count as the model's class"
    window.differential_pane.diff_mode.setCurrentIndex(0)  # by model: the model's counts, two columns
    assert table.columnCount() == 2 and note.text() == ""


# ---------------------------------------------------------------------------------------------- 5. the Visual C++ runtime


def test_the_app_names_a_missing_visual_cpp_runtime_at_start_up(qtbot, monkeypatch, tmp_path, capsys):
    """Break: on a fresh Windows PC onnxruntime's "DLL load failed" came out as a traceback. Now the start-up
    says which download is missing, in a dialog (the windowed app has no console) and on stderr."""
    import sys

    from hv_desktop.gui import app as app_module

    qapp = QApplication.instance()
    before = (qapp.style().name(), QApplication.applicationName(), QApplication.organizationName())
    break_onnxruntime(monkeypatch)
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a, **k: shown.append((title, text)))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setenv("HV_DATA_DIR", str(tmp_path / "data"))
    try:
        code = app_module.run_gui()
    finally:
        qapp.setStyle(before[0])
        QApplication.setApplicationName(before[1])
        QApplication.setOrganizationName(before[2])
    vc_redist = "Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64)"
    assert code == 1
    assert shown and shown[0][0] == "HematoVision cannot start" and vc_redist in shown[0][1]
    assert vc_redist in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # stopped before any window, session or log
