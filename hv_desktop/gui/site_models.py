"""The site-model handler: Adapt to This Lab, Match Lab Magnification, the site model history, and the offer of a
fresh site model as the lab's reviews accumulate (issue 27 item 2). It takes the workspace, the shell and the
runner (which loads a model and re-classifies the session), never the window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMessageBox

from hv_desktop.core.inference.metadata import ModelError
from hv_desktop.core.site.lab_images import LabelledCell
from hv_desktop.core.site.site_history import FOLDER, SiteModelEntry, entry_for, refresh_due
from hv_desktop.core.storage.archive_reviews import ReviewedCell, merged, reviewed_cells, reviewed_counts
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui.runner import Runner
from hv_desktop.gui.shell import Shell

if TYPE_CHECKING:
    from hv_desktop.gui.adapt_dialog import AdaptDialog
    from hv_desktop.gui.site_history_dialog import SiteHistoryDialog

#: where consultation packages are unpacked in the data folder: another lab's cells, never this lab's site model's
CONSULTATIONS = "consultations"


class SiteModels(QObject):
    #: a fresh site model is due: reviewed cells per class reached this step beyond the model in use's
    refreshDue = Signal(int)

    def __init__(self, workspace: Workspace, shell: Shell, runner: Runner) -> None:
        super().__init__(shell.dialog_parent())
        self.workspace, self.shell, self.runner = workspace, shell, runner
        self.offered: set[tuple[str, int]] = set()  # (model file, step) already offered: once each
        self.due: int | None = None
        self._in_use: tuple[Path | None, SiteModelEntry | None] = (None, None)
        self._check = QTimer(self, singleShot=True, interval=500)  # reviews come in bursts: count once after
        self._check.timeout.connect(self.check_refresh)

    # --- the lab's reviews
    def _leave_out(self) -> Path:
        return self.shell.data_folder() / CONSULTATIONS

    def reviewed(self) -> list[ReviewedCell]:
        """Every reviewed cell of this lab: the open session's, then the archive's (cases closed on other days);
        cells of consultation packages (another lab's) left out."""
        ws, away = self.workspace, self._leave_out()
        session = [
            ReviewedCell(r.cell_id, r.path, str(r.reviewer_label))
            for r in ws.results
            if r.ok and r.reviewer_label and not r.path.is_relative_to(away)
        ]
        try:
            archived = reviewed_cells(ws.archive, away) if ws.archive is not None else []
        except ArchiveError as exc:
            self.shell.status(f"Reviews of earlier cases not read: {exc}", 8000)
            archived = []
        return merged(session, archived)

    def counts(self) -> dict[str, int]:
        ws = self.workspace
        if ws.archive is not None:  # every review is written to it as it happens
            try:
                return reviewed_counts(ws.archive, self._leave_out())
            except ArchiveError:
                pass
        out: dict[str, int] = {}
        for c in self.reviewed():
            out[c.label] = out.get(c.label, 0) + 1
        return out

    # --- a fresh site model, when enough new reviews exist
    def reviews_changed(self) -> None:
        self._check.start()

    def in_use(self) -> SiteModelEntry | None:
        """The history's entry of the model in use, read from its file once per model (not at every review burst)."""
        model = self.workspace.model
        if model is None or not model.info.site_adaptation:
            return None
        if self._in_use[0] != model.path:
            try:
                self._in_use = (model.path, entry_for(model.path))
            except ModelError:
                self._in_use = (model.path, None)
        return self._in_use[1]

    def check_refresh(self) -> int | None:
        """The step a fresh site model is due at (None: none); said once per model and step on the status line."""
        model = self.workspace.model
        if model is None or not model.info.embedding_output:
            self.due = None
            return None
        in_use = self.in_use()
        self.due = refresh_due(self.counts(), model.labels, in_use)
        key = (str(model.path), self.due or 0)
        if self.due is not None and key not in self.offered:
            self.offered.add(key)
            had = f"the model in use learnt from {in_use.fewest_per_class} of each" if in_use else "none is in use yet"
            self.shell.status(
                f"{self.due} reviewed cells of each type: Review ▸ Adapt to This Lab can fit a site model to them "
                f"({had}). Review ▸ Site Model History goes back to any earlier one.",
                20000,
            )
            self.refreshDue.emit(self.due)
        return self.due

    # --- dialogs
    def adapt_to_lab(self) -> AdaptDialog | None:
        """Open the adapt dialog on the lab's reviewed cells; a saved site model is loaded at once."""
        from hv_desktop.gui.adapt_dialog import AdaptDialog

        model, parent = self.workspace.model, self.shell.dialog_parent()
        if model is None or self.runner.job is not None:
            return None
        if not model.info.embedding_output:
            QMessageBox.information(
                parent,
                "Adapt to This Lab",
                "This model cannot be adapted (it has no embedding output). Review ▸ Use Shipped Model first.",
            )
            return None
        cells = [LabelledCell(c.path, c.label) for c in self.reviewed()]
        dlg = AdaptDialog(model, cells, self.shell.data_folder(), parent)
        dlg.modelSaved.connect(self.runner.use_site_model)
        dlg.open()
        return dlg

    def match_magnification(self) -> AdaptDialog | None:
        """Open the magnification dialog on the current case's images; a saved site model is loaded at once."""
        from hv_desktop.gui.adapt_dialog import MagnificationDialog

        model, parent = self.workspace.model, self.shell.dialog_parent()
        if model is None or self.runner.job is not None:
            return None
        if model.info.preprocessing.crop != "cell":
            QMessageBox.information(
                parent,
                "Match Lab Magnification",
                "This model does not crop a square around the cell, so there is no magnification to match.",
            )
            return None
        images = [r.path for r in self.workspace.case_results() if r.ok]
        dlg = MagnificationDialog(model, images, self.shell.data_folder(), parent)
        dlg.modelSaved.connect(self.runner.use_site_model)
        dlg.open()
        return dlg

    def history(self) -> SiteHistoryDialog | None:
        """Every site model made here, newest first; choosing one goes back to it (the session re-classified)."""
        from hv_desktop.gui.site_history_dialog import SiteHistoryDialog

        if self.runner.job is not None:
            self.shell.status("A run is in progress: change the model when it has finished", 6000)
            return None
        model = self.workspace.model
        dlg = SiteHistoryDialog(self.shell.data_folder() / FOLDER, model.path if model else None, self.shell.dialog_parent())
        dlg.chosen.connect(self.runner.use_site_model)
        dlg.shipped.connect(self.runner.use_shipped_model)
        dlg.open()
        return dlg
