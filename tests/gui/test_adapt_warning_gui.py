"""The adapt dialog says plainly when a site model flags fewer unusual cells than its base (issue 27 item 1)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hv_desktop.core.inference.model import Model, bundled_model_path  # noqa: E402
from hv_desktop.gui.adapt_dialog import AdaptDialog  # noqa: E402
from tests.unit.test_adapt_warnings import _adaptation  # noqa: E402


def test_save_is_save_anyway_with_the_warning_first(qtbot, tmp_path):
    dlg = AdaptDialog(Model(bundled_model_path()), [], tmp_path)
    qtbot.addWidget(dlg)
    dlg._on_done(_adaptation(0.385, 0.154, {"blast": 13}), "")
    assert dlg.save_button.text() == "Save and Use Anyway" and dlg.save_button.isEnabled()
    assert dlg.report.toPlainText().startswith("WARNING: this site model flags fewer unusual cells")
    dlg._on_done(_adaptation(0.385, 0.5, {"blast": 13}), "")
    assert dlg.save_button.text() == "Save and Use"
