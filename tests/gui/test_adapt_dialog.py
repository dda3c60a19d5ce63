"""Review > Adapt to This Lab without reviewed cells (offscreen)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QDialog  # noqa: E402

from hv_desktop.core.inference.model import bundled_model_path  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402


def test_adapt_needs_reviewed_cells(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=bundled_model_path(), settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w)
    dlg = w.adapt_to_lab()
    qtbot.addWidget(dlg)
    assert not dlg.adapt_button.isEnabled()
    assert "Review at least 5" in dlg.report.toPlainText()
    dlg.reject()


def test_match_magnification_measures_the_case_and_loads_the_site_model(qtbot, tmp_path):
    from hv_desktop.core.site.ruler import MIN_IMAGES
    from tests.support.images import disc_image

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=bundled_model_path(), settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w)
    few, lab = tmp_path / "few", tmp_path / "lab"
    for folder, n in ((few, MIN_IMAGES - 1), (lab, MIN_IMAGES + 4)):
        folder.mkdir()
        for i in range(n):
            disc_image(20 + i % 3, size=(320, 240), centre=(150 + i, 120)).save(folder / f"{folder.name}{i:02}.png")
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.classify([few])
    dlg = w.match_magnification()
    qtbot.addWidget(dlg)
    assert not dlg.adapt_button.isEnabled() and f"at least {MIN_IMAGES}" in dlg.report.toPlainText()
    dlg.reject()
    assert not w.runner.offer_button.isVisibleTo(w)  # 19 cells: too few to say the lab is another
    w.ask_case = lambda name: "add"
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.classify([lab])
    # issue 26 item 2: nearly every one of 43 drawn cells is flagged, so the run offers to match the lab
    from hv_desktop.gui.adapt_dialog import MagnificationDialog

    offer = w.runner.offer_button
    assert offer.window() is w and offer.isVisibleTo(w)  # on the window's status bar
    before = len(w.findChildren(MagnificationDialog))
    offer.click()
    assert not offer.isVisibleTo(w) and len(w.findChildren(MagnificationDialog)) == before + 1
    for d in w.findChildren(QDialog):
        d.reject()
    dlg = w.match_magnification()
    qtbot.addWidget(dlg)
    assert dlg.adapt_button.isEnabled() and f"{2 * MIN_IMAGES + 3} in this case" in dlg.counts_label.text()
    dlg.start()
    qtbot.waitUntil(lambda: not dlg.is_running(), timeout=60000)
    assert "as large as in the model's training labs" in dlg.report.toPlainText()
    site = dlg.save(tmp_path / "site.onnx")
    assert site is not None and site.exists()
    qtbot.waitUntil(lambda: w.model is not None and w.model.path == site and not w.is_running(), timeout=60000)
    assert w.model.info.site_adaptation["kind"] == "magnification from unlabelled images"
    assert not w.runner.offer_button.isVisibleTo(w)  # a site model in use: no offer after its re-classification


def test_a_site_model_chosen_during_a_run_reclassifies_once_the_run_ends(qtbot, tmp_path):
    from tests.support.images import disc_image

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=bundled_model_path(), settings=settings, autosave_path=tmp_path / "a.json")
    qtbot.addWidget(w)
    lab = tmp_path / "lab"
    lab.mkdir()
    for i in range(40):
        disc_image(20, size=(320, 240), centre=(150 + i, 120)).save(lab / f"c{i:02}.png")
    calls = []
    real = w.runner.reclassify
    w.runner.reclassify = lambda: (calls.append(w.is_running()), real())[1]
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.classify([lab])
        assert w.is_running()
        w.runner.use_site_model(bundled_model_path())  # as Save and Use does while the watch folder's run goes on
        assert calls == []  # not while the old model's run is going: it would be dropped
    qtbot.waitUntil(lambda: calls == [False] and not w.is_running(), timeout=60000)
