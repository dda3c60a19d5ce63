"""The results pane: case / class / state / name filters, the table and the gallery (grouped by class), and the
review keys typed in either view (the window decides what a key does)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QTableView,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.inference.result import Result
from hv_desktop.gui.results_model import (
    COL_CLASS,
    COL_CONF,
    COL_FILE,
    COL_REVIEW,
    COL_SENDER,
    COL_STATUS,
    RESULT_ROLE,
    GalleryFilter,
    ResultsFilter,
    ResultsModel,
)

EMPTY_HINT = "Drop images or folders here, or use File ▸ Open Images… (Ctrl+O) and File ▸ Open Folder… (Ctrl+Shift+O)."
SELECT_ROW = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
NO_SHORTCUT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
#: widgets a person types into: a finished run never takes the focus from them
TYPING = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)


class ResultsPane(QWidget):
    currentChanged = Signal(object)  # the Result now current in the view in use
    caseChosen = Signal(str)
    reviewKey = Signal(object)  # a review class's name, or None (Backspace / Delete: clear)
    confirmKey = Signal()  # Enter: the model's class is right

    def __init__(self, results: ResultsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results = results
        self.proxy = ResultsFilter(self)
        self.proxy.setSourceModel(results)
        self.gallery_proxy = GalleryFilter(self)
        self.gallery_proxy.setSourceModel(results)
        self.gallery_proxy.setSortRole(Qt.ItemDataRole.DisplayRole)
        self.gallery_proxy.sort(COL_CLASS)
        #: the review keys (letter -> class name) while a model is loaded; None: keys do nothing special
        self.review_keys: Callable[[], dict[str, str] | None] = lambda: None
        filters = self._build_filters()
        self._build_table()
        self._build_gallery()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Table")
        self.tabs.addTab(self.gallery, "Gallery (by class)")
        self.empty_hint = QLabel(EMPTY_HINT)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: #555; font-size: 14px; padding: 24px;")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(filters)
        lay.addWidget(self.empty_hint)
        lay.addWidget(self.tabs, 1)

    def _state_chosen(self, state: str) -> None:
        """A state filter; "Review next" also orders the rows by what a review would teach (core.cases.review_order),
        and leaving it returns to file order."""
        was = self.proxy.state_filter
        self.proxy.set_filters(state=state)
        if state == ResultsFilter.TEACHING:
            self.proxy.sort(0, Qt.SortOrder.AscendingOrder)
            if self.proxy.rowCount():
                self.table.selectRow(0)
        elif was == ResultsFilter.TEACHING:
            self.proxy.sort(-1)

    def _build_filters(self) -> QHBoxLayout:
        self.class_combo = QComboBox()
        self.class_combo.setAccessibleName("Filter by class")
        self.class_combo.currentIndexChanged.connect(lambda _: self.proxy.set_filters(cls=self.class_combo.currentData() or ""))
        self.state_combo = QComboBox()
        self.state_combo.addItems(ResultsFilter.STATES)
        self.state_combo.setAccessibleName("Filter by state")
        self.state_combo.currentTextChanged.connect(self._state_chosen)
        self.search = QLineEdit(placeholderText="Filter by file name…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda t: self.proxy.set_filters(text=t))
        self.case_combo = QComboBox()
        self.case_combo.setAccessibleName("Case")
        self.case_combo.setMinimumContentsLength(10)
        self.case_combo.setToolTip("The case (sample) shown; its differential, sign-off and exports")
        self.case_combo.currentIndexChanged.connect(lambda _: self._case_chosen())
        filters = QHBoxLayout()
        for text, widget in (("Cas&e:", self.case_combo), ("&Class:", self.class_combo), ("S&how:", self.state_combo)):
            label = QLabel(text)
            label.setBuddy(widget)  # Alt+C / Alt+H move the keyboard focus there
            filters.addWidget(label)
            filters.addWidget(widget)
        filters.addWidget(self.search, 1)
        find = QAction("Find", self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        find.triggered.connect(self._find)
        self.addAction(find)
        return filters

    def _find(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _build_table(self) -> None:
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setIconSize(QSize(40, 40))
        self.table.verticalHeader().setDefaultSectionSize(44)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        hh = self.table.horizontalHeader()
        # Fixed widths: ResizeToContents would measure every row on every insert (slow on big runs).
        hh.setSectionResizeMode(COL_FILE, QHeaderView.ResizeMode.Stretch)
        for c, width in ((COL_CLASS, 110), (COL_CONF, 95), (COL_REVIEW, 110), (COL_STATUS, 130), (COL_SENDER, 120)):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.Interactive)
            hh.resizeSection(c, width)
        self.table.setColumnHidden(COL_SENDER, True)  # shown for a consultation only
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _: self._current(cur))
        self.table.installEventFilter(self)

    def _build_gallery(self) -> None:
        self.gallery = QListView()
        self.gallery.setModel(self.gallery_proxy)
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(96, 96))
        self.gallery.setGridSize(QSize(132, 128))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(True)
        self.gallery.selectionModel().currentChanged.connect(lambda cur, _: self._current(cur))
        self.gallery.installEventFilter(self)

    # --- what the window asks
    def view(self) -> QAbstractItemView:
        """The view the reviewer is working in: the table or the gallery."""
        return self.gallery if self.tabs.currentWidget() is self.gallery else self.table

    def _view_proxy(self) -> QSortFilterProxyModel:
        return self.gallery_proxy if self.view() is self.gallery else self.proxy

    def current(self) -> tuple[Result | None, int]:
        """The current cell and its row in the results (None, -1: none)."""
        idx = self.view().currentIndex()
        if not idx.isValid():
            return None, -1
        row = self._view_proxy().mapToSource(idx).row()
        return self.results.results[row], row

    def show_current(self) -> None:
        """Show the current cell again (its review changed)."""
        self._current(self.view().currentIndex())

    def select_source_row(self, row: int) -> None:
        idx = self._view_proxy().mapFromSource(self.results.index(row, 0))
        self.view().selectionModel().setCurrentIndex(idx, SELECT_ROW)

    def select_result(self, r: Result) -> bool:
        """Make ``r`` the current row of the view in use (its box was clicked in the preview); False when it is
        not in the session or the filters hide it."""
        row = next((i for i, x in enumerate(self.results.results) if x is r), -1)
        idx = self._view_proxy().mapFromSource(self.results.index(row, 0)) if row >= 0 else None
        if idx is None or not idx.isValid():
            return False
        self.view().selectionModel().setCurrentIndex(idx, SELECT_ROW)
        self.view().scrollTo(idx)
        return True

    def move_next(self) -> None:
        """On to the next row of the view in use (the last row stays, shown again)."""
        view = self.view()
        idx = view.currentIndex()
        nxt = view.model().index(idx.row() + 1, 0)
        if nxt.isValid():
            view.selectionModel().setCurrentIndex(nxt, SELECT_ROW)
        else:
            self._current(idx)

    def shown_in_table(self) -> list[Result]:
        """The table's rows as it lists them (sorted and filtered)."""
        return [self.proxy.index(row, 0).data(RESULT_ROLE) for row in range(self.proxy.rowCount())]

    def select_in_table(self, row: int) -> None:
        self.tabs.setCurrentWidget(self.table)
        self.table.selectRow(row)

    def focus_review(self) -> None:
        """Put the keyboard where review keys work, on a selected cell: after a run and after a case is chosen
        the focus was left in the Case box and the first key did nothing (issue 30). Text being typed (the name
        filter) keeps the focus."""
        focused = QApplication.focusWidget()
        if isinstance(focused, TYPING) and focused.window() is self.window():
            return
        view = self.view()
        if not view.currentIndex().isValid() and view.model().rowCount():
            view.selectionModel().setCurrentIndex(view.model().index(0, 0), SELECT_ROW)
        view.setFocus(Qt.FocusReason.OtherFocusReason)

    def select_first_if_none(self) -> None:
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount():
            self.table.selectRow(0)

    def set_labels(self, labels: Sequence[str]) -> None:
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("All classes", "")
        for lab in labels:
            self.class_combo.addItem(lab.capitalize(), lab)
        self.class_combo.blockSignals(False)

    def set_cases(self, cases: Sequence[str], current: str) -> None:
        self.case_combo.blockSignals(True)
        self.case_combo.clear()
        for cid in cases:
            self.case_combo.addItem(cid, cid)
        self.case_combo.setCurrentIndex(max(0, self.case_combo.findData(current)))
        self.case_combo.blockSignals(False)
        self.case_combo.setEnabled(bool(cases))
        self.proxy.set_filters(case=current)
        self.gallery_proxy.set_filters(case=current)

    def show_sender(self, on: bool) -> None:
        self.table.setColumnHidden(COL_SENDER, not on)

    # --- what the pane tells
    def _current(self, index: QModelIndex | QPersistentModelIndex) -> None:
        if index.isValid():
            self.currentChanged.emit(index.data(RESULT_ROLE))

    def _case_chosen(self) -> None:
        cid = self.case_combo.currentData()
        if cid:
            self.caseChosen.emit(cid)
            self.focus_review()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and obj in (self.table, self.gallery) and isinstance(event, QKeyEvent):
            keys = self.review_keys()
            if keys is not None and self._review_key(event, keys):
                return True
        return super().eventFilter(obj, event)

    def _review_key(self, event: QKeyEvent, keys: dict[str, str]) -> bool:
        key, text = event.key(), event.text().lower()
        if text and not (event.modifiers() & NO_SHORTCUT):
            name = keys.get(text)
            if name is not None:
                self.reviewKey.emit(name)
                return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.confirmKey.emit()
            return True
        if key in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            self.reviewKey.emit(None)
            return True
        return False
