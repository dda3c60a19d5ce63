"""Review > Adapt to This Lab and Review > Use Shipped Model, driven as a person would (offscreen)."""

from __future__ import annotations

import os

import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from hv_desktop.core.inference.model import bundled_model_path  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402

CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


@pytest.mark.realdata
@pytest.mark.slow
def test_adapt_dialog_loads_site_model_reclassifies_and_switches_back(qtbot, tmp_path, shared_data):
    folder = tmp_path / "smear"
    folder.mkdir()
    truth = {}
    for c in CLASSES:
        for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:6]:
            out = folder / f"{c}_{f.stem}.png"
            im = Image.open(f).convert("RGB")
            w, h = im.size  # another lab: 1.4x magnification
            im.crop((w // 7, h // 7, w - w // 7, h - h // 7)).resize((w, h)).save(out)
            truth[out.name] = c
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=bundled_model_path(), settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.classify([folder])
    assert w.results.rowCount() == 24
    assert not w.commands.shipped.isEnabled()  # already the shipped model
    for i, r in enumerate(w.results.results):
        w.results.set_reviewer_label(i, truth[r.path.name])

    dlg = w.adapt_to_lab()
    qtbot.addWidget(dlg)
    assert "eosinophil 6" in dlg.counts_label.text()
    dlg.site_edit.setText("Lab B")
    qtbot.mouseClick(dlg.adapt_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dlg.save_button.isEnabled(), timeout=60000)
    assert "after (cross-validated)" in dlg.report.toPlainText()
    with qtbot.waitSignal(w.runFinished, timeout=60000):
        qtbot.mouseClick(dlg.save_button, Qt.LeftButton)
    assert "adapted to Lab B" in w.model.info.name
    assert "Lab B" in w.runner.model_label.text()
    assert w.model.path.parent == tmp_path / "site-models"
    assert w.results.rowCount() == 24  # re-classified in place, not appended
    assert all(r.reviewer_label == truth[r.path.name] for r in w.results.results)  # reviews kept
    assert all(r.label for r in w.results.results)
    assert w.commands.shipped.isEnabled()

    with qtbot.waitSignal(w.runFinished, timeout=60000):
        w.commands.shipped.trigger()
    assert w.model.path.resolve() == bundled_model_path().resolve()
    assert "adapted" not in w.runner.model_label.text()
    assert w.results.rowCount() == 24
