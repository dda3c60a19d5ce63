"""The window driven as a person would, offscreen (pytest-qt)."""

from __future__ import annotations

import csv
import os

import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.results_model import COL_SENDER  # noqa: E402
from tests.support import ROOT  # noqa: E402


def _images(folder, n, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    colours = [(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]
    for i in range(start, start + n):
        Image.new("RGB", (24, 24), colours[i % 4]).save(folder / f"cell_{i:04d}.png")
    return folder


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    w.ask_case = lambda name: "add"  # opening more images: more of the same case (its own test asks)
    w.show()
    yield w
    if w.is_running():
        w.cancel_run()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=10000)


def _run(qtbot, w, action):
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        action()


def _preview_ready(qtbot, w):
    """The preview is made off the GUI thread: wait for the answer to the latest request."""
    qtbot.waitUntil(lambda: not w.preview_pane.loader.pending, timeout=10000)


def test_open_folder_classifies_in_background(qtbot, window, tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", 12)
    (folder / "broken.jpg").write_bytes(b"garbage")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    _run(qtbot, window, window.commands.open_folder.trigger)
    assert window.results.rowCount() == 13
    assert sum(1 for r in window.results.results if r.error) == 1
    labels = [r.label for r in window.results.results if r.ok]
    assert labels[:4] == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert window.differential_pane.diff_table.item(0, 0).text() == "3"  # eosinophils in the live differential
    assert str(folder) in window.settings.value("recent_folders")


def test_drop_files_and_folders(qtbot, window, tmp_path):
    a = _images(tmp_path / "a", 3)
    single = _images(tmp_path / "b", 1) / "cell_0000.png"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(a)), QUrl.fromLocalFile(str(single))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    _run(qtbot, window, lambda: window.dropEvent(event))
    assert window.results.rowCount() == 4


def test_cancel_mid_run_keeps_results(qtbot, window, tmp_path):
    import numpy as np

    folder = tmp_path / "many"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "seed.png")  # slow-ish to decode, so the run lasts
    data = (folder / "seed.png").read_bytes()
    for i in range(400):
        (folder / f"cell_{i:04d}.png").write_bytes(data)
    window.classify([folder])
    qtbot.waitUntil(lambda: window.results.rowCount() > 0, timeout=20000)
    with qtbot.waitSignal(window.runFinished, timeout=20000):
        window.runner.cancel_button.click()
    assert 0 < window.results.rowCount() < 401
    assert not window.is_running() and not window.runner.progress.isVisible()


def test_review_by_keys_and_export(qtbot, window, tmp_path, monkeypatch):
    folder = _images(tmp_path / "r", 4)
    _run(qtbot, window, lambda: window.classify([folder]))
    window.results_pane.table.setFocus()
    window.results_pane.table.selectRow(0)
    qtbot.keyClick(window.results_pane.table, "2")  # review row 0 as lymphocyte, move on
    assert window.results.results[0].reviewer_label == "lymphocyte"
    assert window.results_pane.table.currentIndex().row() == 1
    qtbot.keyClick(window.results_pane.table, Qt.Key_Return)  # confirm the model's label for row 1
    assert window.results.results[1].reviewer_label == window.results.results[1].label
    qtbot.keyClick(window.results_pane.table, "m")
    assert window.results.results[2].reviewer_label == "monocyte"
    assert "Reviewed 3 of 4" in window.differential_pane.review_progress.text()
    window.differential_pane.diff_mode.setCurrentIndex(1)  # differential by review
    assert window.differential_pane.diff_table.item(1, 0).text() == "2"  # two lymphocytes after review
    out = tmp_path / "export.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "CSV files (*.csv)"))
    window.commands.export.trigger()
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["reviewer_label"] for r in rows] == ["lymphocyte", rows[1]["predicted_label"], "monocyte", ""]


def test_bad_model_shows_dialog_and_keeps_current(qtbot, window, tmp_path, monkeypatch):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    shown = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **k: shown.append(a[2]))
    before = window.model
    window.commands.model.trigger()
    assert shown and "not a valid ONNX model" in shown[0]
    assert window.model is before and "tiny-test" in window.runner.model_label.text()


