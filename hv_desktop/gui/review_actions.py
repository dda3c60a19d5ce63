"""Reviewing from the window: cases, one cell's review, accept-all, undo, next flagged, sign-off and the lab's
cell types. The rules are hv_desktop.core.review's (ReviewSession); this module asks and shows."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

from hv_desktop.core.export import differential
from hv_desktop.core.review import (
    EXTRA_CLASSES,
    ReviewClass,
    format_extra_classes,
    next_awaiting,
    parse_extra_classes,
    sign_off_blockers,
)
from hv_desktop.gui import dialogs

if TYPE_CHECKING:
    from hv_desktop.gui.main_window import MainWindow


def now() -> str:
    return datetime.now().isoformat(timespec="minutes")


class ReviewActions:
    def __init__(self, w: MainWindow) -> None:
        self.w = w

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.w.model.labels) if self.w.model is not None else ()

    # --- cases
    def new_case(self, name: str = "", ask: bool = True) -> str | None:
        """Open a case (a dialog asks the sample ID, operator and note unless ``ask`` is False)."""
        operator, note = self.w.operator(), ""
        if ask:
            dlg = dialogs.ask_case_details(self.w, "New case", operator, name, heatmaps=False)
            if dlg is None:
                return None
            name, operator, note = dlg.case_id.text(), dlg.operator.text(), dlg.note.toPlainText()
        try:
            cid = self.w.workspace.new_case(name, operator, note)
        except ValueError as exc:  # over a limit: said now, not dropped on the next start
            QMessageBox.warning(self.w, "No new case", str(exc).capitalize() + ".")
            return None
        self.w.refresh_cases()
        return cid

    def case_chosen(self, cid: str) -> None:
        if cid != self.w.review.current:
            self.w.review.current = cid
            self.w.refresh_cases()
            self.w.changed(soon=True)

    # --- one cell, all cells
    def locked(self, row: int | None = None) -> bool:
        """A signed-off case cannot change; say so instead."""
        review = self.w.review
        if not review.locked(row):
            return False
        case = review.results[row].case if row is not None else review.current
        s = review.signoffs[case]
        self.w.statusBar().showMessage(
            f"Case {case or ''} signed off by {s.operator} at {s.at}: Review ▸ Unlock Signed-Off Case to change it", 6000
        )
        return True

    def assign_current(self, label: str | None) -> None:
        """Set (or clear) the reviewer's label of the current cell, then move on."""
        pane = self.w.results_pane
        r, row = pane.current()
        if r is None or not r.ok or self.locked(row):
            return
        self.w.workspace.assign(row, label)
        self.w.results.rows_changed([row])
        self.w.changed(soon=True, differential_now=True)
        if label is not None:
            pane.move_next()
        else:
            pane.show_current()

    def confirm_current(self) -> None:
        r, _ = self.w.results_pane.current()
        if r is not None and r.ok:
            self.assign_current(r.label)

    def accept_unflagged(self, ask: bool = True) -> int:
        """The usual workflow: confirm the confident pre-classifications at once, review the flagged ones."""
        w = self.w
        if self.locked():
            return 0
        n = len(w.review.unflagged_rows())
        if not n:
            w.statusBar().showMessage("No unflagged, unreviewed cells", 4000)
            return 0
        question = (
            f"Confirm the model's class for {n} cells that are not flagged?\n"
            "Flagged cells stay for you to review (Ctrl+Z takes this back)."
        )
        if ask and not dialogs.confirm(w, "Accept unflagged cells", question):
            return 0
        rows = w.workspace.accept_unflagged()
        w.results.rows_changed(rows)
        w.changed(soon=True, differential_now=True)
        left = differential(w.case_results(), self.labels).flagged
        w.statusBar().showMessage(f"Accepted {len(rows)} cells; {left} flagged cells to review", 6000)
        return len(rows)

    def undo(self) -> None:
        w = self.w
        if self.locked():
            return
        rows = w.workspace.undo()
        if not rows:
            w.statusBar().showMessage("Nothing to undo", 3000)
            return
        w.results.rows_changed(rows)
        w.changed(soon=True, differential_now=True)
        if len(rows) == 1:  # back to the cell, so the reviewer sees what changed
            w.results_pane.select_source_row(rows[0])
        w.statusBar().showMessage(f"Undone: {len(rows)} review{'s' if len(rows) != 1 else ''}", 3000)

    def next_flagged(self) -> None:
        pane = self.w.results_pane
        row = next_awaiting(pane.shown_in_table(), pane.table.currentIndex().row())
        if row is None:
            pane.tabs.setCurrentWidget(pane.table)
            self.w.statusBar().showMessage("No cell left that needs review", 4000)
        else:
            pane.select_in_table(row)

    # --- sign-off
    def sign_off(self, operator: str | None = None, reason: str | None = None) -> bool:
        """Sign the case off (a dialog asks who, and a reason when flagged cells are left); then it is locked."""
        w = self.w
        if w.signed is not None or not w.case_results():
            return False
        if operator is None:
            answer = dialogs.ask_sign_off(w, w.operator(), sign_off_blockers(w.case_results()))
            if answer is None:
                return False
            operator, reason = answer
        try:
            signed = w.workspace.sign_off(operator, now(), reason or "", format_extra_classes(self.extra_classes()))
        except ValueError as exc:
            QMessageBox.warning(w, "Not signed off", str(exc).capitalize() + ".")
            return False
        w.settings.setValue("operator", signed.operator)
        w.show_signed()
        w.autosave()
        return True

    def unlock(self, reason: str | None = None) -> bool:
        w = self.w
        if w.signed is None:
            return False
        if reason is None:
            reason = dialogs.ask_unlock_reason(w)
            if reason is None:
                return False
        try:
            w.workspace.unlock(reason, now())
        except ValueError as exc:
            QMessageBox.warning(w, "Not unlocked", str(exc).capitalize() + ".")
            return False
        w.show_signed()
        w.autosave()
        return True

    # --- the lab's cell types
    def extra_classes(self) -> list[ReviewClass]:
        """The lab's list of further cell types (preferences), or the default list; for a signed-off case the list
        it was signed with (its differential and report stay as signed)."""
        signed = self.w.signed
        if signed is not None and signed.cell_types:
            try:
                return parse_extra_classes(signed.cell_types, self.labels)
            except ValueError:
                pass
        text = self.w.settings.value("review/cell_types")
        if isinstance(text, str):
            try:
                return parse_extra_classes(text, self.labels)
            except ValueError:
                pass  # a damaged setting: the default list
        return list(EXTRA_CLASSES)

    def edit_cell_types(self, text: str | None = None) -> bool:
        """Preferences: edit the further cell types (one per line: name, KEY[, per 100])."""
        if text is None:
            text = dialogs.ask_cell_types(self.w, self.extra_classes())
            if text is None:
                return False
        try:
            parse_extra_classes(text, self.labels)
        except ValueError as exc:
            QMessageBox.warning(self.w, "Cell types not changed", str(exc).capitalize() + ".")
            return False
        self.w.settings.setValue("review/cell_types", text)
        self.w.labels_changed()
        self.w.update_differential()
        return True
