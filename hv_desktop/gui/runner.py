"""Classification runs from the window: the queue, the background job, progress in the status bar, the model
in use (load, site model, shipped model; the adapt dialog and practice mode use it) and the watch folder.
The rules live in hv_desktop.core.cases.runs and hv_desktop.core.io.folder_watch; this module routes them to widgets.
It works on the workspace (the state) and a shell (status line, dialog parent); what the window shows after a run
follows from its signals and the workspace's changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox, QProgressBar, QPushButton

from hv_desktop.core.cases.flags import lab_hint
from hv_desktop.core.cases.runs import case_name, files_in
from hv_desktop.core.inference.model import Model, ModelError, bundled_model_path
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.folder_watch import WatchedFolder
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui.cell_mode import camera_fields
from hv_desktop.gui.shell import Shell
from hv_desktop.gui.worker import ClassifyJob, Kinds

if TYPE_CHECKING:
    from hv_desktop.gui.practice_window import PracticeWindow

log = logging.getLogger("hematovision")
TITLE = "HematoVision — white blood cell classification"


class Runner(QObject):
    """``restoring()``: whether the previous session is still coming back (a run waits for it); by default the
    workspace's own flag."""

    runFinished = Signal()  # the queue is done: review keys work at once
    runEnded = Signal()  # one run ended: the differential, the autosave and the actions follow
    rowsAdded = Signal()  # a run's cells joined the table
    actionsChanged = Signal()  # what the enabled actions depend on changed (a run started, a model refused)
    watchChanged = Signal(str)  # the folder now watched ("": none)
    matchOffered = Signal()  # the offer after a run that looked like another lab's images was taken

    def __init__(self, workspace: Workspace, shell: Shell, restoring: Callable[[], bool] | None = None) -> None:
        super().__init__(shell.dialog_parent())
        self.workspace, self.shell = workspace, shell
        self.restoring = restoring or (lambda: workspace.restoring)
        self.queue = workspace.queue
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
        self.model_label = QLabel("")
        # issue 26 item 2: a run that looks like another lab's images (core.cases.flags.lab_hint) offers calibrate
        self.offer_button = QPushButton("Match Lab Magnification…")
        self.offer_button.setToolTip(
            "Most cells were flagged: these images probably come from a lab the model was not trained on. Measures "
            "the lab's magnification and colours from these images (no reviews needed) and says what the model will "
            "then flag."
        )
        self.offer_button.clicked.connect(self._offer_taken)
        self.offer_button.hide()
        self.watched = WatchedFolder()
        self.fs_watcher = QFileSystemWatcher(self)
        self.fs_watcher.directoryChanged.connect(lambda _: self.poll_watch())
        self.watch_timer = QTimer(self, interval=250)
        self.watch_timer.timeout.connect(self.poll_watch)

    @property
    def model(self) -> Model | None:
        return self.workspace.model

    def is_running(self) -> bool:
        return self.job is not None

    def _offer_taken(self) -> None:
        self.offer_button.hide()
        self.matchOffered.emit()

    # --- runs
    def classify(self, paths: list[Path]) -> None:
        """Queue paths; the run starts now or when the current one ends."""
        shell = self.shell
        if self.model is None:
            QMessageBox.warning(shell.dialog_parent(), "No model", "Load a model first (File ▸ Load Model…).")
            return
        for p in paths:
            if p.is_dir():
                shell.remember_recent(p)
        if self.job is not None:
            self.queue.pending.append(paths)
            shell.status("Queued; it starts when the current run ends", 4000)
            return
        if self.restoring():  # the previous session first: a run now could shadow its rows (issue 30)
            self.queue.pending.append(paths)
            shell.status("Queued; it starts when the previous session is restored", 6000)
            return
        self.start(paths, self.model)

    def start_pending(self) -> None:
        """Start what was queued while the previous session was being restored."""
        if self.job is None and self.queue.pending and self.model is not None:
            self.start(self.queue.pending.pop(0), self.model)

    def _case_for(self, paths: list[Path]) -> tuple[str, str] | None:
        """The case a run of new images adds to, decided when it starts: the current one, or a new case when that
        is signed off (or there is none). Said in the status line: a camera's images are never turned away and
        never get a modal box each (issue 30)."""
        review = self.workspace.review
        before = review.current
        try:
            cid, opened = self.workspace.case_for_new_images(case_name(paths))  # a new case: listeners told
        except ValueError as exc:  # the session holds as many cases as it may
            self.shell.status(f"Not classified: {exc}", 15000)
            return None
        note = ""
        if opened and before in review.signoffs:
            note = f"case {before} is signed off: the new images went to a new case, {cid}"
            self.shell.status(note[0].upper() + note[1:], 15000)
        return cid, note

    def start(self, paths: list[Path], model: Model, kinds: Kinds | None = None) -> None:
        """Run ``paths`` (as the Cases menu says the images are; a re-classification: each file as ``kinds``)."""
        case, note = self.workspace.review.current, ""
        if not self.queue.reclassifying:
            chosen = self._case_for(paths)
            if chosen is None:
                self.runFinished.emit()
                return
            case, note = chosen
        self.queue.begin(case, note)
        self.offer_button.hide()
        self.job = ClassifyJob(model, paths, self, kinds or camera_fields(self.shell.settings))
        self.job.worker.total.connect(self._on_total)
        self.job.worker.results.connect(self._on_results)
        self.job.worker.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.progress_label.setText("Scanning…")
        self.actionsChanged.emit()
        self.job.start()

    def _on_total(self, n: int) -> None:
        self.queue.total = n
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(0)

    def _on_results(self, batch: list[Result]) -> None:
        """A batch of the run: into the workspace, whose listeners show it (and save it, batched)."""
        review = self.workspace.review
        if self.queue.reclassifying:
            self.queue.done += files_in(batch)
            self.workspace.apply_reclassified(batch)
        else:
            if self.queue.case in review.signoffs or self.queue.case not in review.cases:
                # signed off (or gone) while this run was adding to it: the rest goes to a case of its own
                self.queue.case, self.queue.note = self._case_for([r.path for r in batch]) or ("", "")
            kept = [r for r in batch if self.watched.settled(r)]  # a camera file caught mid-write waits
            kept = [r for r in kept if not self._replaced_grown(r)]  # or, caught just before its end, is replaced
            self.queue.done += files_in(batch) - files_in(kept)
            # the same file opened again in its case keeps its row and review
            self.workspace.add_results(self.queue.fresh(kept), self.queue.case)
            self.rowsAdded.emit()
        self.progress.setValue(self.queue.done)
        self.progress_label.setText(self.queue.progress_text())

    def _on_finished(self, cancelled: bool, error: str) -> None:
        job, self.job = self.job, None
        model = self.model
        self.queue.reclassifying = False
        if job is not None:
            job.wait(5000)
            job.deleteLater()
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_label.setText("")
        hint = None if cancelled or model is None else lab_hint(self.workspace.case_results(), bool(model.info.site_adaptation))
        message = self.queue.finish_message(cancelled)
        self.shell.status(f"{message} · {hint}" if hint else message, 30000 if hint else 8000)
        self.offer_button.setVisible(hint is not None)
        if error:
            log.error("run failed: %s", error)
            QMessageBox.critical(
                self.shell.dialog_parent(), "Classification stopped", f"The run stopped: {error}\n\nResults so far are kept."
            )
        self.runEnded.emit()
        if cancelled:  # camera files of the dropped runs go back to the watcher, to be classified when it looks again
            self.watched.release()
        nxt = self.queue.next_run(cancelled)
        if nxt is not None and self.model is not None:
            self.start(nxt, self.model)
        elif self._reclassify_after:
            # a site model was switched to while this run used the old one: now every result gets the new one
            self._reclassify_after = False
            self.reclassify()
        else:
            self.runFinished.emit()

    def _replaced_grown(self, r: Result) -> bool:
        """A watched file that grew after its row was shown: its row takes the complete file's result."""
        old = self.watched.completed(r)
        if old is None:
            return False
        row = self.workspace.review.replace_grown(r, old)
        if row is None:
            return False
        self.workspace.archive_reclassified([row])  # its listeners repaint the row
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Cancelling…")

    def reclassify(self) -> None:
        """Run every classified file outside a signed-off case through the current model again, in the
        background; reviews are kept, and signed-off cases keep the results they were signed with."""
        results = self.workspace.results
        unlocked = self.workspace.review.unlocked_indices()
        kept = sum(1 for r in results if r.ok) - sum(1 for i in unlocked if results[i].ok)
        paths = list(dict.fromkeys(results[i].path for i in unlocked if results[i].ok))
        cells = [results[i] for i in unlocked if results[i].ok]
        fields = frozenset(r.path for r in cells if r.cell_index is not None or r.no_cell)
        kinds = Kinds(fields, frozenset(r.path for r in cells if r.cell_index is None and not r.no_cell))
        if kept:
            self.shell.status(f"{kept} cells of signed-off cases keep the results of the model they were signed with", 10000)
        if not paths or self.model is None or self.job is not None:
            return
        self.queue.reclassifying = True
        self.start(paths, self.model, kinds)

    def stop(self) -> None:
        """On close: the run is cancelled and waited for."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10000)

    # --- the model
    def load_model(self, path: Path, quiet: bool = False) -> bool:
        """Load and use the model at ``path`` (the workspace tells its listeners); a refused file keeps the one in use."""
        try:
            model = Model(path)
        except ModelError as exc:
            log.warning("model refused: %s", exc)
            if not quiet:
                QMessageBox.critical(
                    self.shell.dialog_parent(), "Model not loaded", f"{exc}\n\nThe current model is still in use."
                )
            else:
                self.shell.status(f"No model: {exc}", 0)
            if self.model is None:
                self.model_label.setText("No model loaded")
            self.actionsChanged.emit()
            return False
        self.model_label.setText(f"Model: {model.info.name} v{model.info.version}")
        self.offer_button.hide()  # a new model (a site model, or back to the shipped one): the offer is stale
        self.workspace.set_model(model)
        return True

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.shell.dialog_parent(), "Load model", "", "ONNX models (*.onnx);;All files (*)")
        if path and self.load_model(Path(path)) and self.model is not None:
            self.shell.status(f"Loaded {self.model.info.name} v{self.model.info.version}", 5000)

    def use_site_model(self, path: Path) -> None:
        """Switch to a site model and re-classify the session; a run in progress (e.g. the watch folder's) finishes
        with the model it started with, and the re-classification follows it."""
        if self.load_model(path) and self.model is not None:
            self.shell.status(f"Using {self.model.info.name}; re-classifying this session", 8000)
            if self.job is not None:
                self._reclassify_after = True
            else:
                self.reclassify()

    def use_shipped_model(self) -> None:
        if self.job is not None:
            return
        if self.load_model(bundled_model_path()) and self.model is not None:
            info = self.model.info
            self.shell.status(f"Using the shipped model {info.name} v{info.version}", 8000)
            self.reclassify()

    def open_practice(self, folder: Path | None = None) -> PracticeWindow | None:
        from hv_desktop.gui.practice_window import PracticeWindow

        model, parent = self.model, self.shell.dialog_parent()
        if model is None:
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                parent, "Practice set: a folder with one subfolder per class", self.shell.last_dir()
            )
            if not chosen:
                return None
            folder = Path(chosen)
        try:
            win = PracticeWindow(model, folder, parent)
        except (ValueError, OSError) as exc:
            QMessageBox.warning(parent, "Practice set", str(exc))
            return None
        win.show()
        return win

    # --- the watch folder
    def toggle_watch(self, folder: Path | None = None) -> None:
        if self.watched.folder is not None:
            self.fs_watcher.removePaths(self.fs_watcher.directories())
            self.watch_timer.stop()
            self.shell.status(f"Stopped watching {self.watched.folder}", 5000)
            self.watched.stop()
            self.watchChanged.emit("")
            return
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self.shell.dialog_parent(), "Watch folder", self.shell.last_dir())
            folder = Path(chosen) if chosen else None
        if folder is None or self.model is None:
            self.watchChanged.emit("")
            return
        self.watched.start(folder)
        self.fs_watcher.addPath(str(folder))
        self.watch_timer.start()
        self.watchChanged.emit(str(folder))
        self.shell.status(f"Watching {folder}: new images are classified as they arrive", 8000)

    def poll_watch(self) -> None:
        ready = self.watched.poll()
        if ready:
            self.classify(ready)