def test_review_is_autosaved_and_restored(qtbot, tmp_path, tiny_model_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    autosave = tmp_path / "autosave.json"
    w1 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w1)
    folder = _images(tmp_path / "x", 3)
    with qtbot.waitSignal(w1.runFinished, timeout=30000):
        w1.classify([folder])
    w1.results_pane.table.selectRow(0)
    qtbot.keyClick(w1.results_pane.table, "4")
    assert not autosave.exists()  # no JSON rewritten whole: the review went into the case archive as it was made
    # simulate a crash: no close event, a new window starts from the archive
    w2 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 3, timeout=10000)  # restored off the GUI thread
    assert w2.results.results[0].reviewer_label == "neutrophil"
    assert "Restored" in w2.statusBar().currentMessage()
    qtbot.waitUntil(lambda: all(r.thumbnail is not None for r in w2.results.results), timeout=5000)


def test_filters_by_state_and_class(qtbot, window, tmp_path):
    folder = _images(tmp_path / "f", 8)
    (folder / "zz_bad.png").write_bytes(b"")
    _run(qtbot, window, lambda: window.classify([folder]))
    window.results_pane.state_combo.setCurrentText("Errors")
    assert window.results_pane.proxy.rowCount() == 1
    window.results_pane.state_combo.setCurrentText("All")
    window.results_pane.class_combo.setCurrentIndex(1)  # eosinophil
    assert window.results_pane.proxy.rowCount() == 2


def test_watch_folder_classifies_new_files_written_in_chunks(qtbot, window, tmp_path):
    import io
    import time

    folder = tmp_path / "camera"
    folder.mkdir()
    Image.new("RGB", (24, 24), (250, 5, 5)).save(folder / "already_there.png")
    window.toggle_watch(folder)
    assert window.commands.watch.isChecked()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (5, 5, 250)).save(buf, "PNG")
    data = buf.getvalue()
    with open(folder / "new_cell.png", "wb") as fh:  # written slowly, in chunks
        for i in range(0, len(data), len(data) // 3 + 1):
            fh.write(data[i : i + len(data) // 3 + 1])
            fh.flush()
            qtbot.wait(120)
            assert window.results.rowCount() == 0  # nothing classified while it is being written
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: window.results.rowCount() == 1 and not window.is_running(), timeout=5000)
    assert time.monotonic() - t0 < 1.5
    assert window.results.results[0].path.name == "new_cell.png"
    assert window.results.results[0].label == "lymphocyte"
    window.toggle_watch()
    assert not window.commands.watch.isChecked()


def test_practice_mode_feedback_and_summary(qtbot, window, tmp_path):
    root = tmp_path / "practice"
    for cls, colour in (("EOSINOPHIL", (250, 5, 5)), ("lymphocyte", (5, 5, 250))):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), colour).save(root / cls / f"{i}.png")
    win = window.open_practice(root)
    qtbot.addWidget(win)
    assert "Cell 1 of 4" in win.counter.text()
    seen = []
    for _ in range(4):
        ref = win.session.current()[1]
        answer = "eosinophil"
        qtbot.keyClick(win, "e")
        seen.append(ref == answer)
        text = win.feedback.text()
        assert ("Correct" in text) == (ref == answer)
        assert "The model says" in text
        qtbot.keyClick(win, Qt.Key_Space)
    assert win.session.finished and "Finished: 2 of 4" in win.counter.text()
    assert win.session.confusion()[1][0] == 2  # lymphocytes answered as eosinophil
    out = tmp_path / "p.csv"
    assert win.export_csv(out)
    text = out.read_text(encoding="utf-8-sig")
    assert text.count("\n") >= 5 and "confusion" in text


