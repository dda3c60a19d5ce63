"""The window's actions, menus and toolbar, and the one rule for which actions are enabled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from hv_desktop.core.inference.model import bundled_model_path

Shortcut = QKeySequence.StandardKey | str | None


@dataclass(frozen=True)
class ActionState:
    """What the enabled actions depend on."""

    running: bool
    has_model: bool
    has_results: bool
    signed: bool
    shipped_model: bool  # the model in use is the one that came with the app


K = QKeySequence.StandardKey

#: (attribute, menu text, the window's method, shortcut, status tip)
SPECS: tuple[tuple[str, str, str, Shortcut, str], ...] = (
    ("open", "&Open Images…", "open_images", K.Open, "Classify image files"),
    ("open_folder", "Open &Folder…", "open_folder", "Ctrl+Shift+O", "Classify every image in a folder"),
    ("export", "&Export CSV…", "export_csv", "Ctrl+E", "Save the results, with reviews, as CSV"),
    (
        "report",
        "Export &Report (PDF)…",
        "export_report",
        "Ctrl+R",
        "A printable report: differential, flagged and failed cells, gallery",
    ),
    ("model", "Load &Model…", "choose_model", "Ctrl+M", "Use another HematoVision ONNX model"),
    (
        "send",
        "Export Case for &Consultation…",
        "export_consultation",
        None,
        "One .zip with the images, reviews, CSV and report, for a consultant (or your reply)",
    ),
    (
        "open_package",
        "Open Consultation &Package…",
        "open_package",
        None,
        "Open a case a lab sent for consultation, or a consultant's reply",
    ),
    ("new", "&New Session", "new_session", K.New, "Clear the results"),
    ("new_case", "New &Case…", "new_case", "Ctrl+Shift+N", "Start a new case (sample): the next images opened join it"),
    (
        "archive",
        "Case &Archive…",
        "open_archive",
        "Ctrl+Shift+F",
        "Find an archived case by sample ID, operator, date or status, and reopen it",
    ),
    ("quit", "&Quit", "close", K.Quit, ""),
    ("cancel", "&Cancel", "cancel_run", "Esc", "Stop classifying (results so far are kept)"),
    ("about", "&About HematoVision", "about", None, ""),
    ("watch", "&Watch Folder…", "toggle_watch", "Ctrl+W", "Classify new images as a camera or scanner saves them into a folder"),
    (
        "practice",
        "&Practice Mode…",
        "open_practice",
        "Ctrl+P",
        "Classify labelled cells yourself and get instant feedback (teaching)",
    ),
    (
        "accept",
        "&Accept All Unflagged Cells",
        "accept_unflagged",
        "Ctrl+Shift+A",
        "Confirm the model's class for every cell that is not flagged, leaving the flagged ones",
    ),
    ("next_flag", "Next &Flagged Cell", "next_flagged", "F", "Jump to the next cell that needs review"),
    ("undo", "&Undo Review", "undo_review", K.Undo, "Take back the last review (or accept-all)"),
    (
        "adapt",
        "A&dapt to This Lab…",
        "adapt_to_lab",
        None,
        "Learn this lab's microscope and stain from the cells you reviewed (a new site model)",
    ),
    (
        "magnification",
        "Match Lab &Magnification…",
        "match_magnification",
        None,
        "Measure how large cells appear in this case's images and make a site model that shows them at the trained size",
    ),
    (
        "site_history",
        "Site Model &History…",
        "site_model_history",
        None,
        "Every site model made at this lab, what each learnt from; go back to any of them",
    ),
    (
        "cell_types",
        "Cell &Types…",
        "edit_cell_types",
        None,
        "The further cell types a reviewer can assign, with their keys (preferences)",
    ),
    (
        "sign",
        "&Sign Off Case…",
        "sign_off_case",
        "Ctrl+Shift+S",
        "Sign the case off: every flagged cell reviewed (or a reason), then locked",
    ),
    (
        "unlock",
        "&Unlock Signed-Off Case…",
        "unlock_case",
        None,
        "Allow changes to a signed-off case again (recorded, with a reason)",
    ),
    (
        "shipped",
        "Use &Shipped Model",
        "use_shipped_model",
        None,
        "Switch back from a site model to the model that came with HematoVision",
    ),
)


class Actions:
    """The window's actions, one attribute each (see SPECS); ``window`` has the methods SPECS names."""

    open: QAction
    open_folder: QAction
    export: QAction
    report: QAction
    model: QAction
    send: QAction
    open_package: QAction
    new: QAction
    new_case: QAction
    archive: QAction
    quit: QAction
    cancel: QAction
    about: QAction
    watch: QAction
    practice: QAction
    accept: QAction
    next_flag: QAction
    undo: QAction
    adapt: QAction
    magnification: QAction
    cell_types: QAction
    sign: QAction
    unlock: QAction
    shipped: QAction
    site_history: QAction

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        for name, text, slot, shortcut, tip in SPECS:
            setattr(self, name, self._act(text, getattr(window, slot), shortcut, tip))
        self.watch.setCheckable(True)
        self.review_keys = QAction("", window)
        self.review_keys.setEnabled(False)

    def _act(self, text: str, slot: Callable[[], object], shortcut: Shortcut = None, tip: str | None = None) -> QAction:
        a = QAction(text, self.window)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        return a

    def build_menus(self) -> None:
        mb = self.window.menuBar()
        m = mb.addMenu("&File")
        for a in (self.open, self.open_folder):
            m.addAction(a)
        self.recent_menu = m.addMenu("Open &Recent")
        m.addAction(self.watch)
        m.addSeparator()
        for a in (self.export, self.report, self.send, self.open_package, self.model, self.new_case, self.archive, self.new):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.quit)
        r = mb.addMenu("&Review")
        for group in (
            (self.undo, self.next_flag, self.accept, self.cancel, self.cell_types),
            (self.sign, self.unlock),
            (self.adapt, self.magnification, self.site_history, self.shipped, self.review_keys),
        ):
            if group[0] is not self.undo:
                r.addSeparator()
            for a in group:
                r.addAction(a)
        mb.addMenu("&Teaching").addAction(self.practice)
        mb.addMenu("&Help").addAction(self.about)
        tb = self.window.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for a in (self.open, self.open_folder, self.watch, self.export, self.report, self.cancel):
            tb.addAction(a)

    def update(self, s: ActionState) -> None:
        """The one rule for what can be done now."""
        busy = s.running
        self.open.setEnabled(s.has_model)
        self.open_folder.setEnabled(s.has_model)
        self.cancel.setEnabled(busy)
        self.model.setEnabled(not busy)
        self.new.setEnabled(not busy)
        self.export.setEnabled(s.has_results)
        self.report.setEnabled(s.has_results and s.has_model)
        self.adapt.setEnabled(s.has_model and not busy)
        self.magnification.setEnabled(s.has_model and s.has_results and not busy)
        self.sign.setEnabled(s.has_results and not busy and not s.signed)
        self.send.setEnabled(s.has_results and s.has_model and not busy)
        self.open_package.setEnabled(not busy)
        self.archive.setEnabled(not busy)
        self.unlock.setEnabled(s.signed)
        self.shipped.setEnabled(not busy and not s.shipped_model)
        self.site_history.setEnabled(not busy)


