"""The differential pane: counts by model or by review, the review progress and the sign-off line."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.cases.differential_view import UNREVIEWED_NOTE, DifferentialView
from hv_desktop.core.cases.review import SignOff

ROW_HEIGHT = 22  # a line of text and its padding: the whole differential fits under the picture at 1366 x 768


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
        self.source = QLabel("")  # camera fields: how many cells from how many fields, edge cells left out
        self.source.setWordWrap(True)
        self.source.hide()
        self.sign_label = QLabel("")
        self.sign_label.setStyleSheet("color: #006400; font-weight: bold;")
        self.sign_label.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Differential</b>"))
        self.note = QLabel("")  # beside the heading: says how unreviewed cells are counted, at no cost in height
        self.note.setStyleSheet("color: #555;")
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        head.addWidget(self.note, 1)
        head.addWidget(self.diff_mode)
        lay.addLayout(head)
        lay.addWidget(self.diff_table, 1)
        lay.addWidget(self.source)
        lay.addWidget(self.review_progress)
        lay.addWidget(self.sign_label)

    @property
    def by_review(self) -> bool:
        return self.diff_mode.currentIndex() == 1

    def show_view(self, view: DifferentialView) -> None:
        table = self.diff_table
        if table.columnCount() != len(view.columns):
            table.setColumnCount(len(view.columns))
            table.setHorizontalHeaderLabels(list(view.columns))
            unreviewed = table.horizontalHeaderItem(2)
            if unreviewed is not None:
                unreviewed.setToolTip(UNREVIEWED_NOTE)
            table.setToolTip(UNREVIEWED_NOTE if len(view.columns) > 2 else "")
        table.setRowCount(len(view.rows))
        table.setVerticalHeaderLabels([r[0] for r in view.rows])
        for i, row in enumerate(view.rows):
            for j, text in enumerate(row[1:]):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(i, j, item)
        # Every class, the total and the per-100 types always show (the table never shrinks below them); the
        # flagged and failed rows show too unless the preview's splitter is dragged down over them.
        table.setMaximumHeight(self.table_height(len(view.rows)))
        table.setMinimumHeight(self.table_height(view.essential or len(view.rows)))
        self.review_progress.setText(view.progress)
        self.source.setText(view.source)
        self.source.setVisible(bool(view.source))
        self.note.setText(view.note)
        self.note.setToolTip(UNREVIEWED_NOTE if view.note else "")

    def table_height(self, rows: int) -> int:
        """The table's height showing ``rows`` rows whole, without a scroll bar."""
        table = self.diff_table
        header = max(table.horizontalHeader().sizeHint().height(), table.horizontalHeader().height())
        return header + ROW_HEIGHT * rows + 2 * table.frameWidth()

    def show_signed(self, s: SignOff | None) -> None:
        self.sign_label.setText(f"✔ Signed off by {s.operator}, {s.at.replace('T', ' ')}" if s else "")
        self.sign_label.setVisible(s is not None)