def test_heatmap_toggle_and_save(qtbot, window, tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    im = Image.new("RGB", (24, 24), (128, 128, 128))
    im.paste((255, 0, 0), (0, 0, 12, 12))  # the red (eosinophil) evidence sits top-left
    im.save(folder / "cell.png")
    _run(qtbot, window, lambda: window.classify([folder]))
    window.results_pane.table.selectRow(0)
    _preview_ready(qtbot, window)
    assert window.results.results[0].label == "eosinophil"
    plain = window.preview_pane.pixmap.toImage()
    window.preview_pane.heat_opacity.setValue(80)
    window.preview_pane.heat_box.setChecked(True)
    _preview_ready(qtbot, window)
    assert window.preview_pane.pixmap.toImage() != plain  # the overlay changed the picture
    out = tmp_path / "heat.png"
    assert window.save_heatmap(out)
    assert Image.open(out).size == (24, 24 + 22)  # with its legend strip


def test_preview_is_decoded_off_the_gui_thread_and_cached(qtbot, window, tmp_path, monkeypatch):
    """Issue 19: choosing a cell never decodes (nor runs the heatmap) on the GUI thread; going back to a cell
    is served from the cache; an answer for a cell no longer selected is dropped."""
    import threading

    from hv_desktop.core.inference import heatmap, preview

    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "pv", 3)]))
    _preview_ready(qtbot, window)  # the first row, selected when the results came in
    decoded, explained = [], []
    real_decode, real_view = preview.decode, heatmap.view_for

    def decode(path, prep):
        decoded.append((path.name, threading.current_thread() is threading.main_thread()))
        return real_decode(path, prep)

    def view_for(*a, **k):
        explained.append(threading.current_thread() is threading.main_thread())
        return real_view(*a, **k)

    monkeypatch.setattr(preview, "decode", decode)
    monkeypatch.setattr(heatmap, "view_for", view_for)
    window.preview_pane.heat_box.setChecked(True)
    for row in (1, 2, 1):
        window.results_pane.table.selectRow(row)
        _preview_ready(qtbot, window)
        assert window.preview_pane.result is window.results.results[row]
    assert [name for name, _ in decoded] == ["cell_0001.png", "cell_0002.png"]  # the repeat came from the cache
    assert not any(on_gui for _, on_gui in decoded) and explained and not any(explained)
    shown = window.preview_pane.pixmap
    window.results_pane.table.selectRow(0)
    window.results_pane.table.selectRow(2)  # row 0's answer, if it comes, is for a cell no longer selected
    _preview_ready(qtbot, window)
    assert window.preview_pane.result is window.results.results[2] and window.preview_pane.pixmap is not shown


def test_report_from_gui(qtbot, window, tmp_path):
    from pypdf import PdfReader

    from hv_desktop.gui.report import ReportInfo

    folder = _images(tmp_path / "rep", 5)
    window.new_case("S-77", ask=False)
    _run(qtbot, window, lambda: window.classify([folder]))
    out = tmp_path / "case.pdf"
    assert window.export_report(out, ReportInfo("", "", "tech"))
    assert "S-77" in PdfReader(str(out)).pages[0].extract_text()
    assert window.review.cases["S-77"].operator == "tech"  # the report's operator is the case's


def test_accept_unflagged_leaves_flagged_cells(qtbot, window, tmp_path):
    folder = _images(tmp_path / "acc", 8)  # grey cells are low-confidence (flagged) with the test model
    _run(qtbot, window, lambda: window.classify([folder]))
    flagged = [r for r in window.results.results if r.needs_review]
    assert flagged and len(flagged) < 8
    assert window.accept_unflagged(ask=False) == 8 - len(flagged)
    assert all((r.reviewer_label == r.label) != r.needs_review for r in window.results.results)
    assert f"Reviewed {8 - len(flagged)} of 8" in window.differential_pane.review_progress.text()


def test_opening_the_same_folder_twice_keeps_one_row_per_file(qtbot, window, tmp_path):
    folder = _images(tmp_path / "twice", 3)
    _run(qtbot, window, lambda: window.classify([folder]))
    window.results_pane.table.selectRow(0)
    qtbot.keyClick(window.results_pane.table, "3")
    _images(folder, 1, start=3)  # one new file arrives
    _run(qtbot, window, lambda: window.classify([folder]))
    assert window.results.rowCount() == 4
    assert window.results.results[0].reviewer_label == "monocyte"  # the review survived
    assert "3 already in this session" in window.statusBar().currentMessage()