class RecentFolders:
    """The folders opened last (in the settings), shown in File ▸ Open Recent."""

    MAX = 8

    def __init__(self, settings: QSettings, menu: QMenu, open_folder: Callable[[Path], None]) -> None:
        self.settings, self.menu, self.open_folder = settings, menu, open_folder
        self._show()

    def folders(self) -> list[str]:
        recent = self.settings.value("recent_folders", []) or []
        if isinstance(recent, str):  # QSettings returns a lone value bare
            return [recent]
        return [str(r) for r in recent] if isinstance(recent, (list, tuple)) else []

    def last_dir(self) -> str:
        recent = self.folders()
        return recent[0] if recent else str(Path.home())

    def remember(self, folder: Path) -> None:
        recent = [str(folder)] + [r for r in self.folders() if r != str(folder)]
        self.settings.setValue("recent_folders", recent[: self.MAX])
        self._show()

    def _show(self) -> None:
        self.menu.clear()
        folders = self.folders()
        for folder in folders:
            a = self.menu.addAction(folder)
            a.triggered.connect(lambda _=False, f=folder: self.open_folder(Path(f)))
        self.menu.setEnabled(bool(folders))


def is_shipped(model_path: Path | None) -> bool:
    """Whether ``model_path`` is the model that came with the app (None: no model, so not)."""
    return model_path is not None and model_path.resolve() == bundled_model_path().resolve()
