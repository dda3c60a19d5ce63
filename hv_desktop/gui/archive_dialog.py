"""Cases ▸ Case Archive: find a case the lab archived by its sample ID, operator, status or date, and reopen it
(a signed-off case read-only, as it was signed). The search is hv_desktop.core.storage.archive's; this only asks and
shows."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.storage.archive import CaseArchive, CaseSummary
from hv_desktop.core.storage.archive_schema import ArchiveError

COLUMNS = ("Case / sample ID", "Operator", "Opened", "Status", "Cells", "Reviewed", "Signed off by", "Signed off at")
STATUS = {"Any status": "", "Open": "open", "Signed off": "signed"}


class ArchiveDialog(QDialog):
    """``reopen(case_id)``: bring the case into the session (True: done; the dialog closes)."""

    def __init__(self, parent: QWidget, archive: CaseArchive, reopen: Callable[[str], bool]) -> None:
        super().__init__(parent)
        self.archive, self.open_case = archive, reopen
        self.setWindowTitle("Case Archive")
        self.resize(900, 480)
        self.text, self.operator = QLineEdit(), QLineEdit()
        self.text.setPlaceholderText("part of the ID, any case")
        self.status = QComboBox()
        self.status.addItems(list(STATUS))
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for box in (self.date_from, self.date_to):
            box.setPlaceholderText("YYYY-MM-DD")
        form = QFormLayout()
        form.addRow("Sample ID:", self.text)
        form.addRow("Operator:", self.operator)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addRow("Opened from:", dates)
        form.addRow("Status:", self.status)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # dates and names on one line
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.doubleClicked.connect(lambda _: self.reopen())
        self.found = QLabel("")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = buttons.addButton("Open Case", QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.clicked.connect(self.reopen)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.found)
        lay.addWidget(buttons)
        for box in (self.text, self.operator, self.date_from, self.date_to):
            box.textChanged.connect(lambda _: self.search())
        self.status.currentIndexChanged.connect(lambda _: self.search())
        self.cases: list[CaseSummary] = []
        self.search()

    def search(self) -> None:
        try:
            self.cases = self.archive.find_cases(
                text=self.text.text().strip(),
                operator=self.operator.text().strip(),
                status=STATUS[self.status.currentText()],
                date_from=self.date_from.text().strip(),
                date_to=self.date_to.text().strip(),
            )
        except (ArchiveError, ValueError) as exc:
            self.cases = []
            self.found.setText(f"Not searched: {exc}")
        else:
            self.found.setText(f"{len(self.cases)} case{'s' if len(self.cases) != 1 else ''} found (newest first)")
        self.table.setRowCount(len(self.cases))
        for row, c in enumerate(self.cases):
            status = "Signed off" if c.status == "signed" else "Open"
            values = (c.case_id, c.operator, c.created_at[:16].replace("T", " "), status, str(c.n_cells), str(c.n_reviewed))
            for col, text in enumerate((*values, c.signed_by, c.signed_at.replace("T", " "))):
                self.table.setItem(row, col, QTableWidgetItem(text))
        if self.cases:
            self.table.selectRow(0)
        self.open_button.setEnabled(bool(self.cases))

    def reopen(self) -> bool:
        row = self.table.currentRow()
        if not 0 <= row < len(self.cases):
            return False
        if self.open_case(self.cases[row].case_id):
            self.accept()
            return True
        return False