def test_missing_x11_libraries_are_all_named_not_a_crash(monkeypatch, capsys):
    import shutil
    import subprocess

    from hv_desktop.gui import app as app_mod

    monkeypatch.setattr(app_mod.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(app_mod, "_x_display_reachable", lambda d: True)
    ldd = "\tlibxcb-icccm.so.4 => not found\n\tlibxcb-keysyms.so.1 => not found\n\tlibxcb.so.1 => /lib/libxcb.so.1 (0x1)\n"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, ldd, ""))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ldd")
    assert app_mod.missing_linux_libraries() == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert app_mod.run_gui() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sudo apt install libxcb-icccm4 libxcb-keysyms1" in err[0]


def test_no_display_is_one_line_and_screenshot_goes_offscreen(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(PYTHONPATH=str(ROOT), HV_DATA_DIR=str(tmp_path / "data"))
    r = subprocess.run([sys.executable, "-m", "hv_desktop"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no display" in r.stderr
    _images(tmp_path / "imgs", 4)
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        [sys.executable, "-m", "hv_desktop", "--screenshot", str(shot), str(tmp_path / "imgs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(shot).size[0] > 300


def test_preview_says_why_a_cell_is_flagged(qtbot, tmp_path):
    """With a model that has a typicality output, a confident but atypical cell is flagged and the preview says so."""
    from tests.support.onnx_factory import tiny_model

    model = tiny_model(tmp_path / "typ.onnx", typicality=True, metadata={"review_threshold": 0.5})
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=model, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    folder = tmp_path / "cells"
    folder.mkdir()
    Image.new("RGB", (40, 40), (255, 200, 200)).save(folder / "a_bright.png")
    Image.new("RGB", (40, 40), (60, 0, 0)).save(folder / "b_dark.png")
    _run(qtbot, w, lambda: w.classify([folder]))
    by_name = {r.path.name: r for r in w.results.results}
    assert not by_name["a_bright.png"].needs_review and by_name["b_dark.png"].needs_review
    assert by_name["b_dark.png"].confidence > 0.5  # confidence alone would not have flagged it
    row = [r.path.name for r in w.results.results].index("b_dark.png")
    w.results_pane.table.selectRow(row)
    from hv_desktop.core.cases.flags import flag_reason

    text = w.preview_pane.preview_title.text()
    short, tip = flag_reason(by_name["b_dark.png"])
    assert f"Needs review: {short}" in text and "typicality" not in text  # words, not a raw score
    assert w.preview_pane.preview_title.toolTip() == tip
    w.results_pane.table.selectRow(1 - row)
    assert "Needs review" not in w.preview_pane.preview_title.text()


def _cropping_window(qtbot, tmp_path, nucleus):
    """A window with a model that asks for the cell crop, after classifying one synthetic field."""
    from tests.support.images import smear
    from tests.support.onnx_factory import tiny_model

    model = tiny_model(
        tmp_path / "crop.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.5}}
    )
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=model, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    folder = tmp_path / "field"
    folder.mkdir()
    im = smear(nucleus=nucleus)
    im.save(folder / "field.png")
    _run(qtbot, w, lambda: w.classify([folder]))
    return w, im, model, settings


def test_preview_outlines_the_square_a_cropping_model_classified(qtbot, tmp_path):
    """With a model whose file asks for the cell crop, the preview shows which part of the field was classified."""
    from hv_desktop.core.imaging.preprocess import Preprocessing, model_box

    w, im, _, _ = _cropping_window(qtbot, tmp_path, nucleus=(230, 70))
    w.preview_pane.cell_zoom.setChecked(False)  # the whole field
    w.results_pane.table.selectRow(0)
    _preview_ready(qtbot, w)
    shown = w.preview_pane.pixmap.toImage()
    assert (shown.width(), shown.height()) == im.size
    left, top, right, _ = model_box(im, Preprocessing(crop="cell", crop_fraction=0.5))
    on_edge = shown.pixelColor((left + right) // 2, top)
    assert (on_edge.red(), on_edge.green(), on_edge.blue()) == (0, 190, 110)
    far = shown.pixelColor(5, im.size[1] - 5)  # outside the square: the image as it is
    assert (far.red(), far.green(), far.blue()) == im.getpixel((5, im.size[1] - 5))


def test_preview_first_and_the_differential_can_be_shown_whole(qtbot, window, tmp_path):
    """By default the picture takes the room (issue 18) and the differential scrolls; dragging the splitter up
    shows every differential row instead."""
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "s", 4)]))
    window.resize(1280, 800)
    qtbot.wait(50)
    split = window.preview_split
    before_preview, before_diff = window.preview_pane.preview_scroll.height(), window.differential_pane.diff_table.height()
    total = sum(split.sizes())
    split.setSizes([10, total - 10])  # drag the handle as far up as it goes
    qtbot.wait(50)
    assert window.preview_pane.preview_scroll.height() < before_preview
    diff_table = window.differential_pane.diff_table
    assert diff_table.height() == diff_table.maximumHeight() >= before_diff  # all rows visible
    assert window.differential_pane.diff_table.rowCount() == 7


def test_window_layout_is_remembered_and_damaged_settings_are_ignored(qtbot, tmp_path, tiny_model_path):
    settings = QSettings(str(tmp_path / "layout.ini"), QSettings.IniFormat)
    w1 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w1)
    w1.resize(720, 560)  # inside the offscreen screen (800 x 800): Qt fits a restored window to the screen
    w1.show()
    qtbot.waitExposed(w1)
    w1.main_split.setSizes([300, 400])
    w1.preview_split.setSizes([360, 150])
    main_sizes, preview_sizes = w1.main_split.sizes(), w1.preview_split.sizes()
    size = (w1.width(), w1.height())
    assert size[1] == 560
    w1.close()
    settings.sync()

    w2 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w2)
    w2.show()
    qtbot.waitExposed(w2)
    assert (w2.width(), w2.height()) == size
    assert w2.main_split.sizes() == main_sizes
    assert w2.preview_split.sizes() == preview_sizes

    for key in MainWindow.LAYOUT_KEYS.values():
        settings.setValue(key, "not a saved state")
    w3 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w3)
    w3.show()
    qtbot.waitExposed(w3)
    from hv_desktop.gui.main_window import default_window_size

    assert w3.height() == default_window_size().height() != 560  # the default size, no crash
    assert w3.preview_split.sizes() != preview_sizes


