"""What the window writes and reads besides its autosave: the CSV, the PDF report, the heatmap PNG and
consultation packages (a case sent out, or a consultant's reply). Writing goes through hv_desktop.core (and
the report renderer); this module asks where and says what happened. It works on the workspace and a shell, and is
given what else it needs (the table model, the results pane, the review actions) by the window."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from hv_desktop.core.cases.consultation import ConsultationState
from hv_desktop.core.cases.review import MAX_CASE_ID, MAX_NAME, MAX_NOTE
from hv_desktop.core.imaging.preprocess import ImageError
from hv_desktop.core.inference.model import Model
from hv_desktop.core.io.export import labels_of, write_csv
from hv_desktop.core.io.outputs import output_problem
from hv_desktop.core.io.package import Consultation, PackageError, read_package
from hv_desktop.core.io.reply import disagreeing, disagreements, reply_case, reply_summary
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui import dialogs
from hv_desktop.gui.consult_dialog import MergeDialog
from hv_desktop.gui.shell import Shell

if TYPE_CHECKING:
    from hv_desktop.gui.report import ReportInfo
    from hv_desktop.gui.results_model import ResultsModel
    from hv_desktop.gui.results_pane import ResultsPane
    from hv_desktop.gui.review_actions import ReviewActions

T = TypeVar("T")


@dataclass(frozen=True)
class Hooks:
    """What Exports asks of the window besides the shell: whether a run is in progress, empty the session, the
    preview's heatmap opacity (0..1), and save the session now."""

    running: Callable[[], bool]
    clear_session: Callable[[], None]
    heat_opacity: Callable[[], float]
    save: Callable[[], None]


