"""The one way a headless face (the CLI) reaches Qt: render a report to PDF without a window.

Qt needs an application object for fonts; without a display it runs on the offscreen platform.
"""

from __future__ import annotations

import os

from hv_desktop.core.io.report import Report


def render_report_pdf(report: Report, path: str | os.PathLike) -> int:
    """Write ``report`` (:mod:`hv_desktop.core.io.report`) as a PDF at ``path``; returns the page count."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from hv_desktop.gui.report import render_pdf

    app = QGuiApplication.instance() or QGuiApplication(["hematovision"])  # noqa: F841 - fonts need it
    return render_pdf(report, path)