def test_preview_zooms_to_the_classified_cell_by_default(qtbot, tmp_path, tiny_model_path):
    """A cropping model's preview shows the outlined square with a margin (the cell large); the choice is remembered.
    A model that does not crop always shows the whole field."""
    from hv_desktop.core.imaging.preprocess import Preprocessing, model_box
    from hv_desktop.core.inference.preview import cell_view_box

    w, im, model, settings = _cropping_window(qtbot, tmp_path, nucleus=(150, 120))
    assert w.preview_pane.cell_zoom.isChecked() and w.preview_pane.cell_zoom.isEnabled()
    w.results_pane.table.selectRow(0)
    _preview_ready(qtbot, w)
    box = model_box(im, Preprocessing(crop="cell", crop_fraction=0.5))
    left, top, right, bottom = cell_view_box(box, im.size)
    shown = w.preview_pane.pixmap.toImage()
    assert (shown.width(), shown.height()) == (right - left, bottom - top)
    assert right - left < im.size[0] / 2  # the cell, not the field
    edge = shown.pixelColor((box[0] + box[2]) // 2 - left, box[1] - top)  # the outline, shifted into the view
    assert (edge.red(), edge.green(), edge.blue()) == (0, 190, 110)
    corner = shown.pixelColor(0, 0)
    assert (corner.red(), corner.green(), corner.blue()) == im.getpixel((left, top))  # the margin: the field

    w.preview_pane.cell_zoom.setChecked(False)
    _preview_ready(qtbot, w)
    assert (w.preview_pane.pixmap.width(), w.preview_pane.pixmap.height()) == im.size
    w.close()
    w2 = MainWindow(model_path=model, settings=settings, autosave_path=tmp_path / "a2.json", restore=False)
    qtbot.addWidget(w2)
    assert not w2.preview_pane.cell_zoom.isChecked()  # remembered

    plain = MainWindow(
        model_path=tiny_model_path,
        settings=QSettings(str(tmp_path / "p.ini"), QSettings.IniFormat),
        autosave_path=tmp_path / "a3.json",
    )
    qtbot.addWidget(plain)
    assert plain.preview_pane.cell_zoom.isChecked() and not plain.preview_pane.cell_zoom.isEnabled()
    assert not plain.preview_pane.zooms_to_cell()


@pytest.mark.parametrize("nucleus, at_edge", [((300, 20), True), ((150, 120), False)])
def test_preview_says_when_the_cell_is_at_the_edge_of_the_picture(qtbot, tmp_path, nucleus, at_edge):
    """A cell in the corner of the field cannot be centred in its square; the preview tells the reviewer why the
    outlined square looks off and that part of the cell may be missing."""
    w, _, _, _ = _cropping_window(qtbot, tmp_path, nucleus=nucleus)
    w.results_pane.table.selectRow(0)
    _preview_ready(qtbot, w)
    assert ("Cell at the image edge" in w.preview_pane.preview_title.text()) is at_edge
    assert ("may be cut by the edge" in w.preview_pane.preview_title.toolTip()) is at_edge


def _key_review(qtbot, window, row: int, key: str) -> str | None:
    """Select ``row``, press ``key`` in the table, and return the reviewer label the row then has."""
    window.results_pane.table.selectRow(row)
    qtbot.keyClick(window.results_pane.table, key)
    return window.results.results[row].reviewer_label


def test_review_into_other_cell_types_with_keys_and_menu(qtbot, window, tmp_path):
    """Issue 18: a flagged basophil or a nucleated red cell gets its own name; the differential by review
    counts nucleated red cells per 100 white cells, outside the total."""
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "x", 4)]))
    window.results_pane.table.setFocus()
    assert _key_review(qtbot, window, 0, "b") == "basophil"
    assert _key_review(qtbot, window, 1, "r") == "nucleated red cell"
    other = window.review_panel.other_button
    window.results_pane.table.selectRow(2)
    next(a for a in other.menu().actions() if a.text().startswith("Blast")).trigger()
    assert window.results.results[2].reviewer_label == "blast"
    window.differential_pane.diff_mode.setCurrentIndex(1)  # by review
    window.update_differential()
    rows = {
        window.differential_pane.diff_table.verticalHeaderItem(i).text(): window.differential_pane.diff_table.item(i, 0).text()
        for i in range(window.differential_pane.diff_table.rowCount())
    }
    assert rows["Basophil"] == "1" and rows["Blast"] == "1"
    assert rows["Nucleated red cell /100 WBC"] == "1"
    assert "Nucleated red cell" not in rows  # never among the white cells


