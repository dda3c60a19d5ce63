"""Merging a consultant's reply: a non-modal list of the cells the consultant classed otherwise, each beside your
reading; choosing a row shows that cell in the main table, and each is accepted (a normal review: undoable,
refused in a signed-off case) or kept as it is.

Why (issue 30): the reply was a message box of file names; nothing could be found, compared or taken over. The
rules (which reply answers which case, which cells disagree) are hv_desktop.core.io.package's; this shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from hv_desktop.core.inference.result import Result
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui.shell import Shell

if TYPE_CHECKING:
    from hv_desktop.gui.results_pane import ResultsPane
    from hv_desktop.gui.review_actions import ReviewActions

COLUMNS = ("File", "Your review", "Consultant's review", "Merged")
ACCEPTED, KEPT = "✓ Accepted", "Kept yours"


def _yours(r: Result) -> str:
    return r.reviewer_label.capitalize() if r.reviewer_label else f"(model: {(r.label or '').capitalize()})"


class MergeDialog(QDialog):
    """The disagreements of one reply with one case; ``cells``: (the cell, the consultant's class). A cell taken
    over is reviewed through the workspace (its listeners repaint and save); ``pane`` shows the chosen cell."""

    def __init__(
        self,
        shell: Shell,
        workspace: Workspace,
        pane: ResultsPane,
        reviewing: ReviewActions,
        case: str,
        cells: list[tuple[Result, str]],
        summary: str,
    ) -> None:
        super().__init__(shell.dialog_parent())
        self.shell, self.workspace, self.pane, self.reviewing = shell, workspace, pane, reviewing
        self.case = case
        self.cells = [(r.cell_id, theirs) for r, theirs in cells]
        self.setWindowTitle(f"Consultant's reply: case {case}")
        self.setModal(False)
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.resize(620, 360)
        self.table = QTableWidget(len(cells), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for i, (r, theirs) in enumerate(cells):
            for c, text in enumerate((r.path.name, _yours(r), theirs.capitalize(), "")):
                self.table.setItem(i, c, QTableWidgetItem(text))
        self.table.itemSelectionChanged.connect(self.jump)
        self.accept_button = QPushButton("&Accept consultant's class")
        self.accept_button.setToolTip("Review the cell as the consultant did (Ctrl+Z in the window takes it back)")
        self.accept_button.clicked.connect(self.take_theirs)
        self.keep_button = QPushButton("&Keep mine")
        self.keep_button.clicked.connect(self.keep_mine)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.keep_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        label = QLabel(summary)
        label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(label)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)
        self._enable()

    def _chosen(self) -> tuple[int, int, str] | None:
        """(row in this list, the cell's index in the session, the consultant's class), or None."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        row = rows[0].row()
        cell_id, theirs = self.cells[row]
        index = next((i for i, r in enumerate(self.workspace.results) if r.cell_id == cell_id), None)
        if index is None:
            self.shell.status("That cell is no longer in this session", 5000)
            return None
        return row, index, theirs

    def _enable(self) -> None:
        on = bool(self.table.selectionModel().selectedRows())
        self.accept_button.setEnabled(on)
        self.keep_button.setEnabled(on)

    def jump(self) -> None:
        """Show the chosen cell in the main table (its case made current, the filters opened if they hide it)."""
        self._enable()
        chosen = self._chosen()
        if chosen is None:
            return
        pane = self.pane
        self.workspace.choose_case(self.case)  # its listeners show the case
        pane.tabs.setCurrentWidget(pane.table)
        if not pane.proxy.mapFromSource(pane.results.index(chosen[1], 0)).isValid():
            pane.class_combo.setCurrentIndex(0)
            pane.state_combo.setCurrentIndex(0)
            pane.search.clear()
        pane.select_source_row(chosen[1])
        pane.table.scrollTo(pane.table.currentIndex())

    def take_theirs(self) -> None:
        chosen = self._chosen()
        if chosen is None:
            return
        row, index, theirs = chosen
        if self.reviewing.locked(index):  # a signed-off case: said in the status line, nothing changes
            return
        self.workspace.assign(index, theirs)
        self.pane.show_current()
        self._mark(row, ACCEPTED)
        name = self.workspace.results[index].path.name
        self.shell.status(f"{name}: the consultant's {theirs} taken (Ctrl+Z undoes)", 5000)

    def keep_mine(self) -> None:
        chosen = self._chosen()
        if chosen is not None:
            self._mark(chosen[0], KEPT)

    def _mark(self, row: int, text: str) -> None:
        """Say what was decided and go on to the next undecided cell."""
        self.table.setItem(row, 3, QTableWidgetItem(text))
        nxt = next((i for i in range(row + 1, self.table.rowCount()) if not self.state(i)), None)
        if nxt is not None:
            self.table.selectRow(nxt)

    def state(self, row: int) -> str:
        """What was decided for a row ("" while undecided)."""
        item = self.table.item(row, 3)
        return item.text() if item is not None else ""
