"""The differential pane: counts by model or by review, the review progress and the sign-off line."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.differential_view import DifferentialView
from hv_desktop.core.review import SignOff

ROW_HEIGHT = 24


class DifferentialPane(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.diff_mode = QComboBox()
        self.diff_mode.addItems(["By model", "By review"])
        self.diff_mode.setAccessibleName("Differential counts")
        self.diff_table = QTableWidget(0, 2)
        self.diff_table.setHorizontalHeaderLabels(["Count", "%"])
        self.diff_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.diff_table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.diff_table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.diff_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.review_progress = QLabel("")
        self.sign_label = QLabel("")
        self.sign_label.setStyleSheet("color: #006400; font-weight: bold;")
        self.sign_label.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Differential</b>"))
        head.addStretch(1)
        head.addWidget(self.diff_mode)
        lay.addLayout(head)
        lay.addWidget(self.diff_table, 1)
        lay.addWidget(self.review_progress)
        lay.addWidget(self.sign_label)

    @property
    def by_review(self) -> bool:
        return self.diff_mode.currentIndex() == 1

    def show_view(self, view: DifferentialView) -> None:
        table = self.diff_table
        table.setRowCount(len(view.rows))
        table.setVerticalHeaderLabels([r[0] for r in view.rows])
        for i, (_, n, pct) in enumerate(view.rows):
            for j, text in enumerate((n, pct)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(i, j, item)
        header = table.horizontalHeader().height()
        full = header + ROW_HEIGHT * len(view.rows) + 4
        # Every row shows by default; dragging the preview's splitter down lets the table scroll instead.
        table.setMaximumHeight(full)
        table.setMinimumHeight(min(full, header + ROW_HEIGHT * 3 + 4))
        self.review_progress.setText(view.progress)

    def show_signed(self, s: SignOff | None) -> None:
        self.sign_label.setText(f"✔ Signed off by {s.operator}, {s.at.replace('T', ' ')}" if s else "")
        self.sign_label.setVisible(s is not None)