def test_preview_gets_at_least_a_third_of_the_height_at_1366x768(qtbot, tmp_path, tiny_model_path):
    settings = QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat)  # no saved layout
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w)
    w.resize(1366, 740)
    w.show()
    qtbot.waitUntil(lambda: getattr(w, "_preview_sized", False), timeout=5000)
    qtbot.wait(50)
    assert w.preview_split.sizes()[0] >= 740 / 3


def test_sign_off_blocked_then_overridden_locked_unlocked_and_restored(qtbot, tmp_path, tiny_model_path, monkeypatch):
    """Issue 18: sign-off needs every flagged cell reviewed or a reason; afterwards the case is locked, the CSV
    and the report carry who and when, unlocking is recorded, and a restart keeps it all."""
    from pypdf import PdfReader

    from tests.support.onnx_factory import tiny_model

    model = tiny_model(tmp_path / "typ.onnx", typicality=True, metadata={"review_threshold": 0.5})
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    autosave = tmp_path / "autosave.json"
    w = MainWindow(model_path=model, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w)
    folder = tmp_path / "cells"
    folder.mkdir()
    Image.new("RGB", (40, 40), (255, 200, 200)).save(folder / "a_bright.png")
    Image.new("RGB", (40, 40), (60, 0, 0)).save(folder / "b_dark.png")  # flagged (atypical)
    _run(qtbot, w, lambda: w.classify([folder]))
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    assert not w.sign_off_case("A. Tech", "") and "not reviewed" in warned[-1]  # blocked
    assert w.review.signed is None
    assert w.sign_off_case("A. Tech", "urgent, consultant informed")  # allowed with a reason
    assert w.review.signed.unreviewed_flagged == 1 and "Signed off by A. Tech" in w.differential_pane.sign_label.text()
    w.results_pane.table.setFocus()
    w.results_pane.table.selectRow(0)
    qtbot.keyClick(w.results_pane.table, "3")
    assert all(r.reviewer_label is None for r in w.results.results)  # locked
    assert w.export_csv(tmp_path / "case.csv")
    with open(tmp_path / "case.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["signed_off_by"] == "A. Tech" and r["signed_off_at"] for r in rows)
    from hv_desktop.gui.report import ReportInfo

    assert w.export_report(tmp_path / "case.pdf", ReportInfo())
    import unicodedata

    text = unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "case.pdf")).pages))
    text = " ".join(text.split())  # pypdf gives the font's ligatures and its own spacing
    assert "FINAL: signed off by A. Tech" in text and "consultant informed" in text
    w.autosave(wait=True)
    w2 = MainWindow(model_path=model, settings=settings, autosave_path=autosave)  # a restart keeps it
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 2, timeout=10000)
    assert w2.review.signed is not None and w2.review.signed.operator == "A. Tech"
    assert w2.unlock_case("a cell was misread")
    assert w2.review.signed is None and w2.review.audit[-1]["event"] == "unlocked"
    assert w2.review.audit[-1]["reason"] == "a cell was misread"
    w2.results_pane.table.setFocus()
    w2.results_pane.table.selectRow(0)
    qtbot.keyClick(w2.results_pane.table, "3")
    assert any(r.reviewer_label == "monocyte" for r in w2.results.results)  # editable again


