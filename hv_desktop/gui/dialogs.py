"""The window's small dialogs: each asks, and returns what was answered (None: cancelled)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from hv_desktop import __version__
from hv_desktop.core.cases.review import EXTRA_CLASSES, ReviewClass, format_extra_classes
from hv_desktop.core.inference.metadata import ModelMetadata
from hv_desktop.core.inference.model import INTENDED_USE
from hv_desktop.core.io.report import ReportInfo

OK_CANCEL = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel


def _buttons(dlg: QDialog, which: QDialogButtonBox.StandardButton = OK_CANCEL) -> QDialogButtonBox:
    buttons = QDialogButtonBox(which)
    buttons.accepted.connect(dlg.accept)
    buttons.rejected.connect(dlg.reject)
    return buttons


class ReportDialog(QDialog):
    """Case details for the PDF report."""

    def __init__(self, parent: QWidget | None = None, operator: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export report")
        form = QFormLayout(self)
        self.case_id = QLineEdit()
        self.operator = QLineEdit(operator)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("Free text, e.g. clinical question or comments for the consultant")
        self.heatmaps = QCheckBox("Show heatmaps in the gallery")
        form.addRow("Case / sample ID:", self.case_id)
        form.addRow("Operator:", self.operator)
        form.addRow("Note:", self.note)
        form.addRow("", self.heatmaps)
        form.addRow(_buttons(self))


def ask_case_details(
    parent: QWidget | None, title: str, operator: str = "", case_id: str = "", heatmaps: bool = True
) -> ReportDialog | None:
    """The case ID / operator / note dialog the report, the consultation export and a new case all use;
    None when cancelled."""
    dlg = ReportDialog(parent, operator=operator)
    dlg.setWindowTitle(title)
    dlg.case_id.setText(case_id)
    dlg.heatmaps.setVisible(heatmaps)
    return dlg if dlg.exec() == QDialog.DialogCode.Accepted else None


def ask_report_details(
    parent: QWidget | None, case: ReportInfo, signed: bool, title: str = "Export report", heatmaps: bool = True
) -> tuple[ReportInfo, bool] | None:
    """The report dialog: the case's ID shown, not typed (a report is of its case); operator and note editable
    only while the case is not signed off. (details, heatmaps) or None when cancelled."""
    dlg = ReportDialog(parent, operator=case.operator)
    dlg.setWindowTitle(title)
    dlg.heatmaps.setVisible(heatmaps)
    dlg.case_id.setText(case.case_id)
    dlg.case_id.setReadOnly(True)
    dlg.case_id.setToolTip("The report is of the case shown in the Case box; choose another case there")
    dlg.note.setPlainText(case.note)
    if signed:
        dlg.operator.setReadOnly(True)
        dlg.note.setReadOnly(True)
        dlg.setWindowTitle(f"{title} (signed-off case: details as signed)")
    return (ReportInfo("", dlg.note.toPlainText(), dlg.operator.text()), dlg.heatmaps.isChecked()) if dlg.exec() else None


class SignOffDialog(QDialog):
    """Who signs the case off; a reason is asked only when flagged cells are left unreviewed."""

    def __init__(self, parent: QWidget | None = None, operator: str = "", unreviewed: int = 0) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign off case")
        form = QFormLayout(self)
        self.operator = QLineEdit(operator)
        self.reason = QPlainTextEdit()
        form.addRow("Signed off by:", self.operator)
        if unreviewed:
            warn = QLabel(
                f"<b>{unreviewed} flagged cell{'s are' if unreviewed != 1 else ' is'} not reviewed.</b> "
                "Review them first, or give the reason for signing off anyway (it is recorded and "
                "printed on the report)."
            )
            warn.setWordWrap(True)
            form.addRow(warn)
            form.addRow("Reason:", self.reason)
        else:
            self.reason.hide()
        form.addRow(QLabel("After sign-off the case is locked; unlocking is possible and is recorded."))
        buttons = _buttons(self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Sign off")
        form.addRow(buttons)


def ask_sign_off(parent: QWidget, operator: str, unreviewed: int) -> tuple[str, str] | None:
    """(who, reason) for a sign-off, or None."""
    dlg = SignOffDialog(parent, operator, unreviewed)
    if dlg.exec() != QDialog.DialogCode.Accepted:
        return None
    return dlg.operator.text(), dlg.reason.toPlainText()


def ask_cell_types(parent: QWidget, current: list[ReviewClass]) -> str | None:
    """Preferences: the further cell types as text (one per line: name, KEY[, per 100]), or None."""
    dlg = QDialog(parent)
    dlg.setWindowTitle("Cell types for review")
    lay = QVBoxLayout(dlg)
    hint = QLabel(
        "Besides the model's classes, the cell types a reviewer can assign: one per line, "
        "<i>name, KEY</i>, and <i>, per 100</i> for types counted per 100 white cells outside "
        "the differential (nucleated red cells, smudge cells…)."
    )
    hint.setWordWrap(True)
    edit = QPlainTextEdit(format_extra_classes(current))
    lay.addWidget(hint)
    lay.addWidget(edit)
    buttons = _buttons(dlg, OK_CANCEL | QDialogButtonBox.StandardButton.RestoreDefaults)
    buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
        lambda: edit.setPlainText(format_extra_classes(EXTRA_CLASSES))
    )
    lay.addWidget(buttons)
    dlg.resize(480, 380)
    return edit.toPlainText() if dlg.exec() == QDialog.DialogCode.Accepted else None


def ask_new_or_add(parent: QWidget, current: str) -> str | None:
    """'new', 'add' or None (cancel): are the opened images a new case or more of ``current``?"""
    box = QMessageBox(parent)
    box.setWindowTitle("New case or the same case?")
    box.setText(f"Are these images a new case, or more of case {current}?")
    new = box.addButton("New case…", QMessageBox.ButtonRole.AcceptRole)
    add = box.addButton(f"Add to {current}", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return "new" if box.clickedButton() is new else "add" if box.clickedButton() is add else None


def ask_unlock_reason(parent: QWidget) -> str | None:
    reason, ok = QInputDialog.getText(parent, "Unlock signed-off case", "Why is the signed-off case being changed? (recorded)")
    return reason if ok else None


def confirm(parent: QWidget, title: str, text: str) -> bool:
    return QMessageBox.question(parent, title, text) == QMessageBox.StandardButton.Yes


def show_about(parent: QWidget, info: ModelMetadata | None) -> None:
    QMessageBox.about(
        parent,
        "About HematoVision",
        f"<h3>HematoVision {__version__}</h3>"
        f"<p>Model: {info.name + ' v' + info.version if info else 'none loaded'}</p>"
        f"<p><b>Intended use.</b> {INTENDED_USE}</p>"
        "<p>Runs fully offline; images never leave this computer.</p>",
    )
