"""Review > Adapt to This Lab: fit a site model from the session's reviewed cells, off the GUI thread.

The dialog only shows state and passes on actions: the fit is :func:`hv_desktop.core.site.adapt.adapt`, run in a
QThread with progress and Cancel; "Save and Use" writes the file into the app's data folder (never over the
shipped model) and hands its path to the window, which loads it and re-classifies the session.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.adapt import MIN_PER_CLASS, Adaptation, adapt, classes_needed, coverage_problem
from hv_desktop.core.site.calibrate import Calibration, calibrate
from hv_desktop.core.site.lab_images import LabelledCell
from hv_desktop.core.site.ruler import MIN_IMAGES
from hv_desktop.core.site.site_model import AdaptError

#: A site-model fit: (progress callback, cancel check) -> Adaptation or Calibration; raises AdaptError.
Fit = Callable[[Callable[[str, float], None], Callable[[], bool]], "Adaptation | Calibration"]


class _AdaptWorker(QObject):
    progress = Signal(str, float)
    done = Signal(object, str)  # (Adaptation, Calibration or None; error message)

    def __init__(self, fit: Fit) -> None:
        super().__init__()
        self.fit = fit
        self.cancel_event = threading.Event()

    def run(self) -> None:
        try:
            result = self.fit(self.progress.emit, self.cancel_event.is_set)
            self.done.emit(result, "")
        except AdaptError as exc:
            self.done.emit(None, str(exc))
        except Exception as exc:  # shown in the dialog; the app keeps running
            self.done.emit(None, f"{exc.__class__.__name__}: {exc}")


def site_file_name(site: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", site).strip("-")[:40] or "site"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}.onnx"


def count_cells(labels: Sequence[str], cells: list[LabelledCell]) -> tuple[dict[str, int], int]:
    """Reviewed cells per model class (names matched case-insensitively), and how many are other cell types."""
    counts = {lab: 0 for lab in labels}
    other = 0
    for c in cells:
        key = next((lab for lab in labels if lab.lower() == c.label.lower()), None)
        if key:
            counts[key] += 1
        else:
            other += 1
    return counts, other


class AdaptDialog(QDialog):
    """Cells per class, a site name, Adapt (with progress and Cancel), the before/after estimate, Save and Use."""

    modelSaved = Signal(Path)
    TITLE = "Adapt to This Lab"
    START = "Adapt"
    PLACEHOLDER = "The estimate before and after adapting appears here."
    INTRO = (
        "HematoVision learns your lab's microscope, stain and magnification from the cells you reviewed. "
        "About 10 per class are enough to correct the classes; leaving cells unflagged takes more: at a new lab about "
        "100 per class, and only where the model's answers there are nearly always right. "
        f"Every class but one needs at least {MIN_PER_CLASS}, and a class with "
        "fewer keeps the shipped model's answer. The shipped model is not changed: Review ▸ Use Shipped Model "
        "switches back."
    )

    def __init__(self, model: Model, cells: list[LabelledCell], folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.TITLE)
        self.model, self.cells, self.folder = model, cells, folder
        self.adaptation: Adaptation | Calibration | None = None
        self._thread: QThread | None = None
        self._worker: _AdaptWorker | None = None
        lay = QVBoxLayout(self)
        intro = QLabel(self.INTRO)
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        inputs_title, inputs_text, self._waiting = self._inputs()
        self.counts_label = QLabel(inputs_text)
        self.counts_label.setObjectName("adapt-counts")
        form.addRow(inputs_title, self.counts_label)
        self.site_edit = QLineEdit()
        self.site_edit.setPlaceholderText("e.g. Haematology lab, Building B")
        form.addRow("Site name:", self.site_edit)
        lay.addLayout(form)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
        lay.addWidget(self.progress)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setPlaceholderText(self.PLACEHOLDER)
        self.report.setMinimumHeight(140)
        lay.addWidget(self.report)
        self.buttons = QDialogButtonBox()
        self.adapt_button = QPushButton(self.START)
        self.save_button = QPushButton("Save and Use")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.adapt_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.save_button.setEnabled(False)
        self.adapt_button.setEnabled(not self._waiting)
        if self._waiting:
            self.report.setPlainText(self._waiting)
        self.adapt_button.clicked.connect(self.start)
        self.save_button.clicked.connect(self.save)
        self.close_button.clicked.connect(self.reject)
        lay.addWidget(self.buttons)
        self.resize(560, 380)

    def _inputs(self) -> tuple[str, str, str]:
        """(row title, what the fit will use, why it cannot start yet or "")."""
        self.counts, other = count_cells(self.model.labels, self.cells)
        text = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        text += f"; other cell types {other} (used to check flags)" if other else ""
        labels = self.model.labels
        waiting = (
            f"Review at least {MIN_PER_CLASS} cells of each of {classes_needed(labels)} of the {len(labels)} classes "
            "first (keys 1–4 in the main window), so the site model learns to tell them apart."
        )
        return "Reviewed cells:", text, waiting if coverage_problem(self.counts, labels) else ""

    def _fit(self, site: str) -> Fit:
        cells, model = self.cells, self.model
        return lambda progress, cancel: adapt(model, cells, site, progress=progress, cancel=cancel)

    def site_name(self) -> str:
        return self.site_edit.text().strip() or "this lab"

    def start(self) -> None:
        if self._thread is not None:
            return
        self.adaptation = None
        self.save_button.setEnabled(False)
        self.adapt_button.setEnabled(False)
        self.close_button.setText("Cancel")
        self.progress.setValue(0)
        self.progress.show()
        self.report.setPlainText(f"{self.TITLE}…")
        self._thread = QThread()
        self._worker = _AdaptWorker(self._fit(self.site_name()))
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.done.connect(self._on_done)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None

    def _on_progress(self, msg: str, frac: float) -> None:
        self.progress.setValue(int(100 * frac))
        self.report.setPlainText(f"{self.TITLE}… {msg}")

    def _on_done(self, result: Adaptation | Calibration | None, error: str) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
        self._thread, self._worker = None, None
        self.progress.hide()
        self.close_button.setText("Close")
        self.adapt_button.setEnabled(True)
        if result is None:
            self.report.setPlainText(f"No site model made: {error}")
            return
        self.adaptation = result
        self.report.setPlainText("\n".join(result.summary_lines()))
        warned = bool(result.warnings())
        self.save_button.setText("Save and Use Anyway" if warned else "Save and Use")
        self.save_button.setToolTip("Read the warning at the top of the report first" if warned else "")
        self.save_button.setEnabled(True)

    def reject(self) -> None:
        if self._worker is not None:
            self._worker.cancel_event.set()
            self.report.setPlainText("Cancelling…")
            return
        super().reject()

    def save(self, path: Path | None = None) -> Path | None:
        if self.adaptation is None:
            return None
        target = path or self.folder / "site-models" / site_file_name(self.site_name())
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.adaptation.save(target, self.model)
        except (OSError, AdaptError) as exc:
            QMessageBox.critical(self, "Not saved", f"The site model could not be saved: {exc}")
            return None
        self.modelSaved.emit(target)
        self.accept()
        return target


class MagnificationDialog(AdaptDialog):
    """Review > Match Lab Magnification: the same dialog over :func:`hv_desktop.core.site.calibrate.calibrate`, which
    needs the case's images only (no reviews)."""

    TITLE = "Match Lab Magnification"
    START = "Measure"
    PLACEHOLDER = "How large this lab's cells appear, against the training labs', appears here."
    INTRO = (
        "HematoVision measures how large cells appear in this lab's images (from their stained nuclei; no reviews "
        "needed) and their colours, and makes a site model that shows them at the size it was trained on, and in its "
        "training labs' colours unless that would flag more of these images. The report says how many the model "
        "flags with and without it. The classes and the review flags are the shipped model's: to fit those too, use "
        "Adapt to This Lab with reviewed cells. The shipped model is not changed: Review ▸ Use Shipped Model switches "
        "back."
    )

    def __init__(self, model: Model, images: list[Path], folder: Path, parent: QWidget | None = None) -> None:
        self.images = images
        super().__init__(model, [], folder, parent)

    def _inputs(self) -> tuple[str, str, str]:
        n = len(self.images)
        waiting = "" if n >= MIN_IMAGES else f"Open at least {MIN_IMAGES} of this lab's images first."
        return "Images:", f"{n} in this case", waiting

    def _fit(self, site: str) -> Fit:
        images, model = self.images, self.model
        return lambda progress, cancel: calibrate(model, images, site, progress=progress, cancel=cancel)