def test_ctrl_z_takes_back_the_last_review(qtbot, window, tmp_path):
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "u", 4)]))
    window.results_pane.table.setFocus()
    window.results_pane.table.selectRow(0)
    qtbot.keyClick(window.results_pane.table, "3")
    assert window.results.results[0].reviewer_label == "monocyte"
    window.commands.undo.trigger()
    assert window.results.results[0].reviewer_label is None
    assert window.results_pane.table.currentIndex().row() == 0  # back on the cell that changed


def test_consultation_round_trip_between_two_windows(qtbot, tmp_path, tiny_model_path, monkeypatch):
    """Issue 18: the lab exports a case, a consultant opens it in another HematoVision (the sender's reviews in
    their own column), reviews and sends it back; the lab's window lists the disagreements."""
    from hv_desktop.gui.report import ReportInfo

    infos = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: infos.append(a[2]))
    lab = MainWindow(
        model_path=tiny_model_path,
        settings=QSettings(str(tmp_path / "lab.ini"), QSettings.IniFormat),
        autosave_path=tmp_path / "lab" / "autosave.json",
    )
    qtbot.addWidget(lab)
    lab.new_case("S-9", ask=False)
    _run(qtbot, lab, lambda: lab.classify([_images(tmp_path / "smear", 4)]))
    lab.review.assign(2, "basophil")  # the lab's reading of cell 2
    assert not lab.export_consultation(tmp_path / "case.zip", ReportInfo("OTHER-1", "", "Lab"))  # its own case only
    assert lab.export_consultation(tmp_path / "case.zip", ReportInfo("", "second opinion please", "Lab"))

    cons = MainWindow(
        model_path=tiny_model_path,
        settings=QSettings(str(tmp_path / "c.ini"), QSettings.IniFormat),
        autosave_path=tmp_path / "consultant" / "autosave.json",
    )
    qtbot.addWidget(cons)
    assert cons.open_package(tmp_path / "case.zip")
    assert cons.results.rowCount() == 4 and not cons.results_pane.table.isColumnHidden(COL_SENDER)
    row = next(i for i, r in enumerate(cons.results.results) if r.path.name == "cell_0002.png")
    sender = cons.results.data(cons.results.index(row, COL_SENDER))
    assert sender == "Basophil" and cons.results.results[row].reviewer_label is None  # beside, not applied
    assert all(r.path.is_relative_to(tmp_path / "consultant") for r in cons.results.results)
    cons.review.assign(row, "monocyte")  # the consultant disagrees
    assert cons.export_consultation(tmp_path / "reply.zip", ReportInfo("S-9", "", "Consultant"))

    assert lab.open_package(tmp_path / "reply.zip")
    assert lab.exports.last_disagreements == [("cell_0002.png", "basophil", "monocyte")]
    table = lab.exports.merge_dialog.table  # listed beside each other, cell by cell (issue 30)
    assert [table.item(0, c).text() for c in range(3)] == ["cell_0002.png", "Basophil", "Monocyte"] and not infos


