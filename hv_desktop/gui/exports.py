"""What the window writes and reads besides its autosave: the CSV, the PDF report, the heatmap PNG and
consultation packages (a case sent out, or a consultant's reply). Writing goes through hv_desktop.core (and
the report renderer); this module asks where and says what happened."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from hv_desktop.core.export import labels_of, write_csv
from hv_desktop.core.model import Model
from hv_desktop.core.outputs import output_problem
from hv_desktop.core.package import (
    Consultation,
    PackageError,
    disagreeing,
    disagreements,
    read_package,
    reply_case,
    reply_summary,
)
from hv_desktop.core.preprocess import ImageError
from hv_desktop.core.review import MAX_CASE_ID, MAX_NAME, MAX_NOTE
from hv_desktop.gui import dialogs

if TYPE_CHECKING:
    from hv_desktop.gui.consult_dialog import MergeDialog
    from hv_desktop.gui.main_window import MainWindow
    from hv_desktop.gui.report import ReportInfo

T = TypeVar("T")


class Exports:
    def __init__(self, w: MainWindow) -> None:
        self.w = w
        self.consultation: dict[str, Any] | None = None  # {"kind", "package_id", "case"} when the session came in one
        self.last_disagreements: list[tuple[str, str | None, str | None]] = []
        #: package ID -> case, of every request this session sent: a reply is merged only into the case it answers
        self.sent: dict[str, str] = {}
        self.merge_dialog: MergeDialog | None = None  # the last reply's disagreements, cell by cell

    # --- where to write
    def save_target(self, path: Path | None, title: str, suggested: str, filters: str) -> Path | None:
        """``path``, or the file a save dialog gives; None when cancelled or when writing there would destroy
        something (hv_desktop.core.outputs)."""
        if path is None:
            suggested = suggested.replace("/", "_")
            name, _ = QFileDialog.getSaveFileName(self.w, title, str(Path(self.w.last_dir()) / suggested), filters)
            if not name:
                return None
            path = Path(name)
        problem = output_problem(path, [r.path for r in self.w.results.results])
        if problem:  # never over one of the session's images, a link or a device
            QMessageBox.warning(self.w, "Choose another file", f"{problem}.\n\nNothing was written.")
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
            QMessageBox.critical(self.w, title, message(exc))
            return None
        finally:
            QApplication.restoreOverrideCursor()

    # --- CSV, report, heatmap
    def export_csv(self, path: Path | None = None) -> bool:
        w = self.w
        if not w.case_results():
            QMessageBox.information(w, "Nothing to export", "Classify some images first.")
            return False
        path = self.save_target(path, "Export CSV", f"hematovision-{w.review.current or 'results'}.csv", "CSV files (*.csv)")
        if path is None:
            return False
        info = w.model.info if w.model else None
        case = {"case": w.review.current} if w.review.current else {}
        if w.signed:
            case.update(signed_off_by=w.signed.operator, signed_off_at=w.signed.at)
        labels = labels_of(w.case_results(), w.model.labels if w.model else [])
        try:
            write_csv(path, w.case_results(), labels, info.name if info else "", info.version if info else "", case)
        except OSError as exc:
            QMessageBox.critical(
                w,
                "Export failed",
                f"Could not write {path}:\n{exc.strerror or exc}\n\nNothing was lost; choose another location.",
            )
            return False
        w.statusBar().showMessage(f"Exported {len(w.case_results())} rows to {path}", 8000)
        return True

    def _case_details(self, title: str, info: ReportInfo | None, heatmaps: bool) -> bool | None:
        """The details a report or a package of the current case carries are the case's own (core.report.
        case_report_info): the dialog shows the ID, and edits operator and note only while the case is not signed
        off (the edit goes into the case, so what is written and the case agree). ``info`` (scripts, tests) stands
        for the dialog's answers. Whether heatmaps were asked for, or None when cancelled or refused."""
        from hv_desktop.core.report import case_report_info

        w, review = self.w, self.w.review
        if not w.case_results() or w.model is None or review.current not in review.cases:
            QMessageBox.information(w, title, "Classify some images first.")
            return None
        current, _ = case_report_info(review, review.current)
        wants = False
        if info is None:
            dlg = dialogs.ask_report_details(w, current, w.signed is not None, title, heatmaps)
            if dlg is None:
                return None
            info, wants = dlg
        if info.case_id and info.case_id != review.current:
            w.statusBar().showMessage(f"This is case {review.current}'s own, not {info.case_id}'s: nothing written", 10000)
            return None
        if w.signed is None and (info.operator, info.note) != (current.operator, current.note):
            try:
                w.workspace.set_case_details(info.operator or current.operator, info.note)
            except ValueError as exc:
                QMessageBox.warning(w, title, str(exc).capitalize() + ".")
                return None
            if info.operator:
                w.settings.setValue("operator", info.operator)
            w.autosave()
        return wants

    def export_report(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        """The current case's PDF report, with the case's own details (:meth:`_case_details`)."""
        w, review = self.w, self.w.review
        wants = self._case_details("Export report", info, heatmaps=True)
        if wants is None or w.model is None:
            return False
        heatmaps = wants
        path = self.save_target(path, "Export report", f"hematovision-{review.current}.pdf", "PDF files (*.pdf)")
        if path is None:
            return False
        model, target = w.model, path
        pages = self._busy(
            lambda: self._write_pdf(target, model, heatmaps),
            "Report not written",
            lambda exc: f"Could not write {target}:\n{exc}",
        )
        if pages is None:
            return False
        w.statusBar().showMessage(f"Report written: {path} ({pages} pages)", 8000)
        return True

    def _write_pdf(self, path: Path, model: Model, heatmaps: bool) -> int:
        """The current case's report (identity from the case, never from a dialog) written to ``path``."""
        from hv_desktop.core.report import build_case_report
        from hv_desktop.gui.report import render_pdf

        w = self.w
        report = build_case_report(w.review, w.review.current, list(model.labels), model, heatmaps, w.extra_classes())
        return render_pdf(report, path)

    def save_heatmap(self, path: Path | None = None) -> bool:
        """The current cell with its class-activation overlay, as a PNG (atomic)."""
        from hv_desktop.core.heatmap import heatmap_png

        w = self.w
        r, _ = w.results_pane.current()
        if r is None or not r.ok or w.model is None or not w.model.cam_name:
            w.statusBar().showMessage("No heatmap for this cell", 4000)
            return False
        if path is None:
            name, _ = QFileDialog.getSaveFileName(
                w, "Save heatmap", str(r.path.with_suffix(".heatmap.png").name), "PNG images (*.png)"
            )
            if not name:
                return False
            path = Path(name)
        try:
            heatmap_png(w.model, r.path, path, opacity=w.preview_pane.heat_opacity.value() / 100, result=r)
        except (ImageError, OSError, ValueError) as exc:
            QMessageBox.critical(w, "Heatmap not saved", f"Could not save {path}:\n{exc}")
            return False
        w.statusBar().showMessage(f"Heatmap saved: {path}", 6000)
        return True

    # --- consultation packages
    def export_consultation(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        """Write the session as a consultation package (a reply, when the session came in one)."""
        w = self.w
        if self._case_details("Export case for consultation", info, heatmaps=False) is None or w.model is None:
            return False
        kind = "reply" if self.consultation else "case"
        target = self.save_target(
            path, "Export for consultation", f"{w.review.current or kind}-{kind}.zip", "Consultation packages (*.zip)"
        )
        if target is None:
            return False
        model = w.model
        written = self._busy(
            lambda: self._write_package(target, model),
            "Not exported",
            lambda exc: f"The package could not be written: {exc}",
            (OSError, PackageError),
        )
        if written is None:
            return False
        w.statusBar().showMessage(f"Consultation package written: {target}", 8000)
        return True

    def _write_package(self, path: Path, model: Model) -> Path:
        from hv_desktop.core.package import write_package
        from hv_desktop.core.report import case_report_info

        w = self.w
        info, signed = case_report_info(w.review, w.review.current)  # the case's own details, as on its report
        case = {
            "case_id": info.case_id,
            "operator": info.operator,
            "note": info.note,
            "signed_off": signed.as_dict() if signed else None,
        }
        # a request gets its own ID, which its reply carries back (and which this session remembers)
        pid = (self.consultation or {}).get("package_id", "") or uuid.uuid4().hex[:16]
        with tempfile.TemporaryDirectory() as tmp:
            pdf = Path(tmp) / "report.pdf"
            self._write_pdf(pdf, model, False)
            write_package(
                path,
                w.case_results(),
                model.labels,
                model.info.name,
                model.info.version,
                case,
                kind="reply" if self.consultation else "request",
                package_id=pid,
                report_pdf=pdf.read_bytes(),
            )
        if not self.consultation:
            self.sent[pid] = w.review.current
            w.autosave()
        return path

    def open_package(self, path: Path | None = None, replace: bool | None = None) -> bool:
        """Open a case sent for consultation (it becomes this session, the sender's reviews in their own
        column) or a consultant's reply (merged into the case it answers: :meth:`_merge_reply`). Never while a run
        is in progress: its results would be filed under a case the package replaced."""
        w = self.w
        if w.is_running():
            w.statusBar().showMessage("A run is in progress: open the package when it has finished (or cancel it)", 8000)
            return False
        if path is None:
            name, _ = QFileDialog.getOpenFileName(w, "Open consultation package", w.last_dir(), "Consultation packages (*.zip)")
            if not name:
                return False
            path = Path(name)
        dest = w.data_folder() / "consultations" / f"{path.stem[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                c = read_package(path, dest)
            finally:
                QApplication.restoreOverrideCursor()
        except PackageError as exc:
            QMessageBox.warning(w, "Package refused", f"{path.name}: {exc}")
            return False
        if c.kind == "reply":
            return self._merge_reply(path, c)
        if w.results.results and replace is None:
            replace = dialogs.confirm(
                w,
                "Open consultation",
                "Open the package as a new session? The current results are cleared (export them first if needed).",
            )
        if w.results.results and not replace:
            return False
        w.clear_session()
        self._open_case(c)
        return True

    def _merge_reply(self, path: Path, c: Consultation) -> bool:
        """A reply, checked against the request it answers (core.package.reply_case), its disagreements listed cell
        by cell in a non-modal dialog (gui.consult_dialog) that shows each cell and accepts or keeps it."""
        from hv_desktop.gui.consult_dialog import MergeDialog

        w = self.w
        try:
            case = reply_case(c, self.sent, w.review.results)
        except PackageError as exc:
            QMessageBox.warning(w, "Reply not merged", f"{path.name}: {exc}")
            return False
        cells = [r for r in w.review.results if r.case == case]
        self.last_disagreements = disagreements(cells, c)
        differing = [(cells[i], theirs) for i, theirs in disagreeing(cells, c)]
        summary = reply_summary(cells, c, case)
        if self.merge_dialog is not None:
            self.merge_dialog.close()
        self.merge_dialog = MergeDialog(w, case, differing, summary)
        self.merge_dialog.show()
        w.statusBar().showMessage(f"Consultant's reply for case {case}: {len(differing)} disagreement(s)", 10000)
        return True

    def _open_case(self, c: Consultation) -> None:
        w = self.w
        w.results.sender_labels = dict(c.sender_labels)
        self.consultation = {"kind": c.kind, "package_id": c.package_id, "case": c.case}
        # Texts from another lab's package fit this lab's limits (shortened, never refused: the session is already
        # cleared for it, issue 30)
        cid = w.workspace.new_case(
            " ".join(str(c.case.get("case_id") or c.package_id or "Consultation").split())[: MAX_CASE_ID - 10],
            str(c.case.get("operator") or "")[:MAX_NAME],
            str(c.case.get("note") or "")[:MAX_NOTE],
        )
        w.workspace.add_results(c.results, cid)
        w.refresh_cases()
        w.runner.queue.remember(c.results)
        w.results_pane.show_sender(True)
        w.show_signed()
        w.update_differential()
        w.autosave()
        w.statusBar().showMessage(
            f"Consultation {c.case.get('case_id') or c.package_id}: the sender's reviews "
            "are in 'Sender's review'; export your reply with File ▸ Export Case for "
            "Consultation",
            12000,
        )

    def to_extra(self) -> dict[str, Any] | None:
        """The consultation as the session file keeps it: the requests sent, and the package the session came in
        (None: neither)."""
        sent = {"sent": dict(self.sent)} if self.sent else {}
        if not self.consultation:
            return sent or None
        return dict(self.consultation, sender_labels=dict(self.w.results.sender_labels), **sent)

    def restore(self, c: object) -> None:
        """The consultation this session came in, read back from the session file, type-checked."""
        if not isinstance(c, dict):
            return
        sent = c.get("sent")
        if isinstance(sent, dict):
            self.sent = {str(k)[:64]: v for k, v in list(sent.items())[:100_000] if isinstance(v, str)}
        if not isinstance(c.get("sender_labels"), dict):
            return
        labels = {str(k)[:64]: (v if isinstance(v, str) else None) for k, v in list(c["sender_labels"].items())[:100_000]}
        self.w.results.sender_labels = labels
        self.consultation = {
            "kind": str(c.get("kind", "request")),
            "package_id": str(c.get("package_id", ""))[:64],
            "case": c.get("case") if isinstance(c.get("case"), dict) else {},
        }
        self.w.results_pane.show_sender(True)
