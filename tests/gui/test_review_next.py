"""Issue 27: Show ▸ Review next lists the unreviewed cells whose review teaches most first, then file order again."""

from __future__ import annotations

import os

from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402

from hv_desktop.core.cases.review_order import review_next  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.results_model import RESULT_ROLE  # noqa: E402


def test_review_next_orders_the_table_and_a_review_moves_on(qtbot, tmp_path, tiny_model_path):
    w = MainWindow(
        model_path=tiny_model_path,
        settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat),
        autosave_path=tmp_path / "autosave.json",
    )
    qtbot.addWidget(w)
    folder = tmp_path / "smear"
    folder.mkdir()
    colours = [(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128), (200, 60, 200), (60, 200, 200)]
    for i in range(12):
        Image.new("RGB", (24, 24), colours[i % 6]).save(folder / f"cell_{i:02d}.png")
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        w.classify([folder])

    def shown():
        return [w.results_pane.proxy.index(i, 0).data(RESULT_ROLE) for i in range(w.results_pane.proxy.rowCount())]

    w.results_pane.state_combo.setCurrentText("Review next")
    expected = [w.results.results[i] for i in review_next(w.results.results)]
    assert shown() == expected and shown() != list(w.results.results)
    first = shown()[0]
    w.results_pane.table.setFocus()
    qtbot.keyClick(w.results_pane.table, "1")  # reviewed: it leaves the list
    assert first.reviewer_label == "eosinophil" and first not in shown()
    w.results_pane.state_combo.setCurrentText("All")
    assert shown() == list(w.results.results)  # file order again
