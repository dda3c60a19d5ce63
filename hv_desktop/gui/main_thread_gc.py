"""Python's cyclic garbage collection, moved to the GUI thread.

Why: the collector runs on whichever thread happens to allocate when a threshold is crossed. A Qt object caught in
a reference cycle (a closed dialog, a finished worker's signals) is then destroyed on a decode thread, which Qt does
not allow: CI crashed once with a segmentation fault "Garbage-collecting" in a decode thread while the window ran a
classification. Automatic collection is switched off and done here instead, by generation and by Python's own
thresholds, on a timer of the GUI thread. Installed once, for the application's lifetime.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

_installed: MainThreadGC | None = None


class MainThreadGC(QObject):
    INTERVAL_MS = 300

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(self.INTERVAL_MS)

    def collect(self) -> None:
        """What the automatic collector would have done by now, on this (the GUI) thread."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.threshold[generation]:
                gc.collect(generation)
                return


def install() -> None:
    """Move collection to the GUI thread for as long as the application runs (once; needs a QApplication)."""
    global _installed
    app = QApplication.instance()
    if _installed is None and app is not None:
        _installed = MainThreadGC(app)
        app.aboutToQuit.connect(gc.enable)
