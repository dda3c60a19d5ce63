"""The cell's class probabilities and the review buttons (one per model class, the further cell types under
Other…); the keys come from the one key table, hv_desktop.core.cases.review.review_classes."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.cases.review import ReviewClass, review_classes
from hv_desktop.core.inference.result import Result

PROB_COLUMNS = 2


class ReviewPanel(QWidget):
    assign = Signal(str)  # a review class's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prob_grid = QGridLayout()
        self.prob_bars: dict[str, QProgressBar] = {}
        self.review_row = QHBoxLayout()
        self.review_buttons: dict[str, QPushButton] = {}
        self.other_button: QToolButton | None = None
        self._keys: dict[str, str] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("<b>Class probabilities</b>"))
        lay.addLayout(self.prob_grid)
        lay.addWidget(QLabel("<b>Review</b> (keys 1–4 or E/L/M/N, other cell types: Other…, Enter = confirm)"))
        lay.addLayout(self.review_row)

    def set_classes(self, labels: Sequence[str], extras: Sequence[ReviewClass]) -> None:
        """Rebuild the bars and buttons for the model's labels and the lab's further cell types."""
        self._clear()
        self._keys = {c.name: c.key for c in review_classes(labels, [])}
        for i, lab in enumerate(labels):
            # two classes a line: the height saved lets the whole differential show below (issue 30)
            row, col = divmod(i, PROB_COLUMNS)
            self.prob_grid.addWidget(QLabel(lab.capitalize()), row, 2 * col)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("%p %")
            bar.setTextVisible(True)
            self.prob_grid.addWidget(bar, row, 2 * col + 1)
            self.prob_bars[lab] = bar
            key = self._keys[lab]
            b = QPushButton(f"{lab.capitalize()} ({key})")
            b.setToolTip(f"Review this cell as {lab} (key {key})")
            b.clicked.connect(lambda _=False, lab=lab: self.assign.emit(lab))
            self.review_row.addWidget(b)
            self.review_buttons[lab] = b
        extra = [c for c in review_classes(labels, extras) if c.name not in labels]
        if extra:
            self._add_other(extra)

    def _clear(self) -> None:
        for w in list(self.prob_bars.values()) + list(self.review_buttons.values()):
            w.deleteLater()
        if self.other_button is not None:
            self.other_button.deleteLater()
            self.other_button = None
        while self.prob_grid.count():
            item = self.prob_grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.prob_bars.clear()
        self.review_buttons.clear()

    def _add_other(self, extra: list[ReviewClass]) -> None:
        other = QToolButton()
        other.setText("Other…")
        other.setToolTip("Review this cell as another cell type (basophil, blast, nucleated red cell, …); each has a key")
        other.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(other)
        for c in extra:
            a = menu.addAction(f"{c.name.capitalize()} ({c.key})" + ("  · per 100 white cells" if c.per_100 else ""))
            a.triggered.connect(lambda _=False, name=c.name: self.assign.emit(name))
        other.setMenu(menu)
        self.review_row.addWidget(other)
        self.other_button = other

    def show_result(self, r: Result) -> None:
        for lab, bar in self.prob_bars.items():
            bar.setValue(int(round(r.probabilities.get(lab, 0.0) * 1000)))
            bar.update()  # Qt skips the repaint of a change under 1 %: a first "0 %" would never be drawn
        for lab, b in self.review_buttons.items():
            b.setEnabled(r.ok)
            b.setStyleSheet("font-weight: bold;" if r.reviewer_label == lab else "")
            b.setText(f"{'✓ ' if r.reviewer_label == lab else ''}{lab.capitalize()} ({self._keys[lab]})")
        if self.other_button is not None:
            other = r.reviewer_label if r.reviewer_label and r.reviewer_label not in self.review_buttons else None
            self.other_button.setEnabled(r.ok)
            self.other_button.setStyleSheet("font-weight: bold;" if other else "")
            self.other_button.setText(f"✓ {other.capitalize()}" if other else "Other…")
