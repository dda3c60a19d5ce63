"""The workstation window: open or drop images, classify in the background, review cell by cell with one key,
watch the differential, export.

The window holds widgets and wiring only. Its panes (results_pane, preview_pane, review_panel,
differential_pane) show state; runner, review_actions and exports route what a person does to the workspace
(hv_desktop.core.workspace: the session, the model in use, the run queue, the case archive), where the rules and the
state that is not view live. The handlers are given the workspace and a shell (hv_desktop.gui.shell: the status
line, the dialog parent, the settings; this window is one), never the window; what they change reaches the panes
through the workspace's listener here (:meth:`MainWindow._workspace_changed`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QMainWindow,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.cases.differential_view import differential_view
from hv_desktop.core.cases.review import key_map, review_classes
from hv_desktop.core.cases.runs import case_name
from hv_desktop.core.inference.fields import same_field
from hv_desktop.core.inference.model import bundled_model_path
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.system.appdata import data_dir
from hv_desktop.core.workspace import Change, Workspace, open_archive
from hv_desktop.gui import main_thread_gc
from hv_desktop.gui.actions import Actions, ActionState, RecentFolders, is_shipped
from hv_desktop.gui.archive_dialog import ArchiveDialog
from hv_desktop.gui.cell_mode import CellModeMenu, count_edge
from hv_desktop.gui.dialogs import ask_new_or_add, show_about
from hv_desktop.gui.differential_pane import DifferentialPane
from hv_desktop.gui.exports import Exports, Hooks
from hv_desktop.gui.persistence import LAYOUT_KEYS, Persistence
from hv_desktop.gui.preview_pane import PreviewPane
from hv_desktop.gui.results_model import ResultsModel
from hv_desktop.gui.results_pane import ResultsPane
from hv_desktop.gui.review_actions import ReviewActions
from hv_desktop.gui.review_panel import ReviewPanel
from hv_desktop.gui.runner import TITLE, Runner
from hv_desktop.gui.site_models import SiteModels

if TYPE_CHECKING:
    from hv_desktop.core.inference.model import Model
    from hv_desktop.gui.adapt_dialog import AdaptDialog
    from hv_desktop.gui.practice_window import PracticeWindow
    from hv_desktop.gui.report import ReportInfo
    from hv_desktop.gui.site_history_dialog import SiteHistoryDialog

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.gif *.webp);;All files (*)"


log = logging.getLogger("hematovision")


def default_window_size(avail: QSize | None = None) -> QSize:
    """1280 x 800, or up to 1600 x 1000 on a larger screen: the extra height goes to the cell picture. ``avail``:
    the screen's available size (default: the primary screen's)."""
    if avail is None:
        screen = QApplication.primaryScreen()
        if screen is None:
            return QSize(1280, 800)
        avail = screen.availableGeometry().size()
    return QSize(
        min(1600, max(1280, int(avail.width() * 0.9)), avail.width()),
        min(1000, max(800, int(avail.height() * 0.9)), avail.height()),
    )


class MainWindow(QMainWindow):
    runFinished = Signal()
    LAYOUT_KEYS = LAYOUT_KEYS

    def __init__(
        self,
        model_path: Path | None = None,
        settings: QSettings | None = None,
        autosave_path: Path | None = None,
        restore: bool = True,
    ) -> None:
        super().__init__()
        main_thread_gc.install()  # Qt objects in cycles must never be collected on a decode thread
        self.settings = settings or QSettings("HematoVision", "HematoVision")
        self._data_folder = autosave_path.parent if autosave_path else None
        self.setWindowTitle(TITLE)
        self.setAcceptDrops(True)
        self.resize(default_window_size())
        archive, archive_problem = open_archive(self._data_folder)
        self.workspace = Workspace(archive)
        self.review = self.workspace.review
        self.results = ResultsModel(self)
        self.results.results = self.review.results  # the table shows the session's own list
        self.workspace.append_rows = self.results.append  # rows join through the table model, which tells its views
        self.runner = Runner(self.workspace, self, lambda: self.persistence.restoring)
        self.site_models = SiteModels(self.workspace, self, self.runner)
        self.persistence = Persistence(self.workspace, self, autosave_path, self.results, self, self.is_running)
        self._diff_timer = QTimer(self, singleShot=True, interval=150)
        self._diff_timer.timeout.connect(self.update_differential)
        self.commands = Actions(self)
        self.commands.build_menus()
        self.cell_mode = CellModeMenu(self.settings, self.menuBar())  # Cases: crops or camera fields (issue 28)
        self.recent = RecentFolders(self.settings, self.commands.recent_menu, lambda folder: self.classify([folder]))
        self._build_ui()
        self.workspace.subscribe(self._workspace_changed)
        self.load_model(model_path or bundled_model_path(), quiet=True)
        self._remember_layout = restore
        if restore:
            self.persistence.restore_layout()
            self.persistence.restore()
        self.update_differential()
        self.update_actions()
        if archive_problem:
            log.error("%s", archive_problem)
            self.statusBar().showMessage(archive_problem, 30000)

    def _build_panes(self) -> None:
        """The panes, and the handlers that work on them: each is given what it needs, never the window."""
        self.results_pane = ResultsPane(self.results, self)
        self.reviewing = ReviewActions(self.workspace, self, self.results_pane, self._cell_types_changed)
        self.preview_pane = PreviewPane(self.settings, self)
        self.review_panel = ReviewPanel(self)
        self.differential_pane = DifferentialPane(self)
        heat = self.preview_pane.heat_opacity
        hooks = Hooks(self.is_running, self.clear_session, lambda: heat.value() / 100, self.autosave)
        self.exports = Exports(self.workspace, self, self.results, self.results_pane, self.reviewing, hooks)

    def _connect(self) -> None:
        pane, runner = self.results_pane, self.runner
        pane.review_keys = lambda: key_map(self.model.labels, self.reviewing.extra_classes()) if self.model else None
        pane.currentChanged.connect(self.show_preview)
        pane.caseChosen.connect(self.reviewing.case_chosen)
        self.runFinished.connect(pane.focus_review)  # review keys work right after a run
        self.persistence.restored.connect(lambda n: pane.focus_review() if n else None)  # and a restore
        self.persistence.restored.connect(lambda _: runner.start_pending())  # what was opened meanwhile
        pane.reviewKey.connect(self.assign_current)
        pane.confirmKey.connect(self.reviewing.confirm_current)
        self.preview_pane.problem.connect(lambda msg: self.status(msg, 5000))
        self.preview_pane.saveRequested.connect(lambda: self.save_heatmap())
        self.preview_pane.cellClicked.connect(self._cell_clicked)
        self.cell_mode.changed.connect(lambda message: self.status(message, 8000))
        self.cell_mode.changed.connect(lambda _: self.update_differential())
        self.review_panel.assign.connect(self.assign_current)
        self.differential_pane.diff_mode.currentIndexChanged.connect(lambda _: self.update_differential())
        runner.runFinished.connect(self.runFinished)
        runner.runEnded.connect(self._run_ended)
        runner.rowsAdded.connect(self._rows_added)
        runner.actionsChanged.connect(self.update_actions)
        runner.watchChanged.connect(self._watching)
        runner.matchOffered.connect(self.match_magnification)

    def _build_ui(self) -> None:
        self._build_panes()
        self._connect()
        # The right side is a vertical splitter: the picture above (what a technologist looks at most; drag the
        # handle to change the split), probabilities, review buttons and the differential below.
        below = QWidget()
        lay = QVBoxLayout(below)
        lay.setContentsMargins(6, 0, 6, 6)
        lay.addWidget(self.review_panel)
        lay.addWidget(self.differential_pane, 1)
        self.preview_split = QSplitter(Qt.Orientation.Vertical)
        self.preview_split.addWidget(self.preview_pane)
        self.preview_split.addWidget(below)
        self.preview_split.setChildrenCollapsible(False)
        self.preview_split.setStretchFactor(0, 1)
        self.preview_split.setStretchFactor(1, 0)
        self.main_split = QSplitter()
        self.main_split.addWidget(self.results_pane)
        self.main_split.addWidget(self.preview_split)
        self.main_split.setStretchFactor(0, 3)
        self.main_split.setStretchFactor(1, 2)
        self.main_split.setSizes([760, 500])
        self.setCentralWidget(self.main_split)
        runner = self.runner
        for widget in (runner.progress_label, runner.progress, runner.cancel_button, runner.offer_button, runner.model_label):
            self.statusBar().addPermanentWidget(widget)

    # ------------------------------------------------------------------ the shell (hv_desktop.gui.shell.Shell)
    def status(self, message: str, ms: int = 5000) -> None:
        self.statusBar().showMessage(message, ms)

    def dialog_parent(self) -> QWidget:
        return self

    def current_result(self) -> Result | None:
        return self.results_pane.current()[0]

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> Model | None:
        """The model in use (the workspace's)."""
        return self.workspace.model

    @property
    def diff_table(self) -> QTableWidget:
        """persistence.py sizes the picture's split by it (tests reach the pane: differential_pane.diff_table)."""
        return self.differential_pane.diff_table

    @property
    def autosave_path(self) -> Path | None:
        return self.persistence.autosave_path

    @autosave_path.setter
    def autosave_path(self, path: Path | None) -> None:
        self.persistence.autosave_path = path

    def data_folder(self) -> Path:
        return self._data_folder or data_dir()

    def is_running(self) -> bool:
        return self.runner.is_running()

    # ------------------------------------------------------------------ showing
    def show_preview(self, r: Result) -> None:
        self.preview_pane.show_result(r, same_field(self.review.results, r))
        self.review_panel.show_result(r)

    def labels_changed(self) -> None:
        """Rebuild the widgets that depend on the model's labels."""
        labels = self.model.labels if self.model else ()
        self.results_pane.set_labels(labels)
        self.review_panel.set_classes(labels, self.reviewing.extra_classes())
        model_keys = " ".join(c.key for c in review_classes(labels) if c.name in labels)
        self.commands.review_keys.setText(
            f"Review keys: {model_keys or '1–4'} assign, other cell types by letter (Other…), Enter confirms, Backspace clears"
        )

    def update_differential(self) -> None:
        pane = self.differential_pane
        self.results_pane.proxy.reviewed_view = pane.by_review
        labels, extras = self.model.labels if self.model else [], self.reviewing.extra_classes()
        view = differential_view(self.workspace.case_results(), labels, extras, pane.by_review, count_edge(self.settings))
        pane.show_view(view)
        self.results_pane.empty_hint.setVisible(view.total == 0)

    def changed(self, soon: bool = False, differential_now: bool = False) -> None:
        """Results or reviews changed: the differential (now, or batched) and the autosave (batched)."""
        if differential_now:
            self.update_differential()
        else:
            self._diff_timer.start()
        if soon:
            self.persistence.timer.start()

    def refresh_cases(self) -> None:
        self.results_pane.set_cases(list(self.review.cases), self.review.current)
        self.show_signed()
        self.update_differential()

    def show_signed(self) -> None:
        self.differential_pane.show_signed(self.review.signed)
        self.update_actions()

    def update_actions(self) -> None:
        has = bool(self.results.results)
        path = self.model.path if self.model is not None else None
        signed = self.review.signed is not None
        state = ActionState(self.is_running(), self.model is not None, has, signed, is_shipped(path))
        self.commands.update(state)

    # ------------------------------------------------------------------ opening and running
    def open_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.last_dir(), IMAGE_FILTER)
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self.last_dir())
        if folder:
            self.open_paths([Path(folder)])

    def open_paths(self, paths: list[Path]) -> None:
        """What a person opens or drops: asks whether it is a new case or more of the current one (the watch
        folder and scripts add to the current case without asking)."""
        if self.review.current and self.review.case_results() and not self.is_running() and self.review.signed is None:
            choice = self.ask_case(case_name(paths))
            if choice is None or (choice == "new" and self.new_case(case_name(paths), ask=True) is None):
                return
        self.classify(paths)

    def ask_case(self, name: str) -> str | None:
        """'new', 'add' or None (cancel): a dialog, replaced in tests."""
        return ask_new_or_add(self, self.review.current)

    def classify(self, paths: list[Path]) -> None:
        self.runner.classify(paths)

    def cancel_run(self) -> None:
        self.runner.cancel()

    def load_model(self, path: Path, quiet: bool = False) -> bool:
        return self.runner.load_model(path, quiet)

    def choose_model(self) -> None:
        self.runner.choose_model()

    def use_shipped_model(self) -> None:
        self.runner.use_shipped_model()

    def toggle_watch(self, folder: Path | None = None) -> None:
        self.runner.toggle_watch(folder)

    def adapt_to_lab(self) -> AdaptDialog | None:
        return self.site_models.adapt_to_lab()

    def match_magnification(self) -> AdaptDialog | None:
        return self.site_models.match_magnification()

    def site_model_history(self) -> SiteHistoryDialog | None:
        return self.site_models.history()

    def open_practice(self, folder: Path | None = None) -> PracticeWindow | None:
        return self.runner.open_practice(folder)

    # ------------------------------------------------------------------ reviewing (hv_desktop.gui.review_actions)
    def new_case(self, name: str = "", ask: bool = True) -> str | None:
        return self.reviewing.new_case(name, ask)

    def assign_current(self, label: str | None) -> None:
        self.reviewing.assign_current(label)

    def accept_unflagged(self, ask: bool = True) -> int:
        return self.reviewing.accept_unflagged(ask)

    def undo_review(self) -> None:
        self.reviewing.undo()

    def next_flagged(self) -> None:
        self.reviewing.next_flagged()

    def sign_off_case(self, operator: str | None = None, reason: str | None = None) -> bool:
        return self.reviewing.sign_off(operator, reason)

    def unlock_case(self, reason: str | None = None) -> bool:
        return self.reviewing.unlock(reason)

    def edit_cell_types(self, text: str | None = None) -> bool:
        return self.reviewing.edit_cell_types(text)

    # ------------------------------------------------------------------ files (hv_desktop.gui.exports, persistence)
    def export_csv(self, path: Path | None = None) -> bool:
        return self.exports.export_csv(path)

    def export_report(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        return self.exports.export_report(path, info)

    def export_consultation(self, path: Path | None = None, info: ReportInfo | None = None) -> bool:
        return self.exports.export_consultation(path, info)

    def open_package(self, path: Path | None = None, replace: bool | None = None) -> bool:
        return self.exports.open_package(path, replace)

    def save_heatmap(self, path: Path | None = None) -> bool:
        return self.exports.save_heatmap(path)

    def autosave(self, wait: bool = False) -> None:
        self.persistence.save(wait)

    def clear_session(self) -> None:
        self.results.clear()  # the table's reset first: its views never see the list change under them
        self.workspace.clear()

    def new_session(self) -> None:
        self.persistence.new_session()

    def open_archive(self) -> ArchiveDialog | None:
        """Cases ▸ Case Archive: find a case and reopen it."""
        if self.workspace.archive is None:
            self.status("There is no case archive in this session (see the log for why)", 8000)
            return None
        dlg = ArchiveDialog(self, self.workspace.archive, self.open_archived_case)
        dlg.open()
        return dlg

    def open_archived_case(self, case_id: str) -> bool:
        """Reopen an archived case in this session (signed off: read-only) and show it."""
        if self.is_running():
            self.status("Wait for the run to end before reopening a case", 6000)
            return False
        try:
            case = self.workspace.open_archived(case_id)  # the listener shows it
        except (ArchiveError, ValueError) as exc:
            self.status(f"Case {case_id} not reopened: {exc}", 10000)
            return False
        self.runner.queue.remember(case.results)
        how = f"read-only, signed off by {case.sign_off.operator}" if case.sign_off else "open"
        self.status(f"Case {case_id} reopened from the archive ({how})", 10000)
        return True

    # ------------------------------------------------------------------ recent folders, about
    def last_dir(self) -> str:
        return self.recent.last_dir()

    def remember_recent(self, folder: Path) -> None:
        self.recent.remember(folder)

    def about(self) -> None:
        show_about(self, self.model.info if self.model else None)

    # ------------------------------------------------------------------ Qt events
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
                self.open_package(paths[0])
                return
            self.open_paths(paths)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not getattr(self, "_preview_sized", False):
            self._preview_sized = True
            QTimer.singleShot(0, self.persistence.default_preview_split)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._remember_layout:
            self.persistence.save_layout()
        self.runner.stop()
        self.persistence.closing = True
        self.autosave(wait=True)
        if self.workspace.archive is not None:
            self.workspace.archive.close()
            self.workspace.archive = None
        super().closeEvent(event)

    # ------------------------------------------------------------------ following the workspace and the runner
    def _workspace_changed(self, change: Change) -> None:
        """The one place the window follows the workspace: what changed is shown, and saved."""
        kind, rows = change.kind, list(change.rows)
        if kind == "archive":  # the session goes on (its autosave keeps it); say what was not archived
            log.error("case archive: %s", change.message)
            self.status(change.message[0].upper() + change.message[1:], 15000)
        elif kind == "consultation":  # restored from the archive, or gone with a new session
            self.exports.show_consultation()
        elif kind == "model":
            if self.model is not None:
                self.preview_pane.set_model(self.model)
            self.labels_changed()
            self.update_actions()
            self.site_models.reviews_changed()  # a fresh site model may be due against the new one
        elif kind == "cases":
            self.refresh_cases()
            self.changed(soon=True)
        elif kind == "signed":
            self.show_signed()
            self.autosave()
        elif kind in ("reviews", "reclassified"):
            self.results.rows_changed(rows)
            if kind == "reviews":
                self.site_models.reviews_changed()
            if rows or kind == "reclassified":  # a review counts now; a run's new classes are counted batched
                self.changed(soon=True, differential_now=kind == "reviews")
        elif kind == "added":
            now = not self.is_running()  # a run's batches: counted batched, the actions when it ends
            self.changed(soon=True, differential_now=now)
            if now:
                self.update_actions()

    def _run_ended(self) -> None:
        self.update_differential()
        self.autosave()
        self.update_actions()

    def _rows_added(self) -> None:
        self.results_pane.select_first_if_none()
        self.results_pane.empty_hint.hide()
        if (shown := self.preview_pane.result) is not None and shown.cell_index is not None:
            self.preview_pane.field_grew(same_field(self.review.results, shown))

    def _watching(self, folder: str) -> None:
        self.commands.watch.setChecked(bool(folder))
        self.setWindowTitle(f"HematoVision — watching {folder}" if folder else TITLE)

    def _cell_clicked(self, r: Result) -> None:
        """A field's box clicked in the preview: its cell's row becomes current."""
        if not self.results_pane.select_result(r):
            self.status("That cell is hidden by the table's filters", 4000)

    def _cell_types_changed(self) -> None:
        self.labels_changed()
        self.update_differential()
