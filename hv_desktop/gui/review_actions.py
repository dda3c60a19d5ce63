"""Reviewing from the window: cases, one cell's review, accept-all, undo, next flagged, sign-off and the lab's
cell types. The rules are hv_desktop.core.cases.review's (ReviewSession); this module asks, changes the workspace (whose
listeners repaint, recount and save) and moves through the results pane."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

from hv_desktop.core.cases.differential import differential
from hv_desktop.core.cases.review import (
    EXTRA_CLASSES,
    ReviewClass,
    format_extra_classes,
    next_awaiting,
    parse_extra_classes,
    sign_off_blockers,
)
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui import dialogs
from hv_desktop.gui.shell import Shell

if TYPE_CHECKING:
    from hv_desktop.gui.results_pane import ResultsPane


def now() -> str:
    return datetime.now().isoformat(timespec="minutes")


class ReviewActions:
    """``cell_types_changed()``: the lab's cell types were edited (the window rebuilds what shows them)."""

    def __init__(self, workspace: Workspace, shell: Shell, pane: ResultsPane, cell_types_changed: Callable[[], None]) -> None:
        self.workspace, self.shell, self.pane = workspace, shell, pane
        self.cell_types_changed = cell_types_changed

    @property
    def labels(self) -> tuple[str, ...]:
        model = self.workspace.model
        return tuple(model.labels) if model is not None else ()

    def operator(self) -> str:
        """The operator last named on this workstation (the settings)."""
        return str(self.shell.settings.value("operator", "") or "")

    # --- cases
    def new_case(self, name: str = "", ask: bool = True) -> str | None:
        """Open a case (a dialog asks the sample ID, operator and note unless ``ask`` is False)."""
        operator, note = self.operator(), ""
        if ask:
            dlg = dialogs.ask_case_details(self.shell.dialog_parent(), "New case", operator, name, heatmaps=False)
            if dlg is None:
                return None
            name, operator, note = dlg.case_id.text(), dlg.operator.text(), dlg.note.toPlainText()
        try:
            return self.workspace.new_case(name, operator, note)
        except ValueError as exc:  # over a limit: said now, not dropped on the next start
            QMessageBox.warning(self.shell.dialog_parent(), "No new case", str(exc).capitalize() + ".")
            return None

    def case_chosen(self, cid: str) -> None:
        self.workspace.choose_case(cid)

    # --- one cell, all cells
    def locked(self, row: int | None = None) -> bool:
        """A signed-off case cannot change; say so instead."""
        review = self.workspace.review
        if not review.locked(row):
            return False
        case = review.results[row].case if row is not None else review.current
        s = review.signoffs[case]
        self.shell.status(
            f"Case {case or ''} signed off by {s.operator} at {s.at}: Review ▸ Unlock Signed-Off Case to change it", 6000
        )
        return True

    def assign_current(self, label: str | None) -> None:
        """Set (or clear) the reviewer's label of the current cell, then move on."""
        pane = self.pane
        r, row = pane.current()
        if r is None or not r.ok or self.locked(row):
            return
        self.workspace.assign(row, label)
        if label is not None:
            pane.move_next()
        else:
            pane.show_current()

    def confirm_current(self) -> None:
        r, _ = self.pane.current()
        if r is not None and r.ok:
            self.assign_current(r.label)

    def accept_unflagged(self, ask: bool = True) -> int:
        """The usual workflow: confirm the confident pre-classifications at once, review the flagged ones."""
        if self.locked():
            return 0
        n = len(self.workspace.review.unflagged_rows())
        if not n:
            self.shell.status("No unflagged, unreviewed cells", 4000)
            return 0
        question = (
            f"Confirm the model's class for {n} cells that are not flagged?\n"
            "Flagged cells stay for you to review (Ctrl+Z takes this back)."
        )
        if ask and not dialogs.confirm(self.shell.dialog_parent(), "Accept unflagged cells", question):
            return 0
        rows = self.workspace.accept_unflagged()
        left = differential(self.workspace.case_results(), self.labels).flagged
        self.shell.status(f"Accepted {len(rows)} cells; {left} flagged cells to review", 6000)
        return len(rows)

    def undo(self) -> None:
        if self.locked():
            return
        rows = self.workspace.undo()
        if not rows:
            self.shell.status("Nothing to undo", 3000)
            return
        if len(rows) == 1:  # back to the cell, so the reviewer sees what changed
            self.pane.select_source_row(rows[0])
        self.shell.status(f"Undone: {len(rows)} review{'s' if len(rows) != 1 else ''}", 3000)

    def next_flagged(self) -> None:
        pane = self.pane
        row = next_awaiting(pane.shown_in_table(), pane.table.currentIndex().row())
        if row is None:
            pane.tabs.setCurrentWidget(pane.table)
            self.shell.status("No cell left that needs review", 4000)
        else:
            pane.select_in_table(row)

    # --- sign-off
    def sign_off(self, operator: str | None = None, reason: str | None = None) -> bool:
        """Sign the case off (a dialog asks who, and a reason when flagged cells are left); then it is locked."""
        ws, parent = self.workspace, self.shell.dialog_parent()
        if ws.review.signed is not None or not ws.case_results():
            return False
        if operator is None:
            answer = dialogs.ask_sign_off(parent, self.operator(), sign_off_blockers(ws.case_results()))
            if answer is None:
                return False
            operator, reason = answer
        try:
            signed = ws.sign_off(operator, now(), reason or "", format_extra_classes(self.extra_classes()))
        except ValueError as exc:
            QMessageBox.warning(parent, "Not signed off", str(exc).capitalize() + ".")
            return False
        self.shell.settings.setValue("operator", signed.operator)
        return True

    def unlock(self, reason: str | None = None) -> bool:
        parent = self.shell.dialog_parent()
        if self.workspace.review.signed is None:
            return False
        if reason is None:
            reason = dialogs.ask_unlock_reason(parent)
            if reason is None:
                return False
        try:
            self.workspace.unlock(reason, now())
        except ValueError as exc:
            QMessageBox.warning(parent, "Not unlocked", str(exc).capitalize() + ".")
            return False
        return True

    # --- the lab's cell types
    def extra_classes(self) -> list[ReviewClass]:
        """The lab's list of further cell types (preferences), or the default list; for a signed-off case the list
        it was signed with (its differential and report stay as signed)."""
        signed = self.workspace.review.signed
        if signed is not None and signed.cell_types:
            try:
                return parse_extra_classes(signed.cell_types, self.labels)
            except ValueError:
                pass
        text = self.shell.settings.value("review/cell_types")
        if isinstance(text, str):
            try:
                return parse_extra_classes(text, self.labels)
            except ValueError:
                pass  # a damaged setting: the default list
        return list(EXTRA_CLASSES)

    def edit_cell_types(self, text: str | None = None) -> bool:
        """Preferences: edit the further cell types (one per line: name, KEY[, per 100])."""
        if text is None:
            text = dialogs.ask_cell_types(self.shell.dialog_parent(), self.extra_classes())
            if text is None:
                return False
        try:
            parse_extra_classes(text, self.labels)
        except ValueError as exc:
            QMessageBox.warning(self.shell.dialog_parent(), "Cell types not changed", str(exc).capitalize() + ".")
            return False
        self.shell.settings.setValue("review/cell_types", text)
        self.cell_types_changed()
        return True
