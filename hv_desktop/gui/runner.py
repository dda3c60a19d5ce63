"""Classification runs from the window: the queue, the background job, progress in the status bar, the model
in use (load, site model, shipped model; the adapt dialog and practice mode use it) and the watch folder.
The rules live in hv_desktop.core.runs and hv_desktop.core.folder_watch; this module routes them to widgets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox, QProgressBar, QPushButton

from hv_desktop.core.folder_watch import WatchedFolder
from hv_desktop.core.model import Model, ModelError, bundled_model_path
from hv_desktop.core.result import Result
from hv_desktop.core.review import lab_hint
from hv_desktop.core.runs import RunQueue, case_name
from hv_desktop.gui.worker import ClassifyJob

if TYPE_CHECKING:
    from hv_desktop.gui.adapt_dialog import AdaptDialog
    from hv_desktop.gui.main_window import MainWindow
    from hv_desktop.gui.practice_window import PracticeWindow

log = logging.getLogger("hematovision")
TITLE = "HematoVision — white blood cell classification"


class Runner(QObject):
    def __init__(self, w: MainWindow) -> None:
        super().__init__(w)
        self.w = w
        self.queue = RunQueue()
        self.job: ClassifyJob | None = None
        self._reclassify_after = False
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.watched = WatchedFolder()
        self.fs_watcher = QFileSystemWatcher(self)
        self.fs_watcher.directoryChanged.connect(lambda _: self.poll_watch())
        self.watch_timer = QTimer(self, interval=250)
        self.watch_timer.timeout.connect(self.poll_watch)

    # --- runs
    def classify(self, paths: list[Path]) -> None:
        """Queue paths; the run starts now or when the current one ends."""
        w = self.w
        if w.model is None:
            QMessageBox.warning(w, "No model", "Load a model first (File ▸ Load Model…).")
            return
        for p in paths:
            if p.is_dir():
                w.remember_recent(p)
        if self.job is not None:
            self.queue.pending.append(paths)
            w.statusBar().showMessage("Queued; it starts when the current run ends", 4000)
            return
        if w.persistence.saver.restoring:  # the previous session first: a run now could shadow its rows (issue 30)
            self.queue.pending.append(paths)
            w.statusBar().showMessage("Queued; it starts when the previous session is restored", 6000)
            return
        self.start(paths, w.model)

    def start_pending(self) -> None:
        """Start what was queued while the previous session was being restored."""
        if self.job is None and self.queue.pending and self.w.model is not None:
            self.start(self.queue.pending.pop(0), self.w.model)

    def _case_for(self, paths: list[Path]) -> tuple[str, str] | None:
        """The case a run of new images adds to, decided when it starts: the current one, or a new case when that
        is signed off (or there is none). Said in the status line: a camera's images are never turned away and
        never get a modal box each (issue 30)."""
        w = self.w
        before = w.review.current
        try:
            cid, opened = w.workspace.case_for_new_images(case_name(paths))
        except ValueError as exc:  # the session holds as many cases as it may
            w.statusBar().showMessage(f"Not classified: {exc}", 15000)
            return None
        note = ""
        if opened:
            w.refresh_cases()
            if before in w.review.signoffs:
                note = f"case {before} is signed off: the new images went to a new case, {cid}"
                w.statusBar().showMessage(note[0].upper() + note[1:], 15000)
        return cid, note

    def start(self, paths: list[Path], model: Model) -> None:
        case, note = self.w.review.current, ""
        if not self.queue.reclassifying:
            chosen = self._case_for(paths)
            if chosen is None:
                self.w.runFinished.emit()
                return
            case, note = chosen
        self.queue.begin(case, note)
        self.job = ClassifyJob(model, paths, self)
        self.job.worker.total.connect(self._on_total)
        self.job.worker.results.connect(self._on_results)
        self.job.worker.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.progress_label.setText("Scanning…")
        self.w.update_actions()
        self.job.start()

    def _on_total(self, n: int) -> None:
        self.queue.total = n
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(0)

    def _on_results(self, batch: list[Result]) -> None:
        w = self.w
        if self.queue.reclassifying:
            self.queue.done += len(batch)
            w.results.rows_changed(w.workspace.apply_reclassified(batch))
        else:
            if self.queue.case in w.review.signoffs or self.queue.case not in w.review.cases:
                # signed off (or gone) while this run was adding to it: the rest goes to a case of its own
                self.queue.case, self.queue.note = self._case_for([r.path for r in batch]) or ("", "")
            kept = [r for r in batch if self.watched.settled(r)]  # a camera file caught mid-write waits
            kept = [r for r in kept if not self._replaced_grown(r)]  # or, caught just before its end, is replaced
            self.queue.done += len(batch) - len(kept)
            # the same file opened again in its case keeps its row and review
            w.workspace.add_results(self.queue.fresh(kept), self.queue.case)
            w.results_pane.select_first_if_none()
            w.results_pane.empty_hint.hide()
        self.progress.setValue(self.queue.done)
        self.progress_label.setText(self.queue.progress_text())
        w.changed(soon=True)

    def _on_finished(self, cancelled: bool, error: str) -> None:
        w, job, self.job = self.w, self.job, None
        self.queue.reclassifying = False
        if job is not None:
            job.wait(5000)
            job.deleteLater()
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_label.setText("")
        hint = None if cancelled or w.model is None else lab_hint(w.case_results(), bool(w.model.info.site_adaptation))
        message = self.queue.finish_message(cancelled)
        w.statusBar().showMessage(f"{message} · {hint}" if hint else message, 30000 if hint else 8000)
        if error:
            log.error("run failed: %s", error)
            QMessageBox.critical(w, "Classification stopped", f"The run stopped: {error}\n\nResults so far are kept.")
        w.update_differential()
        w.autosave()
        w.update_actions()
        if cancelled:  # camera files of the dropped runs go back to the watcher, to be classified when it looks again
            self.watched.release()
        nxt = self.queue.next_run(cancelled)
        if nxt is not None and w.model is not None:
            self.start(nxt, w.model)
        elif self._reclassify_after:
            # a site model was switched to while this run used the old one: now every result gets the new one
            self._reclassify_after = False
            self.reclassify()
        else:
            w.runFinished.emit()

    def _replaced_grown(self, r: Result) -> bool:
        """A watched file that grew after its row was shown: its row takes the complete file's result."""
        old = self.watched.completed(r)
        if old is None:
            return False
        row = self.w.review.replace_grown(r, old)
        if row is None:
            return False
        self.w.results.rows_changed([row])
        self.w.workspace.archive_reclassified([row])
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Cancelling…")

    def reclassify(self) -> None:
        """Run every classified file outside a signed-off case through the current model again, in the
        background; reviews are kept, and signed-off cases keep the results they were signed with."""
        w = self.w
        unlocked = w.review.unlocked_indices()
        kept = sum(1 for r in w.results.results if r.ok) - sum(1 for i in unlocked if w.results.results[i].ok)
        paths = list(dict.fromkeys(w.results.results[i].path for i in unlocked if w.results.results[i].ok))
        if kept:
            w.statusBar().showMessage(
                f"{kept} cells of signed-off cases keep the results of the model they were signed with", 10000
            )
        if not paths or w.model is None or self.job is not None:
            return
        self.queue.reclassifying = True
        self.start(paths, w.model)

    def stop(self) -> None:
        """On close: the run is cancelled and waited for."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10000)

    # --- the model
    def load_model(self, path: Path, quiet: bool = False) -> bool:
        w = self.w
        try:
            model = Model(path)
        except ModelError as exc:
            log.warning("model refused: %s", exc)
            if not quiet:
                QMessageBox.critical(w, "Model not loaded", f"{exc}\n\nThe current model is still in use.")
            else:
                w.statusBar().showMessage(f"No model: {exc}")
            if w.model is None:
                w.model_label.setText("No model loaded")
            w.update_actions()
            return False
        w.model = model
        w.model_label.setText(f"Model: {model.info.name} v{model.info.version}")
        w.preview_pane.set_model(model)
        w.labels_changed()
        w.update_actions()
        return True

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Load model", "", "ONNX models (*.onnx);;All files (*)")
        if path and self.load_model(Path(path)) and self.w.model is not None:
            self.w.statusBar().showMessage(f"Loaded {self.w.model.info.name} v{self.w.model.info.version}", 5000)

    def use_site_model(self, path: Path) -> None:
        """Switch to a site model and re-classify the session; a run in progress (e.g. the watch folder's) finishes
        with the model it started with, and the re-classification follows it."""
        if self.load_model(path) and self.w.model is not None:
            self.w.statusBar().showMessage(f"Using {self.w.model.info.name}; re-classifying this session", 8000)
            if self.job is not None:
                self._reclassify_after = True
            else:
                self.reclassify()

    def use_shipped_model(self) -> None:
        if self.job is not None:
            return
        if self.load_model(bundled_model_path()) and self.w.model is not None:
            info = self.w.model.info
            self.w.statusBar().showMessage(f"Using the shipped model {info.name} v{info.version}", 8000)
            self.reclassify()

    def adapt_to_lab(self) -> AdaptDialog | None:
        """Open the adapt dialog on the session's reviewed cells; a saved site model is loaded at once."""
        from hv_desktop.core.adapt import LabelledCell
        from hv_desktop.gui.adapt_dialog import AdaptDialog

        w = self.w
        if w.model is None or self.job is not None:
            return None
        if not w.model.info.embedding_output:
            QMessageBox.information(
                w,
                "Adapt to This Lab",
                "This model cannot be adapted (it has no embedding output). Review ▸ Use Shipped Model first.",
            )
            return None
        cells = [LabelledCell(r.path, r.reviewer_label) for r in w.results.results if r.ok and r.reviewer_label]
        dlg = AdaptDialog(w.model, cells, w.data_folder(), w)
        dlg.modelSaved.connect(self.use_site_model)
        dlg.open()
        return dlg

    def match_magnification(self) -> AdaptDialog | None:
        """Open the magnification dialog on the current case's images; a saved site model is loaded at once."""
        from hv_desktop.gui.adapt_dialog import MagnificationDialog

        w = self.w
        if w.model is None or self.job is not None:
            return None
        if w.model.info.preprocessing.crop != "cell":
            QMessageBox.information(
                w,
                "Match Lab Magnification",
                "This model does not crop a square around the cell, so there is no magnification to match.",
            )
            return None
        images = [r.path for r in w.case_results() if r.ok]
        dlg = MagnificationDialog(w.model, images, w.data_folder(), w)
        dlg.modelSaved.connect(self.use_site_model)
        dlg.open()
        return dlg

    def open_practice(self, folder: Path | None = None) -> PracticeWindow | None:
        from hv_desktop.gui.practice_window import PracticeWindow

        w = self.w
        if w.model is None:
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(w, "Practice set: a folder with one subfolder per class", w.last_dir())
            if not chosen:
                return None
            folder = Path(chosen)
        try:
            win = PracticeWindow(w.model, folder, w)
        except (ValueError, OSError) as exc:
            QMessageBox.warning(w, "Practice set", str(exc))
            return None
        win.show()
        return win

    # --- the watch folder
    def toggle_watch(self, folder: Path | None = None) -> None:
        w = self.w
        if self.watched.folder is not None:
            self.fs_watcher.removePaths(self.fs_watcher.directories())
            self.watch_timer.stop()
            w.statusBar().showMessage(f"Stopped watching {self.watched.folder}", 5000)
            self.watched.stop()
            w.commands.watch.setChecked(False)
            w.setWindowTitle(TITLE)
            return
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(w, "Watch folder", w.last_dir())
            folder = Path(chosen) if chosen else None
        if folder is None or w.model is None:
            w.commands.watch.setChecked(False)
            return
        self.watched.start(folder)
        self.fs_watcher.addPath(str(folder))
        self.watch_timer.start()
        w.commands.watch.setChecked(True)
        w.setWindowTitle(f"HematoVision — watching {folder}")
        w.statusBar().showMessage(f"Watching {folder}: new images are classified as they arrive", 8000)

    def poll_watch(self) -> None:
        ready = self.watched.poll()
        if ready:
            self.w.classify(ready)