def test_hostile_package_dropped_on_the_window_is_refused(qtbot, window, tmp_path, monkeypatch):
    import zipfile

    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("case.json", "{}")
        z.writestr("../../escape.txt", "x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bad))])
    window.dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    assert warnings and "refused" in warnings[-1]
    assert window.results.rowCount() == 0 and not (tmp_path.parent / "escape.txt").exists()


def test_two_cases_in_one_session_each_with_its_own_csv_and_report(qtbot, window, tmp_path, monkeypatch):
    """Issue 18: opening a second folder asks new case or the same; each case has its own differential, CSV,
    report and sign-off; the autosave keeps both."""
    import unicodedata

    from pypdf import PdfReader

    from hv_desktop.gui.report import ReportInfo

    _run(qtbot, window, lambda: window.open_paths([_images(tmp_path / "S-1", 4)]))
    assert window.review.current == "S-1" and window.results_pane.case_combo.currentText() == "S-1"
    window.ask_case = lambda name: "new"
    original = MainWindow.new_case  # the dialog that asks the new case's ID, answered "S-2"
    monkeypatch.setattr(MainWindow, "new_case", lambda self, name="", ask=True: original(self, "S-2", ask=False))
    _run(qtbot, window, lambda: window.open_paths([_images(tmp_path / "second", 3, start=10)]))
    assert list(window.review.cases) == ["S-1", "S-2"] and window.review.current == "S-2"
    assert window.results_pane.proxy.rowCount() == 3 and window.results.rowCount() == 7  # the table shows the current case
    diff_table = window.differential_pane.diff_table
    assert diff_table.item(diff_table.rowCount() - 3, 0).text() == "3"  # classified in S-2
    assert window.export_csv(tmp_path / "s2.csv")
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    assert window.sign_off_case("A. Tech", "grey cells checked on the slide")
    window.results_pane.case_combo.setCurrentIndex(0)  # back to S-1
    assert window.review.current == "S-1" and window.results_pane.proxy.rowCount() == 4 and window.review.signed is None
    assert window.export_csv(tmp_path / "s1.csv")
    assert window.export_report(tmp_path / "s1.pdf", ReportInfo())
    with open(tmp_path / "s1.csv", encoding="utf-8-sig", newline="") as fh:
        s1 = list(csv.DictReader(fh))
    with open(tmp_path / "s2.csv", encoding="utf-8-sig", newline="") as fh:
        s2 = list(csv.DictReader(fh))
    assert len(s1) == 4 and {r["case"] for r in s1} == {"S-1"} and len(s2) == 3 and {r["case"] for r in s2} == {"S-2"}
    text = unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "s1.pdf")).pages))
    text = " ".join(text.split())
    assert "Case S-1" in text and "Cells classified: 4" in text
    window.autosave(wait=True)
    w2 = MainWindow(model_path=window.model.path, settings=window.settings, autosave_path=window.autosave_path)
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 7, timeout=10000)
    assert list(w2.review.cases) == ["S-1", "S-2"] and "S-2" in w2.review.signoffs and "S-1" not in w2.review.signoffs


def test_cell_types_are_editable_in_preferences(qtbot, window, tmp_path, monkeypatch):
    """Issue 18: the list of further cell types and their keys is the lab's to edit; a bad list is refused."""
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    assert not window.edit_cell_types("hairy cell, E")  # E is the eosinophil's key
    assert "already used" in warned[-1]
    assert window.edit_cell_types("hairy cell, H\nnucleated red cell, R, per 100")
    _run(qtbot, window, lambda: window.classify([_images(tmp_path / "p", 2)]))
    window.results_pane.table.setFocus()
    assert _key_review(qtbot, window, 0, "h") == "hairy cell"
    assert _key_review(qtbot, window, 1, "t") is None  # platelet clump is no longer in the list
    other = window.review_panel.other_button
    assert [a.text().split(" (")[0] for a in other.menu().actions()] == ["Hairy cell", "Nucleated red cell"]
