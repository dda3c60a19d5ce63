"""Qt item models over the list of core ``Result`` objects."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPixmap

from hv_desktop.core.cases.review import awaiting_review, unreviewed
from hv_desktop.core.cases.review_order import review_next
from hv_desktop.core.inference.fields import cell_name
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.reply import sender_label

COLUMNS = ("File", "Model class", "Confidence", "Reviewed as", "Status", "Sender's review")
COL_FILE, COL_CLASS, COL_CONF, COL_REVIEW, COL_STATUS, COL_SENDER = range(6)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RESULT_ROLE = Qt.ItemDataRole.UserRole + 2

FLAG_TEXT = "⚑ Needs review"
REVIEWED_TEXT = "✓ Reviewed"
ERROR_TEXT = "✕ Error"
NO_CELL_TEXT = "○ No white cell"  # a camera field in which none was found: no class, nothing to review


def status_of(r: Result) -> str:
    if not r.ok:
        return ERROR_TEXT
    if r.no_cell:
        return NO_CELL_TEXT
    if r.reviewer_label:
        return REVIEWED_TEXT
    if r.needs_review:
        return FLAG_TEXT
    return "Unreviewed"


def effective_label(r: Result, reviewed: bool) -> str:
    if not r.ok:
        return "(failed)"
    return (r.reviewer_label or r.label or "") if reviewed else (r.label or "")


def to_pixmap(arr: np.ndarray) -> QPixmap:
    h, w, _ = arr.shape
    img = QImage(arr.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(img.copy())


class ResultsModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.results: list[Result] = []
        self._pixmaps: dict[int, QPixmap] = {}
        #: cell ID -> the sending lab's review, when the session is a consultation (hv_desktop.core.io.package)
        self.sender_labels: dict[str, str | None] = {}
        self._bold = QFont()
        self._bold.setBold(True)
        self._cells: dict[tuple[str, str, str | None], int] = {}  # a camera field -> its number of cells
        self._cells_rows = -1  # the number of rows ``_cells`` was counted over

    def cells_in_field(self, r: Result) -> int | None:
        """How many white cells ``r``'s field holds (None for a file classified as one cell); counted again only
        when rows were added or removed."""
        if r.cell_index is None:
            return None
        if self._cells_rows != len(self.results):
            self._cells = {}
            for x in self.results:
                if x.cell_index is not None:
                    key = (x.case, str(x.path), x.sha256)
                    self._cells[key] = max(self._cells.get(key, 0), x.cell_index)
            self._cells_rows = len(self.results)
        return self._cells.get((r.case, str(r.path), r.sha256))

    # --- Qt API ---
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.results)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.results[index.row()]
        col = index.column()
        if role == RESULT_ROLE:
            return r
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if col == COL_FILE:
                return cell_name(r, self.cells_in_field(r)) if role == Qt.ItemDataRole.DisplayRole else str(r.path)
            if col == COL_CLASS:
                return (r.label or "").capitalize() if r.ok else ""
            if col == COL_CONF:
                return f"{r.confidence * 100:.1f} %" if r.confidence is not None else ""
            if col == COL_REVIEW:
                return (r.reviewer_label or "").capitalize()
            if col == COL_STATUS:
                return status_of(r) if (r.ok or role == Qt.ItemDataRole.DisplayRole) else r.error
            if col == COL_SENDER:  # a consultation: the sending lab's review, beside the model's and yours
                return (sender_label(self.sender_labels, r) or "").capitalize()
        if role == SORT_ROLE:
            if col == COL_CONF:
                return r.confidence if r.confidence is not None else -1.0
            return self.data(index, Qt.ItemDataRole.DisplayRole)
        if role == Qt.ItemDataRole.DecorationRole and col == COL_FILE and r.thumbnail is not None:
            key = id(r)
            pm = self._pixmaps.get(key)
            if pm is None:
                pm = self._pixmaps[key] = to_pixmap(r.thumbnail)
            return pm
        if role == Qt.ItemDataRole.FontRole and awaiting_review(r):
            return self._bold
        if role == Qt.ItemDataRole.BackgroundRole:
            if not r.ok:
                return QBrush(QColor(255, 228, 228))
            if awaiting_review(r):
                return QBrush(QColor(255, 243, 205))
        return None

    # --- our API ---
    def append(self, results: list[Result]) -> None:
        if not results:
            return
        n = len(self.results)
        self.beginInsertRows(QModelIndex(), n, n + len(results) - 1)
        self.results.extend(results)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.results.clear()
        self._pixmaps.clear()
        self.endResetModel()

    def rows_changed(self, rows: list[int]) -> None:
        """Rows whose review changed in the session (hv_desktop.core.cases.review.ReviewSession): repaint them."""
        if rows:
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))

    def set_reviewer_label(self, row: int, label: str | None) -> None:
        self.results[row].reviewer_label = label
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))


class ResultsFilter(QSortFilterProxyModel):
    """Filter by class and by state; sorts numerically on confidence."""

    STATES = ("All", "Needs review", "Unreviewed", "Review next", "Reviewed", "Errors")
    #: the state whose rows are ordered by what a review would teach (core.cases.review_order), not by a column
    TEACHING = "Review next"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.class_filter = ""
        self.case_filter = ""  # "" shows every case
        self.state_filter = "All"
        self.text_filter = ""
        self.reviewed_view = False
        self._rank: dict[int, int] = {}  # source row -> place in the "Review next" order
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_filters(
        self, cls: str | None = None, state: str | None = None, text: str | None = None, case: str | None = None
    ) -> None:
        new_api = hasattr(self, "beginFilterChange")  # Qt >= 6.9 replaces invalidateFilter()
        if new_api:
            self.beginFilterChange()
        if cls is not None:
            self.class_filter = cls
        if case is not None:
            self.case_filter = case
            if state is None and self.state_filter == self.TEACHING:
                self._order_for(self.state_filter)
        if state is not None:
            self.state_filter = state
            self._order_for(state)
        if text is not None:
            self.text_filter = text.casefold()
        if new_api:
            self.endFilterChange()
        else:
            self.invalidateFilter()

    def _order_for(self, state: str) -> None:
        """ "Review next": the case's unreviewed cells, the most teaching first (ranked once, when chosen)."""
        model = self.sourceModel()
        if state != self.TEACHING or not isinstance(model, ResultsModel):
            self._rank = {}
            return
        rows = [i for i, r in enumerate(model.results) if not self.case_filter or r.case == self.case_filter]
        ranked = review_next([model.results[i] for i in rows])
        self._rank = {rows[k]: place for place, k in enumerate(ranked)}

    def lessThan(self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex) -> bool:
        if self._rank:
            big = len(self._rank)
            return self._rank.get(left.row(), big) < self._rank.get(right.row(), big)
        return super().lessThan(left, right)

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        if not isinstance(model, ResultsModel):
            return True
        r: Result = model.results[row]
        if self.case_filter and r.case != self.case_filter:
            return False
        if self.class_filter and effective_label(r, self.reviewed_view) != self.class_filter:
            return False
        s = self.state_filter
        if s == "Needs review" and not awaiting_review(r):
            return False
        if s in ("Review next", "Unreviewed") and not unreviewed(r):
            return False
        if s == "Reviewed" and not r.reviewer_label:
            return False
        if s == "Errors" and r.ok:
            return False
        return not (self.text_filter and self.text_filter not in r.path.name.casefold())


#: the usual differential-count abbreviations, so a caption fits under a thumbnail
SHORT_NAMES = {"eosinophil": "Eos", "lymphocyte": "Lymph", "monocyte": "Mono", "neutrophil": "Neut", "basophil": "Baso"}


class GalleryFilter(ResultsFilter):
    """The gallery: sorted by class, each tile captioned with class and confidence, so groups read at a glance."""

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and index.column() == COL_FILE:
            r: Result = super().data(index, RESULT_ROLE)
            if r is not None:
                if not r.ok:
                    return f"✕ {r.path.name}"
                if r.no_cell:
                    return NO_CELL_TEXT
                label = effective_label(r, self.reviewed_view)
                label = SHORT_NAMES.get(label, label.capitalize())
                flag = "⚑ " if awaiting_review(r) else ("✓ " if r.reviewer_label else "")
                conf = f" {r.confidence * 100:.0f}%" if r.confidence is not None else ""
                return f"{flag}{label}{conf}"  # the file name is in the tooltip
        return super().data(index, role)
