"""Classification off the GUI thread: a QThread around the core's batch runner.

Results are handed to the GUI in small bundles (every ~80 ms) rather than one
signal per image, so the event loop never drowns in queued signals on a fast
run and the window stays responsive.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from hv_desktop.core.imaging.scan import scan
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import result_json

THUMBNAIL_SIDE = 96


class ClassifyWorker(QObject):
    total = Signal(int)
    results = Signal(list)  # list[Result]
    finished = Signal(bool, str)  # (cancelled, error message or "")

    def __init__(self, model: Model, paths: list[Path]) -> None:
        super().__init__()
        self.model, self.paths = model, paths
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:
        error = ""
        try:
            items = list(scan(self.paths))  # a cheap walk; the list gives the total for N / total
            self.total.emit(len(items))
            bundle, last = [], time.monotonic()
            for r in classify_stream(items, self.model, cancel=self.cancel_event, thumbnail=THUMBNAIL_SIDE):
                result_json(r)  # encoded here, once, so the window's autosave only joins strings
                bundle.append(r)
                now = time.monotonic()
                if now - last > 0.08:
                    self.results.emit(bundle)
                    bundle, last = [], now
            if bundle:
                self.results.emit(bundle)
        except Exception as exc:  # reported to the user; the app keeps running
            error = f"{exc.__class__.__name__}: {exc}"
        self.finished.emit(self.cancel_event.is_set(), error)


class ClassifyJob(QObject):
    """Owns the thread and the worker for one run; emits the worker's signals."""

    def __init__(self, model: Model, paths: list[Path], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self.worker = ClassifyWorker(model, paths)
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.run)
        self.worker.finished.connect(self._thread.quit)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.worker.cancel()

    def wait(self, ms: int = 10000) -> bool:
        return self._thread.wait(ms)
