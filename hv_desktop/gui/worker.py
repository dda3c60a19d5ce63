"""Classification off the GUI thread: a QThread around the core's batch runner (one cell per file) or its field
runner (every white cell of a camera field, issue 28).

Results are handed to the GUI in small bundles (every ~80 ms) rather than one
signal per image, so the event loop never drowns in queued signals on a fast
run and the window stays responsive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from hv_desktop.core.imaging.scan import ScanItem, scan
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.fields import classify_fields
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result, result_json

THUMBNAIL_SIDE = 96


@dataclass(frozen=True)
class Kinds:
    """Which files are classified as camera fields (every white cell), which as one cell: a re-classification of
    a session that holds rows of both kinds runs each file the way its rows were made."""

    fields: frozenset[Path]
    crops: frozenset[Path]


class ClassifyWorker(QObject):
    total = Signal(int)
    results = Signal(list)  # list[Result]
    finished = Signal(bool, str)  # (cancelled, error message or "")

    def __init__(self, model: Model, paths: list[Path], fields: bool | Kinds = False) -> None:
        super().__init__()
        self.model, self.paths, self.fields = model, paths, fields
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:
        error = ""
        try:
            items = list(scan(self.paths))  # a cheap walk; the list gives the total for N / total
            self.total.emit(len(items))
            bundle, last = [], time.monotonic()
            for r in self._stream(items):
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

    def _stream(self, items: list[ScanItem]) -> Iterator[Result]:
        """The run's rows: one per file, one per white cell of each field, or (``Kinds``) each file its own way;
        a scan problem is one error row either way."""
        model, cancel, side, kinds = self.model, self.cancel_event, THUMBNAIL_SIDE, self.fields
        if not isinstance(kinds, Kinds):
            if kinds:
                return classify_fields(items, model, cancel=cancel, thumbnail=side)
            return classify_stream(items, model, cancel=cancel, thumbnail=side)
        crops = [i for i in items if i.path in kinds.crops or i.path not in kinds.fields]
        fields = [i for i in items if i.path in kinds.fields]
        return chain(
            classify_stream(crops, model, cancel=cancel, thumbnail=side),
            classify_fields(fields, model, cancel=cancel, thumbnail=side),
        )


class ClassifyJob(QObject):
    """Owns the thread and the worker for one run; emits the worker's signals."""

    def __init__(self, model: Model, paths: list[Path], parent: QObject | None = None, fields: bool | Kinds = False) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self.worker = ClassifyWorker(model, paths, fields)
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.run)
        self.worker.finished.connect(self._thread.quit)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.worker.cancel()

    def wait(self, ms: int = 10000) -> bool:
        return self._thread.wait(ms)
