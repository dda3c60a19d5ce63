"""Review > Adapt to This Lab without reviewed cells (offscreen)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402

from hv_desktop.core.model import bundled_model_path  # noqa: E402
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