class Exports:
    def __init__(
        self,
        workspace: Workspace,
        shell: Shell,
        results: ResultsModel,
        pane: ResultsPane,
        reviewing: ReviewActions,
        hooks: Hooks,
    ) -> None:
        self.workspace, self.shell, self.results, self.pane = workspace, shell, results, pane
        self.reviewing, self.hooks = reviewing, hooks
        self.last_disagreements: list[tuple[str, str | None, str | None]] = []
        self.merge_dialog: MergeDialog | None = None  # the last reply's disagreements, cell by cell

    # --- where to write
    def save_target(self, path: Path | None, title: str, suggested: str, filters: str) -> Path | None:
        """``path``, or the file a save dialog gives; None when cancelled or when writing there would destroy
        something (hv_desktop.core.io.outputs)."""
        if path is None:
            suggested = suggested.replace("/", "_")
            parent = self.shell.dialog_parent()
            name, _ = QFileDialog.getSaveFileName(parent, title, str(Path(self.shell.last_dir()) / suggested), filters)
            if not name:
                return None
            path = Path(name)
        problem = output_problem(path, [r.path for r in self.workspace.results])
        if problem:  # never over one of the session's images, a link or a device
            QMessageBox.warning(self.shell.dialog_parent(), "Choose another file", f"{problem}.\n\nNothing was written.")
            return None
        return path

    def _busy(
        self,
        write: Callable[[], T],
        title: str,
        message: Callable[[Exception], str],
        errors: tuple[type[Exception], ...] = (OSError,),
    ) -> T | None:
        """``write()`` under a wait cursor; a failure is a dialog and None."""
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            return write()
        except errors as exc:
            QMessageBox.critical(self.shell.dialog_parent(), title, message(exc))
            return None
        finally:
            QApplication.restoreOverrideCursor()

    # --- CSV, report, heatmap
    def export_csv(self, path: Path | None = None) -> bool:
        ws, parent = self.workspace, self.shell.dialog_parent()
        if not ws.case_results():
            QMessageBox.information(parent, "Nothing to export", "Classify some images first.")
            return False
        path = self.save_target(path, "Export CSV", f"hematovision-{ws.review.current or 'results'}.csv", "CSV files (*.csv)")
        if path is None:
            return False
        info = ws.model.info if ws.model else None
        case = {"case": ws.review.current} if ws.review.current else {}
        signed = ws.review.signed
        if signed:
            case.update(signed_off_by=signed.operator, signed_off_at=signed.at)
        labels = labels_of(ws.case_results(), ws.model.labels if ws.model else [])
        try:
            write_csv(path, ws.case_results(), labels, info.name if info else "", info.version if info else "", case)
        except OSError as exc:
            QMessageBox.critical(
                parent,
                "Export failed",
                f"Could not write {path}:\n{exc.strerror or exc}\n\nNothing was lost; choose another location.",
            )
            return False
        self.shell.status(f"Exported {len(ws.case_results())} rows to {path}", 8000)
        return True

    def _case_details(self, title: str, info: ReportInfo | None, heatmaps: bool) -> bool | None:
        """The details a report or a package of the current case carries are the case's own (core.io.report.
        case_report_info): the dialog shows the ID, and edits operator and note only while the case is not signed
        off (the edit goes into the case, so what is written and the case agree). ``info`` (scripts, tests) stands
        for the dialog's answers. Whether heatmaps were asked for, or None when cancelled or refused."""
        from hv_desktop.core.io.report import case_report_info

        ws, review, parent = self.workspace, self.workspace.review, self.shell.dialog_parent()
        if not ws.case_results() or ws.model is None or review.current not in review.cases:
            QMessageBox.information(parent, title, "Classify some images first.")
            return None
        current, _ = case_report_info(review, review.current)
        wants = False
        if info is None:
            dlg = dialogs.ask_report_details(parent, current, review.signed is not None, title, heatmaps)
            if dlg is None:
                return None
            info, wants = dlg
        if info.case_id and info.case_id != review.current:
            self.shell.status(f"This is case {review.current}'s own, not {info.case_id}'s: nothing written", 10000)
            return None
        if review.signed is None and (info.operator, info.note) != (current.operator, current.note):
            try:
                ws.set_case_details(info.operator or current.operator, info.note)
            except ValueError as exc:
                QMessageBox.warning(parent, title, str(exc).capitalize() + ".")
                return None
            if info.operator:
                self.shell.settings.setValue("operator", info.operator)
            self.hooks.save()
        return wants

    def export_report(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        """The current case's PDF report, with the case's own details (:meth:`_case_details`)."""
        review = self.workspace.review
        wants = self._case_details("Export report", info, heatmaps=True)
        if wants is None or self.workspace.model is None:
            return False
        heatmaps = wants
        path = self.save_target(path, "Export report", f"hematovision-{review.current}.pdf", "PDF files (*.pdf)")
        if path is None:
            return False
        model, target = self.workspace.model, path
        pages = self._busy(
            lambda: self._write_pdf(target, model, heatmaps),
            "Report not written",
            lambda exc: f"Could not write {target}:\n{exc}",
        )
        if pages is None:
            return False
        self.shell.status(f"Report written: {path} ({pages} pages)", 8000)
        return True

    def _write_pdf(self, path: Path, model: Model, heatmaps: bool) -> int:
        """The current case's report (identity from the case, never from a dialog) written to ``path``."""
        from hv_desktop.core.io.report import build_case_report
        from hv_desktop.gui.cell_mode import count_edge
        from hv_desktop.gui.report import render_pdf

        review, edge = self.workspace.review, count_edge(self.shell.settings)
        extras = self.reviewing.extra_classes()
        report = build_case_report(review, review.current, list(model.labels), model, heatmaps, extras, edge)
        return render_pdf(report, path)

    def save_heatmap(self, path: Path | None = None) -> bool:
        """The current cell with its class-activation overlay, as a PNG (atomic)."""
        from hv_desktop.core.inference.heatmap import heatmap_png

        r, model, parent = self.shell.current_result(), self.workspace.model, self.shell.dialog_parent()
        if r is None or not r.ok or r.no_cell or model is None or not model.cam_name:
            self.shell.status("No heatmap for this cell", 4000)
            return False
        if path is None:
            name, _ = QFileDialog.getSaveFileName(
                parent,
                "Save heatmap",
                f"{r.path.stem}{f'.cell{r.cell_index}' if r.cell_index else ''}.heatmap.png",
                "PNG images (*.png)",
            )
            if not name:
                return False
            path = Path(name)
        try:
            heatmap_png(model, r.path, path, opacity=self.hooks.heat_opacity(), result=r)
        except (ImageError, OSError, ValueError) as exc:
            QMessageBox.critical(parent, "Heatmap not saved", f"Could not save {path}:\n{exc}")
            return False
        self.shell.status(f"Heatmap saved: {path}", 6000)
        return True

    # --- consultation packages (their state is the workspace's: hv_desktop.core.cases.consultation)
    @property
    def consultation(self) -> ConsultationState:
        """The package the session came in (``received``) and the requests it sent (package ID -> case), as the
        workspace holds them; an empty state when there is neither."""
        return self.workspace.consultation or ConsultationState()

    @property
    def sent(self) -> dict[str, str]:
        """Package ID -> case of every request this session sent: a reply is merged only into the case it answers."""
        return dict(self.consultation.sent)

    def export_consultation(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        """Write the session as a consultation package (a reply, when the session came in one)."""
        model = self.workspace.model
        if self._case_details("Export case for consultation", info, heatmaps=False) is None or model is None:
            return False
        kind = "reply" if self.consultation.received else "case"
        target = self.save_target(
            path,
            "Export for consultation",
            f"{self.workspace.review.current or kind}-{kind}.zip",
            "Consultation packages (*.zip)",
        )
        if target is None:
            return False
        written = self._busy(
            lambda: self._write_package(target, model),
            "Not exported",
            lambda exc: f"The package could not be written: {exc}",
            (OSError, PackageError),
        )
        if written is None:
            return False
        self.shell.status(f"Consultation package written: {target}", 8000)
        return True

    def _write_package(self, path: Path, model: Model) -> Path:
        from hv_desktop.core.io.package import write_package
        from hv_desktop.core.io.report import case_report_info

        ws = self.workspace
        info, signed = case_report_info(ws.review, ws.review.current)  # the case's own details, as on its report
        case = {
            "case_id": info.case_id,
            "operator": info.operator,
            "note": info.note,
            "signed_off": signed.as_dict() if signed else None,
        }
        # a request gets its own ID, which its reply carries back (and which this session remembers)
        state = self.consultation
        pid = state.package_id if state.received else uuid.uuid4().hex[:16]
        with tempfile.TemporaryDirectory() as tmp:
            pdf = Path(tmp) / "report.pdf"
            self._write_pdf(pdf, model, False)
            write_package(
                path,
                ws.case_results(),
                model.labels,
                model.info.name,
                model.info.version,
                case,
                kind="reply" if state.received else "request",
                package_id=pid,
                report_pdf=pdf.read_bytes(),
            )
        if not state.received:  # remembered (in the archive) so the reply finds its case
            ws.consultation = replace(state, sent={**state.sent, pid: ws.review.current})
        return path

    def open_package(self, path: Path | None = None, replace: bool | None = None) -> bool:
        """Open a case sent for consultation (it becomes this session, the sender's reviews in their own
        column) or a consultant's reply (merged into the case it answers: :meth:`_merge_reply`). Never while a run
        is in progress: its results would be filed under a case the package replaced."""
        shell, parent = self.shell, self.shell.dialog_parent()
        if self.hooks.running():
            shell.status("A run is in progress: open the package when it has finished (or cancel it)", 8000)
            return False
        if path is None:
            name, _ = QFileDialog.getOpenFileName(
                parent, "Open consultation package", shell.last_dir(), "Consultation packages (*.zip)"
            )
            if not name:
                return False
            path = Path(name)
        dest = shell.data_folder() / "consultations" / f"{path.stem[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                c = read_package(path, dest)
            finally:
                QApplication.restoreOverrideCursor()
        except PackageError as exc:
            QMessageBox.warning(parent, "Package refused", f"{path.name}: {exc}")
            return False
        if c.kind == "reply":
            return self._merge_reply(path, c)
        if self.workspace.results and replace is None:
            replace = dialogs.confirm(
                parent,
                "Open consultation",
                "Open the package as a new session? The current results are cleared (export them first if needed).",
            )
        if self.workspace.results and not replace:
            return False
        self.hooks.clear_session()
        self._open_case(c)
        return True

    def _merge_reply(self, path: Path, c: Consultation) -> bool:
        """A reply, checked against the request it answers (core.io.package.reply_case), its disagreements listed cell
        by cell in a non-modal dialog (gui.consult_dialog) that shows each cell and accepts or keeps it."""
        results = self.workspace.results
        try:
            case = reply_case(c, self.consultation.sent, results)
        except PackageError as exc:
            QMessageBox.warning(self.shell.dialog_parent(), "Reply not merged", f"{path.name}: {exc}")
            return False
        cells = [r for r in results if r.case == case]
        self.last_disagreements = disagreements(cells, c)
        differing = [(cells[i], theirs) for i, theirs in disagreeing(cells, c)]
        summary = reply_summary(cells, c, case)
        if self.merge_dialog is not None:
            self.merge_dialog.close()
        self.merge_dialog = MergeDialog(self.shell, self.workspace, self.pane, self.reviewing, case, differing, summary)
        self.merge_dialog.show()
        self.shell.status(f"Consultant's reply for case {case}: {len(differing)} disagreement(s)", 10000)
        return True

    def _open_case(self, c: Consultation) -> None:
        ws = self.workspace
        ws.consultation = ConsultationState(  # its listeners show the sender's reviews
            c.kind, c.package_id, dict(c.case), dict(c.sender_labels), dict(self.consultation.sent)
        )
        # Texts from another lab's package fit this lab's limits (shortened, never refused: the session is already
        # cleared for it, issue 30)
        cid = ws.new_case(
            " ".join(str(c.case.get("case_id") or c.package_id or "Consultation").split())[: MAX_CASE_ID - 10],
            str(c.case.get("operator") or "")[:MAX_NAME],
            str(c.case.get("note") or "")[:MAX_NOTE],
        )
        ws.add_results(c.results, cid)  # its listeners show the case
        ws.queue.remember(c.results)
        self.hooks.save()
        self.shell.status(
            f"Consultation {c.case.get('case_id') or c.package_id}: the sender's reviews "
            "are in 'Sender's review'; export your reply with File ▸ Export Case for "
            "Consultation",
            12000,
        )

    def show_consultation(self) -> None:
        """Show the consultation the workspace holds (opened, restored from the archive, or gone)."""
        state = self.consultation
        self.results.sender_labels = dict(state.sender_labels) if state.received else {}
        self.pane.show_sender(state.received)
