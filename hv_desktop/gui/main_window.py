"""The workstation window: open or drop images, classify in the background,
review cell by cell with one key, watch the differential, export.

All classification and file writing goes through ``hv_desktop.core``; this
module only arranges widgets and routes user actions.
"""

from __future__ import annotations

import html
from datetime import datetime
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from PySide6.QtCore import QByteArray, QEvent, QFileSystemWatcher, QItemSelectionModel, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hv_desktop import __version__
from hv_desktop.core.batch import Result
from hv_desktop.core.export import differential, write_csv
from hv_desktop.core.heatmap import PNG_OPACITY
from hv_desktop.core.model import INTENDED_USE, Model, ModelError, bundled_model_path
from hv_desktop.core.preprocess import ImageError, at_image_edge, model_box_and_centre, open_image
from hv_desktop.core.session import SessionError, load_session, save_session
from hv_desktop.gui.results_model import (
    COL_SENDER,
    COL_CLASS,
    COL_CONF,
    COL_FILE,
    COL_REVIEW,
    COL_STATUS,
    RESULT_ROLE,
    GalleryFilter,
    ResultsFilter,
    ResultsModel,
    to_pixmap,
)
from hv_desktop.gui.worker import ClassifyJob
from hv_desktop.core.review import (
    ReviewSession,
    SignOff,
    awaiting_review,
    flag_reason,
    key_map,
    review_classes,
    reviewed_differential,
    sign_off_blockers,
)

log = logging.getLogger("hematovision")


def default_window_size() -> QSize:
    """1280 x 800, or up to 1600 x 1000 on a larger screen: the extra height goes to the cell picture."""
    screen = QApplication.primaryScreen()
    if screen is None:
        return QSize(1280, 800)
    avail = screen.availableGeometry()
    return QSize(
        min(1600, max(1280, int(avail.width() * 0.9)), avail.width()),
        min(1000, max(800, int(avail.height() * 0.9)), avail.height()),
    )


def cell_view_box(box: tuple[int, int, int, int], size: tuple[int, int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """The classified square grown by ``margin`` of its side on every edge (the outline and a little context
    stay in view), kept inside the image."""
    left, top, right, bottom = box
    m = round(margin * max(right - left, bottom - top))
    return max(0, left - m), max(0, top - m), min(size[0], right + m), min(size[1], bottom + m)


IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.gif *.webp);;All files (*)"
MAX_RECENT = 8


class ReportDialog(QDialog):
    """Case details for the PDF report."""

    def __init__(self, parent=None, operator: str = "") -> None:
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
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


def ask_case_details(parent, title: str, operator: str = "", case_id: str = "", heatmaps: bool = True) -> ReportDialog | None:
    """The case ID / operator / note dialog the report, the consultation export and a new case all use;
    None when cancelled."""
    dlg = ReportDialog(parent, operator=operator)
    dlg.setWindowTitle(title)
    dlg.case_id.setText(case_id)
    dlg.heatmaps.setVisible(heatmaps)
    return dlg if dlg.exec() == QDialog.Accepted else None


class SignOffDialog(QDialog):
    """Who signs the case off; a reason is asked only when flagged cells are left unreviewed."""

    def __init__(self, parent=None, operator: str = "", unreviewed: int = 0) -> None:
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
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Sign off")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


class MainWindow(QMainWindow):
    runFinished = Signal()
    thumbnailsReady = Signal()
    autosaveFailed = Signal(str)
    autosaveAgain = Signal()
    sessionLoaded = Signal(object, str)  # ((results, header) or None, error message)
    sessionRestored = Signal(int)

    def __init__(
        self,
        model_path: Path | None = None,
        settings: QSettings | None = None,
        autosave_path: Path | None = None,
        restore: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings or QSettings("HematoVision", "HematoVision")
        self.autosave_path = autosave_path
        self.model: Model | None = None
        self.job: ClassifyJob | None = None
        self.queue: list[list[Path]] = []
        self._run_started = 0.0
        self._run_total = 0
        self._run_done = 0
        self._skipped = 0
        self._seen: set[tuple] = set()
        self._reclassifying = False
        self._restoring = False
        self.consultation: dict | None = None  # {"kind", "package_id", "case"} when this session came in a package
        self.last_disagreements: list[tuple[str, str | None, str | None]] = []
        self.data_folder = autosave_path.parent if autosave_path else None
        self.setWindowTitle("HematoVision — white blood cell classification")
        self.setAcceptDrops(True)
        self.resize(default_window_size())

        self.review = ReviewSession()
        self.results = ResultsModel(self)
        self.results.results = self.review.results  # the table shows the session's own list
        self.proxy = ResultsFilter(self)
        self.proxy.setSourceModel(self.results)
        self.gallery_proxy = GalleryFilter(self)
        self.gallery_proxy.setSourceModel(self.results)
        self.gallery_proxy.setSortRole(Qt.DisplayRole)
        self.gallery_proxy.sort(COL_CLASS)

        self._autosave_lock = threading.Lock()
        self._autosave_thread: threading.Thread | None = None
        self._autosave_again = False
        self.autosaveFailed.connect(lambda msg: self.statusBar().showMessage(f"Autosave failed: {msg}", 8000))
        self._closing = False
        self.autosaveAgain.connect(lambda: None if self._closing else self.autosave())
        self._autosave_timer = QTimer(self, singleShot=True, interval=400)
        self._autosave_timer.timeout.connect(self.autosave)
        self._diff_timer = QTimer(self, singleShot=True, interval=150)
        self._diff_timer.timeout.connect(self.update_differential)

        self._build_actions()
        self._build_ui()
        self.load_model(model_path or bundled_model_path(), quiet=True)
        self._remember_layout = restore
        if restore:
            self.restore_layout()
            self.restore_autosave()
        self.update_differential()
        self._update_actions()

    # ------------------------------------------------------------------ UI
    def _build_actions(self) -> None:
        def act(text, slot, shortcut=None, tip=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setStatusTip(tip)
            a.triggered.connect(lambda _checked=False: slot())
            return a

        self.watch_folder: Path | None = None
        self.watch_tracker = None
        self.fs_watcher = QFileSystemWatcher(self)
        self.fs_watcher.directoryChanged.connect(lambda _: self.poll_watch())
        self.watch_timer = QTimer(self, interval=250)
        self.watch_timer.timeout.connect(self.poll_watch)

        self.act_open = act("&Open Images…", self.open_images, QKeySequence.Open, "Classify image files")
        self.act_open_folder = act("Open &Folder…", self.open_folder, "Ctrl+Shift+O", "Classify every image in a folder")
        self.act_export = act("&Export CSV…", self.export_csv, "Ctrl+E", "Save the results, with reviews, as CSV")
        self.act_report = act(
            "Export &Report (PDF)…",
            self.export_report,
            "Ctrl+R",
            "A printable report: differential, flagged and failed cells, gallery",
        )
        self.act_model = act("Load &Model…", self.choose_model, "Ctrl+M", "Use another HematoVision ONNX model")
        self.act_send = act(
            "Export Case for &Consultation…",
            self.export_consultation,
            None,
            "One .zip with the images, reviews, CSV and report, for a consultant (or your reply)",
        )
        self.act_open_package = act(
            "Open Consultation &Package…",
            self.open_package,
            None,
            "Open a case a lab sent for consultation, or a consultant's reply",
        )
        self.act_new = act("&New Session", self.new_session, QKeySequence.New, "Clear the results")
        self.act_new_case = act(
            "New &Case…", self.new_case, "Ctrl+Shift+N", "Start a new case (sample): the next images opened join it"
        )
        self.act_quit = act("&Quit", self.close, QKeySequence.Quit)
        self.act_cancel = act("&Cancel", self.cancel_run, "Esc", "Stop classifying (results so far are kept)")
        self.act_about = act("&About HematoVision", self.about)
        self.act_watch = act(
            "&Watch Folder…", self.toggle_watch, "Ctrl+W", "Classify new images as a camera or scanner saves them into a folder"
        )
        self.act_watch.setCheckable(True)
        self.act_practice = act(
            "&Practice Mode…",
            self.open_practice,
            "Ctrl+P",
            "Classify labelled cells yourself and get instant feedback (teaching)",
        )
        self.act_accept = act(
            "&Accept All Unflagged Cells",
            self.accept_unflagged,
            "Ctrl+Shift+A",
            "Confirm the model's class for every cell that is not flagged, leaving the flagged ones",
        )
        self.act_next_flag = act("Next &Flagged Cell", self.next_flagged, "F", "Jump to the next cell that needs review")
        self.act_undo = act("&Undo Review", self.undo_review, QKeySequence.Undo, "Take back the last review (or accept-all)")
        self.act_adapt = act(
            "A&dapt to This Lab…",
            self.adapt_to_lab,
            None,
            "Learn this lab's microscope and stain from the cells you reviewed (a new site model)",
        )
        self.act_cell_types = act(
            "Cell &Types…",
            self.edit_cell_types,
            None,
            "The further cell types a reviewer can assign, with their keys (preferences)",
        )
        self.act_sign = act(
            "&Sign Off Case…",
            self.sign_off_case,
            "Ctrl+Shift+S",
            "Sign the case off: every flagged cell reviewed (or a reason), then locked",
        )
        self.act_unlock = act(
            "&Unlock Signed-Off Case…",
            self.unlock_case,
            None,
            "Allow changes to a signed-off case again (recorded, with a reason)",
        )
        self.act_shipped = act(
            "Use &Shipped Model",
            self.use_shipped_model,
            None,
            "Switch back from a site model to the model that came with HematoVision",
        )

        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_open, self.act_open_folder):
            m.addAction(a)
        self.recent_menu = m.addMenu("Open &Recent")
        self._refresh_recent()
        m.addAction(self.act_watch)
        m.addSeparator()
        for a in (
            self.act_export,
            self.act_report,
            self.act_send,
            self.act_open_package,
            self.act_model,
            self.act_new_case,
            self.act_new,
        ):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_quit)
        r = mb.addMenu("&Review")
        r.addAction(self.act_undo)
        r.addAction(self.act_next_flag)
        r.addAction(self.act_accept)
        r.addAction(self.act_cancel)
        r.addAction(self.act_cell_types)
        r.addSeparator()
        r.addAction(self.act_sign)
        r.addAction(self.act_unlock)
        r.addSeparator()
        r.addAction(self.act_adapt)
        r.addAction(self.act_shipped)
        self.review_keys_action = QAction(self._review_help(), self)
        self.review_keys_action.setEnabled(False)
        r.addAction(self.review_keys_action)
        mb.addMenu("&Teaching").addAction(self.act_practice)
        mb.addMenu("&Help").addAction(self.act_about)

        tb = self.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        for a in (self.act_open, self.act_open_folder, self.act_watch, self.act_export, self.act_report, self.act_cancel):
            tb.addAction(a)

    def _build_ui(self) -> None:
        # Filter bar
        self.class_combo = QComboBox()
        self.class_combo.setAccessibleName("Filter by class")
        self.class_combo.currentIndexChanged.connect(lambda _: self.proxy.set_filters(cls=self.class_combo.currentData() or ""))
        self.state_combo = QComboBox()
        self.state_combo.addItems(ResultsFilter.STATES)
        self.state_combo.setAccessibleName("Filter by state")
        self.state_combo.currentTextChanged.connect(lambda s: self.proxy.set_filters(state=s))
        self.search = QLineEdit(placeholderText="Filter by file name…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda t: self.proxy.set_filters(text=t))
        self.case_combo = QComboBox()
        self.case_combo.setAccessibleName("Case")
        self.case_combo.setMinimumContentsLength(10)
        self.case_combo.setToolTip("The case (sample) shown; its differential, sign-off and exports")
        self.case_combo.currentIndexChanged.connect(lambda _: self._case_chosen())
        filters = QHBoxLayout()
        for text, widget in (("Cas&e:", self.case_combo), ("&Class:", self.class_combo), ("S&how:", self.state_combo)):
            label = QLabel(text)
            label.setBuddy(widget)  # Alt+C / Alt+H move the keyboard focus there
            filters.addWidget(label)
            filters.addWidget(widget)
        filters.addWidget(self.search, 1)
        find = QAction("Find", self)
        find.setShortcut(QKeySequence.Find)
        find.triggered.connect(lambda: (self.search.setFocus(), self.search.selectAll()))
        self.addAction(find)

        # Table
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setIconSize(QSize(40, 40))
        self.table.verticalHeader().setDefaultSectionSize(44)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        hh = self.table.horizontalHeader()
        # Fixed widths: ResizeToContents would measure every row on every insert (slow on big runs).
        hh.setSectionResizeMode(COL_FILE, QHeaderView.Stretch)
        for c, width in ((COL_CLASS, 110), (COL_CONF, 95), (COL_REVIEW, 110), (COL_STATUS, 130), (COL_SENDER, 120)):
            hh.setSectionResizeMode(c, QHeaderView.Interactive)
            hh.resizeSection(c, width)
        self.table.setColumnHidden(COL_SENDER, True)  # shown for a consultation only
        self.table.sortByColumn(-1, Qt.AscendingOrder)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _: self.show_preview(cur))
        self.table.installEventFilter(self)

        # Gallery: thumbnails sorted (grouped) by model class
        self.gallery = QListView()
        self.gallery.setModel(self.gallery_proxy)
        self.gallery.setViewMode(QListView.IconMode)
        self.gallery.setIconSize(QSize(96, 96))
        self.gallery.setGridSize(QSize(132, 128))
        self.gallery.setResizeMode(QListView.Adjust)
        self.gallery.setMovement(QListView.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(True)
        self.gallery.selectionModel().currentChanged.connect(lambda cur, _: self.show_preview(cur))
        self.gallery.installEventFilter(self)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Table")
        self.tabs.addTab(self.gallery, "Gallery (by class)")

        self.empty_hint = QLabel(
            "Drop images or folders here, or use File ▸ Open Images… (Ctrl+O) and File ▸ Open Folder… (Ctrl+Shift+O)."
        )
        self.empty_hint.setAlignment(Qt.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: #555; font-size: 14px; padding: 24px;")

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(6, 6, 6, 6)
        lv.addLayout(filters)
        lv.addWidget(self.empty_hint)
        lv.addWidget(self.tabs, 1)

        # Preview
        self.preview = QLabel("No cell selected")
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview.setMinimumSize(260, 220)
        self.preview.setFrameShape(QFrame.StyledPanel)
        self.preview_scroll = QScrollArea()
        self.preview_scroll.viewport().installEventFilter(self)
        self.preview_scroll.setWidget(self.preview)
        self.preview_scroll.setWidgetResizable(True)
        self.zoom_button = QToolButton(text="100 %", checkable=True)
        self.zoom_button.setToolTip("Show the image at full size (otherwise fit to the pane)")
        self.zoom_button.toggled.connect(lambda _: self._render_preview())
        # A cropping model classifies a square around one cell: by default the preview zooms to it (with a
        # margin), so nuclear shape and granules are visible without the 100 % view; off shows the whole field.
        self.cell_zoom = QToolButton(text="Cell", checkable=True)
        self.cell_zoom.setToolTip("Zoom to the cell the model classified (the outlined square); off: the whole field")
        self.cell_zoom.setChecked(str(self.settings.value("preview/cell_zoom", "true")).lower() != "false")
        self.cell_zoom.toggled.connect(self._cell_zoom_toggled)
        self.heat_box = QCheckBox("Heatmap")
        self.heat_box.setToolTip("Overlay the class-activation map: where the evidence for the predicted class lies")
        self.heat_box.toggled.connect(lambda _: self._refresh_preview())
        self.heat_opacity = QSlider(Qt.Horizontal)
        self.heat_opacity.setRange(10, 90)
        self.heat_opacity.setValue(round(PNG_OPACITY * 100))  # the cell's shape stays readable
        self.heat_opacity.setMaximumWidth(90)
        self.heat_opacity.setAccessibleName("Heatmap opacity")
        self.heat_opacity.setToolTip("Heatmap opacity")
        self.heat_opacity.valueChanged.connect(lambda _: self._refresh_preview())
        self.preview_title = QLabel("")
        self.preview_title.setWordWrap(True)
        self.preview_title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.prob_grid = QGridLayout()
        self.prob_bars: dict[str, QProgressBar] = {}
        self.review_row = QHBoxLayout()
        self.review_buttons: dict[str, QPushButton] = {}
        self.other_button: QToolButton | None = None
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #a00000; font-weight: bold;")

        # The right side is a vertical splitter: the picture above (what a technologist looks at most; drag the
        # handle to change the split), probabilities, review buttons and the differential below.
        right_top = QWidget()
        rv = QVBoxLayout(right_top)
        rv.setContentsMargins(6, 6, 6, 0)
        top = QHBoxLayout()
        top.addWidget(self.preview_title, 1)
        top.addWidget(self.heat_box)
        opacity_label = QLabel("Opacity")
        opacity_label.setBuddy(self.heat_opacity)
        top.addWidget(opacity_label)
        top.addWidget(self.heat_opacity)
        self.save_heat_button = QToolButton(text="Save…")
        self.save_heat_button.setToolTip("Save the image with its heatmap as PNG")
        self.save_heat_button.clicked.connect(lambda: self.save_heatmap())
        top.addWidget(self.save_heat_button)
        top.addWidget(self.cell_zoom)
        top.addWidget(self.zoom_button)
        rv.addLayout(top)
        rv.addWidget(self.preview_scroll, 1)
        rv.addWidget(self.error_label)
        right_bottom = QWidget()
        rv = QVBoxLayout(right_bottom)
        rv.setContentsMargins(6, 0, 6, 6)
        rv.addWidget(QLabel("<b>Class probabilities</b>"))
        rv.addLayout(self.prob_grid)
        rv.addWidget(QLabel("<b>Review</b> (keys 1–4 or E/L/M/N, other cell types: Other…, Enter = confirm)"))
        rv.addLayout(self.review_row)

        # Differential
        self.diff_mode = QComboBox()
        self.diff_mode.addItems(["By model", "By review"])
        self.diff_mode.setAccessibleName("Differential counts")
        self.diff_mode.currentIndexChanged.connect(lambda _: self.update_differential())
        self.diff_table = QTableWidget(0, 2)
        self.diff_table.setHorizontalHeaderLabels(["Count", "%"])
        self.diff_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.diff_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.diff_table.setFocusPolicy(Qt.NoFocus)
        self.diff_table.verticalHeader().setDefaultSectionSize(24)
        self.diff_table.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.review_progress = QLabel("")
        self.sign_label = QLabel("")
        self.sign_label.setStyleSheet("color: #006400; font-weight: bold;")
        self.sign_label.hide()
        dh = QHBoxLayout()
        dh.addWidget(QLabel("<b>Differential</b>"))
        dh.addStretch(1)
        dh.addWidget(self.diff_mode)
        rv.addLayout(dh)
        rv.addWidget(self.diff_table, 1)
        rv.addWidget(self.review_progress)
        rv.addWidget(self.sign_label)
        right = QSplitter(Qt.Vertical)
        right.addWidget(right_top)
        right.addWidget(right_bottom)
        right.setChildrenCollapsible(False)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 0)
        self.preview_split = right

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([760, 500])
        self.main_split = split
        self.setCentralWidget(split)

        # Status bar: progress, time left, model
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.cancel_button.hide()
        self.model_label = QLabel("")
        sb = self.statusBar()
        sb.addPermanentWidget(self.progress_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.model_label)

    def _labels_changed(self) -> None:
        """Rebuild the widgets that depend on the model's labels."""
        labels = self.model.labels if self.model else ()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("All classes", "")
        for lab in labels:
            self.class_combo.addItem(lab.capitalize(), lab)
        self.class_combo.blockSignals(False)
        for w in list(self.prob_bars.values()) + list(self.review_buttons.values()):
            w.deleteLater()
        if self.other_button is not None:
            self.other_button.deleteLater()
            self.other_button = None
        while self.prob_grid.count():
            item = self.prob_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.prob_bars.clear()
        self.review_buttons.clear()
        self._button_keys = {c.name: c.key for c in review_classes(labels, [])}  # one definition of the keys
        for i, lab in enumerate(labels):
            self.prob_grid.addWidget(QLabel(lab.capitalize()), i, 0)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("%p %")
            bar.setTextVisible(True)
            self.prob_grid.addWidget(bar, i, 1)
            self.prob_bars[lab] = bar
            key = self._button_keys[lab]
            b = QPushButton(f"{lab.capitalize()} ({key})")
            b.setToolTip(f"Review this cell as {lab} (key {key})")
            b.clicked.connect(lambda _=False, lab=lab: self.assign_current(lab))
            self.review_row.addWidget(b)
            self.review_buttons[lab] = b
        extras = [c for c in review_classes(labels, self.extra_classes()) if c.name not in labels]
        if extras:
            other = QToolButton()
            other.setText("Other…")
            other.setToolTip("Review this cell as another cell type (basophil, blast, nucleated red cell, …); each has a key")
            other.setPopupMode(QToolButton.InstantPopup)
            menu = QMenu(other)
            for c in extras:
                a = menu.addAction(f"{c.name.capitalize()} ({c.key})" + ("  · per 100 white cells" if c.per_100 else ""))
                a.triggered.connect(lambda _=False, name=c.name: self.assign_current(name))
            other.setMenu(menu)
            self.review_row.addWidget(other)
            self.other_button = other
        if hasattr(self, "review_keys_action"):
            self.review_keys_action.setText(self._review_help())

    def extra_classes(self) -> list:
        """The lab's list of further cell types (preferences), or the default list."""
        from hv_desktop.core.review import EXTRA_CLASSES, parse_extra_classes

        text = self.settings.value("review/cell_types")
        if isinstance(text, str):
            try:
                return parse_extra_classes(text, self.model.labels if self.model else ())
            except ValueError:
                pass  # a damaged setting: the default list
        return list(EXTRA_CLASSES)

    def edit_cell_types(self, text: str | None = None) -> bool:
        """Preferences: edit the further cell types (one per line: name, KEY[, per 100])."""
        from hv_desktop.core.review import EXTRA_CLASSES, format_extra_classes, parse_extra_classes

        if text is None:
            dlg = QDialog(self)
            dlg.setWindowTitle("Cell types for review")
            lay = QVBoxLayout(dlg)
            hint = QLabel(
                "Besides the model's classes, the cell types a reviewer can assign: one per line, "
                "<i>name, KEY</i>, and <i>, per 100</i> for types counted per 100 white cells outside "
                "the differential (nucleated red cells, smudge cells…)."
            )
            hint.setWordWrap(True)
            edit = QPlainTextEdit(format_extra_classes(self.extra_classes()))
            lay.addWidget(hint)
            lay.addWidget(edit)
            buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel | QDialogButtonBox.RestoreDefaults)
            buttons.accepted.connect(dlg.accept)
            buttons.rejected.connect(dlg.reject)
            buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(
                lambda: edit.setPlainText(format_extra_classes(EXTRA_CLASSES))
            )
            lay.addWidget(buttons)
            dlg.resize(480, 380)
            if dlg.exec() != QDialog.Accepted:
                return False
            text = edit.toPlainText()
        try:
            parse_extra_classes(text, self.model.labels if self.model else ())
        except ValueError as exc:
            QMessageBox.warning(self, "Cell types not changed", str(exc).capitalize() + ".")
            return False
        self.settings.setValue("review/cell_types", text)
        self._labels_changed()
        self.update_differential()
        return True

    def _operator(self) -> str:
        return str(self.settings.value("operator", "") or "")

    def _review_help(self) -> str:
        labels = self.model.labels if getattr(self, "model", None) else ()
        model_keys = " ".join(c.key for c in review_classes(labels) if c.name in labels)
        return f"Review keys: {model_keys or '1–4'} assign, other cell types by letter (Other…), Enter confirms, Backspace clears"

    # ------------------------------------------------------------------ model
    def load_model(self, path: Path, quiet: bool = False) -> bool:
        try:
            model = Model(path)
        except ModelError as exc:
            log.warning("model refused: %s", exc)
            if not quiet:
                QMessageBox.critical(self, "Model not loaded", f"{exc}\n\nThe current model is still in use.")
            else:
                self.statusBar().showMessage(f"No model: {exc}")
            self.model_label.setText("No model loaded" if self.model is None else self.model_label.text())
            self._update_actions()
            return False
        self.model = model
        self.model_label.setText(f"Model: {model.info.name} v{model.info.version}")
        self.cell_zoom.setEnabled(model.info.preprocessing.crop != "none")
        self._labels_changed()
        self._update_actions()
        return True

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "ONNX models (*.onnx);;All files (*)")
        if path:
            if self.load_model(Path(path)):
                self.statusBar().showMessage(f"Loaded {self.model.info.name} v{self.model.info.version}", 5000)

    # ------------------------------------------------------------------ running
    def open_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self._last_dir(), IMAGE_FILTER)
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._last_dir())
        if folder:
            self.open_paths([Path(folder)])

    def classify(self, paths: list[Path]) -> None:
        """Queue paths; the run starts now or when the current one ends."""
        if self.signed is not None and not self._reclassifying:
            QMessageBox.information(
                self,
                "Case signed off",
                "This case is signed off. Start a new session (File ▸ New Session) for new images, or unlock the case first.",
            )
            return
        if self.model is None:
            QMessageBox.warning(self, "No model", "Load a model first (File ▸ Load Model…).")
            return
        if not self._reclassifying and not self.review.current:
            self.new_case(self._case_name(paths), ask=False)  # the first images open a case named after them
        for p in paths:
            if p.is_dir():
                self._remember_recent(p)
        if self.job is not None:
            self.queue.append(paths)
            self.statusBar().showMessage("Queued; it starts when the current run ends", 4000)
            return
        self._start(paths)

    def _start(self, paths: list[Path]) -> None:
        self._run_case = self.review.current
        self.job = ClassifyJob(self.model, paths, self)
        self.job.worker.total.connect(self._on_total)
        self.job.worker.results.connect(self._on_results)
        self.job.worker.finished.connect(self._on_finished)
        self._run_started, self._run_total, self._run_done, self._skipped = time.monotonic(), 0, 0, 0
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.progress_label.setText("Scanning…")
        self._update_actions()
        self.job.start()

    def _on_total(self, n: int) -> None:
        self._run_total = n
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(0)

    def _on_results(self, batch: list[Result]) -> None:
        if self._reclassifying:
            self._run_done += len(batch)
            self.results.replace_same_files(batch)
            self.progress.setValue(self._run_done)
            self.progress_label.setText(f"Re-classifying with the new model: {self._run_done} / {self._run_total}")
            self._diff_timer.start()
            self._autosave_timer.start()
            return
        self._run_done += len(batch)
        # The same file (same path, same bytes) opened again keeps its existing row and review.
        fresh = [r for r in batch if self._key(r) not in self._seen]
        for r in fresh:
            r.case = self._run_case
        self._seen.update(self._key(r) for r in fresh)
        self._skipped += len(batch) - len(fresh)
        self.results.append(fresh)
        self.progress.setValue(self._run_done)
        elapsed = time.monotonic() - self._run_started
        rate = self._run_done / elapsed if elapsed > 0 else 0
        left = (self._run_total - self._run_done) / rate if rate > 0 else 0
        self.progress_label.setText(f"{self._run_done} / {self._run_total} · {rate:.0f} img/s · {left:.0f} s left")
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount():
            self.table.selectRow(0)
        self.empty_hint.hide()
        self._diff_timer.start()
        self._autosave_timer.start()

    @staticmethod
    def _key(r: Result) -> tuple[str, str | None, str | None]:
        return str(r.path), r.sha256, r.error

    def _on_finished(self, cancelled: bool, error: str) -> None:
        job, self.job = self.job, None
        self._reclassifying = False
        if job is not None:
            job.wait(5000)
            job.deleteLater()
        self.progress.hide()
        self.cancel_button.hide()
        done = self._run_done
        msg = f"Cancelled after {done} of {self._run_total} files" if cancelled else f"Classified {done} files"
        if self._skipped:
            msg += f" ({self._skipped} already in this session, kept with their reviews)"
        self.progress_label.setText("")
        self.statusBar().showMessage(msg, 8000)
        if error:
            log.error("run failed: %s", error)
            QMessageBox.critical(self, "Classification stopped", f"The run stopped: {error}\n\nResults so far are kept.")
        self.update_differential()
        self.autosave()
        self._update_actions()
        if self.queue and not cancelled:
            self._start(self.queue.pop(0))
        else:
            self.queue.clear()
            self.runFinished.emit()

    def cancel_run(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Cancelling…")

    def is_running(self) -> bool:
        return self.job is not None

    # ------------------------------------------------------------------ site adaptation
    def _models_folder(self) -> Path:
        from hv_desktop.gui.app import data_dir

        return self.data_folder or data_dir()

    def reviewed_cells(self) -> list:
        from hv_desktop.core.adapt import LabelledCell

        return [LabelledCell(r.path, r.reviewer_label) for r in self.results.results if r.ok and r.reviewer_label]

    def adapt_to_lab(self):
        """Open the adapt dialog on the session's reviewed cells; a saved site model is loaded at once."""
        from hv_desktop.gui.adapt_dialog import AdaptDialog

        if self.model is None or self.job is not None:
            return None
        if not self.model.info.embedding_output:
            QMessageBox.information(
                self,
                "Adapt to This Lab",
                "This model cannot be adapted (it has no embedding output). Review ▸ Use Shipped Model first.",
            )
            return None
        dlg = AdaptDialog(self.model, self.reviewed_cells(), self._models_folder(), self)
        dlg.modelSaved.connect(self._use_site_model)
        dlg.open()
        return dlg

    def _use_site_model(self, path: Path) -> None:
        if self.load_model(path):
            self.statusBar().showMessage(f"Using {self.model.info.name}; re-classifying this session", 8000)
            self.reclassify_session()

    def use_shipped_model(self) -> None:
        if self.job is not None:
            return
        if self.load_model(bundled_model_path()):
            self.statusBar().showMessage(f"Using the shipped model {self.model.info.name} v{self.model.info.version}", 8000)
            self.reclassify_session()

    def reclassify_session(self) -> None:
        """Run every classified file through the current model again, in the background; reviews are kept."""
        paths = [r.path for r in self.results.results if r.ok]
        if not paths or self.model is None or self.job is not None:
            return
        self._reclassifying = True
        self._start(paths)

    # ------------------------------------------------------------------ cases
    @staticmethod
    def _case_name(paths: list[Path]) -> str:
        return next((p.name for p in paths if p.is_dir()), paths[0].parent.name if paths else "") or "Case"

    def open_paths(self, paths: list[Path]) -> None:
        """What a person opens or drops: asks whether it is a new case or more of the current one (the watch
        folder and scripts add to the current case without asking)."""
        if self.review.current and self.review.case_results() and self.job is None and self.signed is None:
            choice = self.ask_case(self._case_name(paths))
            if choice is None:
                return
            if choice == "new" and self.new_case(self._case_name(paths), ask=True) is None:
                return
        self.classify(paths)

    def ask_case(self, name: str) -> str | None:
        """'new', 'add' or None (cancel): a dialog, replaced in tests."""
        box = QMessageBox(self)
        box.setWindowTitle("New case or the same case?")
        box.setText(f"Are these images a new case, or more of case {self.review.current}?")
        new = box.addButton("New case…", QMessageBox.AcceptRole)
        add = box.addButton(f"Add to {self.review.current}", QMessageBox.ActionRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        return "new" if box.clickedButton() is new else "add" if box.clickedButton() is add else None

    def new_case(self, name: str = "", ask: bool = True) -> str | None:
        """Open a case (a dialog asks the sample ID, operator and note unless ``ask`` is False)."""
        operator, note = self._operator(), ""
        if ask:
            dlg = ask_case_details(self, "New case", operator, name, heatmaps=False)
            if dlg is None:
                return None
            name, operator, note = dlg.case_id.text(), dlg.operator.text(), dlg.note.toPlainText()
        cid = self.review.new_case(name, operator, note)
        self._refresh_cases()
        return cid

    def _refresh_cases(self) -> None:
        self.case_combo.blockSignals(True)
        self.case_combo.clear()
        for cid in self.review.cases:
            self.case_combo.addItem(cid, cid)
        self.case_combo.setCurrentIndex(max(0, self.case_combo.findData(self.review.current)))
        self.case_combo.blockSignals(False)
        self.case_combo.setEnabled(bool(self.review.cases))
        self.proxy.set_filters(case=self.review.current)
        self.gallery_proxy.set_filters(case=self.review.current)
        self._show_signed()
        self.update_differential()

    def _case_chosen(self) -> None:
        cid = self.case_combo.currentData()
        if cid and cid != self.review.current:
            self.review.current = cid
            self._refresh_cases()
            self._autosave_timer.start()

    def case_results(self) -> list[Result]:
        """The current case's results (all of them before cases are used)."""
        return self.review.case_results()

    def _case_info(self, info):
        """Report details for the current case: its ID, operator and note unless the dialog gave others."""
        from hv_desktop.gui.report import ReportInfo

        c = self.review.cases.get(self.review.current)
        if c is None:
            return info
        if info is None:
            return ReportInfo(c.case_id, c.note, c.operator)
        return ReportInfo(info.case_id or c.case_id, info.note or c.note, info.operator or c.operator)

    # ------------------------------------------------------------------ consultation
    def export_consultation(self, path: Path | None = None, info=None) -> bool:
        """Write the session as a consultation package (a reply, when the session came in one)."""
        from hv_desktop.core.package import PackageError, write_package
        from hv_desktop.gui.report import ReportInfo, write_pdf

        if not self.case_results() or self.model is None:
            return False
        if info is None:
            dlg = ask_case_details(self, "Export case for consultation", self._operator(), self.review.current, heatmaps=False)
            if dlg is None:
                return False
            info = ReportInfo(dlg.case_id.text(), dlg.note.toPlainText(), dlg.operator.text())
        kind = "reply" if self.consultation else "case"
        path = self._save_target(
            path, "Export for consultation", f"{info.case_id or kind}-{kind}.zip", "Consultation packages (*.zip)"
        )
        if path is None:
            return False
        import tempfile

        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                pdf = Path(tmp) / "report.pdf"
                write_pdf(
                    pdf,
                    self.case_results(),
                    list(self.model.labels),
                    self.model.info.name,
                    self.model.info.version,
                    info,
                    self.model,
                    False,
                    signed=self.signed,
                    extras=self.extra_classes(),
                )
                case = {
                    "case_id": info.case_id,
                    "operator": info.operator,
                    "note": info.note,
                    "signed_off": self.signed.as_dict() if self.signed else None,
                }
                write_package(
                    path,
                    self.case_results(),
                    self.model.labels,
                    self.model.info.name,
                    self.model.info.version,
                    case,
                    kind="reply" if self.consultation else "request",
                    package_id=(self.consultation or {}).get("package_id", ""),
                    report_pdf=pdf.read_bytes(),
                )
        except (OSError, PackageError) as exc:
            QMessageBox.critical(self, "Not exported", f"The package could not be written: {exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"Consultation package written: {path}", 8000)
        return True

    def open_package(self, path: Path | None = None, replace: bool | None = None) -> bool:
        """Open a case sent for consultation (it becomes this session, the sender's reviews in their own
        column) or a consultant's reply (its disagreements with this session's reviews are listed)."""
        from hv_desktop.core.package import PackageError, disagreements, read_package

        if path is None:
            name, _ = QFileDialog.getOpenFileName(
                self, "Open consultation package", self._last_dir(), "Consultation packages (*.zip)"
            )
            if not name:
                return False
            path = Path(name)
        dest = self._models_folder() / "consultations" / f"{path.stem[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            c = read_package(path, dest)
        except PackageError as exc:
            QMessageBox.warning(self, "Package refused", f"{path.name}: {exc}")
            return False
        if c.kind == "reply":
            self.last_disagreements = disagreements(self.case_results(), c)
            lines = [f"{n}: you {mine or '(not reviewed)'}, consultant {theirs}" for n, mine, theirs in self.last_disagreements]
            QMessageBox.information(
                self,
                "Consultant's reply",
                (
                    "The consultant disagrees on:\n"
                    + "\n".join(lines[:40])
                    + (f"\n… and {len(lines) - 40} more" if len(lines) > 40 else "")
                )
                if lines
                else "The consultant agrees with every review of this case.",
            )
            return True
        if self.results.results and replace is None:
            replace = (
                QMessageBox.question(
                    self,
                    "Open consultation",
                    "Open the package as a new session? The current results are cleared (export them first if needed).",
                )
                == QMessageBox.Yes
            )
        if self.results.results and not replace:
            return False
        self.results.clear()
        self.review.clear()
        self._seen.clear()
        self.results.sender_labels = dict(c.sender_labels)
        self.consultation = {"kind": c.kind, "package_id": c.package_id, "case": c.case}
        cid = self.review.new_case(
            str(c.case.get("case_id") or c.package_id or "Consultation")[:200],
            str(c.case.get("operator") or "")[:200],
            str(c.case.get("note") or "")[:4000],
        )
        for r in c.results:
            r.case = cid
        self.results.append(c.results)
        self._refresh_cases()
        self._seen.update(self._key(r) for r in c.results)
        self.table.setColumnHidden(COL_SENDER, False)
        self._show_signed()
        self.update_differential()
        self.autosave()
        self.statusBar().showMessage(
            f"Consultation {c.case.get('case_id') or c.package_id}: the sender's reviews "
            "are in 'Sender's review'; export your reply with File ▸ Export Case for "
            "Consultation",
            12000,
        )
        return True

    # ------------------------------------------------------------------ sign-off
    def sign_off_case(self, operator: str | None = None, reason: str | None = None) -> bool:
        """Sign the case off (a dialog asks who, and a reason when flagged cells are left); then it is locked."""
        if self.signed is not None or not self.case_results():
            return False
        left = sign_off_blockers(self.case_results())
        if operator is None:
            dlg = SignOffDialog(self, self._operator(), left)
            if dlg.exec() != QDialog.Accepted:
                return False
            operator, reason = dlg.operator.text(), dlg.reason.toPlainText()
        try:
            signed = self.review.sign_off(operator, datetime.now().isoformat(timespec="minutes"), reason or "")
        except ValueError as exc:
            QMessageBox.warning(self, "Not signed off", str(exc).capitalize() + ".")
            return False
        self.settings.setValue("operator", signed.operator)
        self._show_signed()
        self.autosave()
        return True

    def unlock_case(self, reason: str | None = None) -> bool:
        if self.signed is None:
            return False
        if reason is None:
            from PySide6.QtWidgets import QInputDialog

            reason, ok = QInputDialog.getText(
                self, "Unlock signed-off case", "Why is the signed-off case being changed? (recorded)"
            )
            if not ok:
                return False
        try:
            self.review.unlock(reason, datetime.now().isoformat(timespec="minutes"))
        except ValueError as exc:
            QMessageBox.warning(self, "Not unlocked", str(exc).capitalize() + ".")
            return False
        self._show_signed()
        self.autosave()
        return True

    def _restore_consultation(self, c) -> None:
        """The consultation this session came in, read back from the session file, type-checked."""
        if not isinstance(c, dict) or not isinstance(c.get("sender_labels"), dict):
            return
        labels = {str(k)[:64]: (v if isinstance(v, str) else None) for k, v in list(c["sender_labels"].items())[:100_000]}
        self.results.sender_labels = labels
        self.consultation = {
            "kind": str(c.get("kind", "request")),
            "package_id": str(c.get("package_id", ""))[:64],
            "case": c.get("case") if isinstance(c.get("case"), dict) else {},
        }
        self.table.setColumnHidden(COL_SENDER, False)

    def _show_signed(self) -> None:
        s = self.signed
        self.sign_label.setText(f"✔ Signed off by {s.operator}, {s.at.replace('T', ' ')}" if s else "")
        self.sign_label.setVisible(s is not None)
        self._update_actions()

    # ------------------------------------------------------------------ watch folder
    def toggle_watch(self, folder: Path | None = None) -> None:
        from hv_desktop.core.scan import scan
        from hv_desktop.core.watch import SettleTracker

        if self.watch_folder is not None:
            self.fs_watcher.removePaths(self.fs_watcher.directories())
            self.watch_timer.stop()
            self.statusBar().showMessage(f"Stopped watching {self.watch_folder}", 5000)
            self.watch_folder = None
            self.act_watch.setChecked(False)
            self.setWindowTitle("HematoVision — white blood cell classification")
            return
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self, "Watch folder", self._last_dir())
            folder = Path(chosen) if chosen else None
        if folder is None or self.model is None:
            self.act_watch.setChecked(False)
            return
        self.watch_tracker = SettleTracker(settle=0.4)
        for item in scan([folder]):  # only new arrivals (and files replaced from now on)
            if not item.error:
                self.watch_tracker.retry_or_finish(item.path, failed=False)
        self.watch_folder = folder
        self.fs_watcher.addPath(str(folder))
        self.watch_timer.start()
        self.act_watch.setChecked(True)
        self.setWindowTitle(f"HematoVision — watching {folder}")
        self.statusBar().showMessage(f"Watching {folder}: new images are classified as they arrive", 8000)

    def poll_watch(self) -> None:
        from hv_desktop.core.scan import scan

        if self.watch_folder is None or self.watch_tracker is None:
            return
        candidates = [i.path for i in scan([self.watch_folder]) if not i.error]
        ready = self.watch_tracker.observe(candidates)
        for p in ready:
            self.watch_tracker.retry_or_finish(p, failed=False)
        if ready:
            self.classify(ready)

    # ------------------------------------------------------------------ practice
    def open_practice(self, folder: Path | None = None):
        from hv_desktop.gui.practice_window import PracticeWindow

        if self.model is None:
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                self, "Practice set: a folder with one subfolder per class", self._last_dir()
            )
            if not chosen:
                return None
            folder = Path(chosen)
        try:
            win = PracticeWindow(self.model, folder, self)
        except (ValueError, OSError) as exc:
            QMessageBox.warning(self, "Practice set", str(exc))
            return None
        win.show()
        return win

    # ------------------------------------------------------------------ preview
    def _view(self):
        """The view the reviewer is working in: the table or the gallery."""
        return self.gallery if self.tabs.currentWidget() is self.gallery else self.table

    def _current_result(self) -> tuple[Result | None, int]:
        view = self._view()
        idx = view.currentIndex()
        if not idx.isValid():
            return None, -1
        proxy = view.model()
        src = proxy.mapToSource(idx)
        return self.results.results[src.row()], src.row()

    def show_preview(self, index) -> None:
        if not index.isValid():
            return
        r = index.data(RESULT_ROLE)
        self._preview_result = r
        self._preview_pixmap = None
        why, tip = "", ""
        if awaiting_review(r):
            # Say why (briefly here, fully in the tooltip), so a flag reads as the model's doubt, not a finding.
            short, tip = flag_reason(r)
            why = f"<br><span style='color:#b35900'>⚑ Needs review: {short}</span>"
        edge = ""
        if r.ok:
            try:
                im = open_image(r.path, draft_size=(800, 800))
                im.thumbnail((1600, 1600))
                if self.model is not None:
                    from hv_desktop.core.heatmap import view_for

                    k = self.model.labels.index(r.label) if r.label in self.model.labels else None
                    # One nucleus search for the outline, the zoom and the edge note.
                    box, centre = model_box_and_centre(im, self.model.info.preprocessing)
                    if at_image_edge(box, centre):
                        edge = "<br><small>Cell at the image edge: may be cut off.</small>"
                        tip += ("\n\n" if tip else "") + (
                            "The classified square had to stay inside the image, so "
                            "the cell is off-centre in it and may be cut by the edge."
                        )
                    view = view_for(self.model, im, self.heat_box.isChecked(), k, self.heat_opacity.value() / 100, box)
                    if self._zooms_to_cell():
                        view = view.crop(cell_view_box(box, im.size))
                    im = view
                self._preview_pixmap = to_pixmap(np.asarray(im))
            except ImageError as exc:
                self._preview_pixmap = to_pixmap(r.thumbnail) if r.thumbnail is not None else None
                self.statusBar().showMessage(f"Preview unavailable: {exc}", 5000)
        self.preview_title.setToolTip(tip)
        self.preview_title.setText(
            f"<b>{html.escape(r.path.name)}</b><br><small>{html.escape(str(r.path.parent))}</small>{why}{edge}"
        )
        self._render_preview()
        self.error_label.setText(f"Could not classify: {r.error}" if r.error else "")
        for lab, bar in self.prob_bars.items():
            bar.setValue(int(round(r.probabilities.get(lab, 0.0) * 1000)))
        for lab, b in self.review_buttons.items():
            b.setEnabled(r.ok)
            b.setStyleSheet("font-weight: bold;" if r.reviewer_label == lab else "")
            b.setText(f"{'✓ ' if r.reviewer_label == lab else ''}{lab.capitalize()} ({self._button_keys[lab]})")
        if self.other_button is not None:
            other = r.reviewer_label if r.reviewer_label and r.reviewer_label not in self.review_buttons else None
            self.other_button.setEnabled(r.ok)
            self.other_button.setStyleSheet("font-weight: bold;" if other else "")
            self.other_button.setText(f"✓ {other.capitalize()}" if other else "Other…")

    def save_heatmap(self, path: Path | None = None) -> bool:
        """The current cell with its class-activation overlay, as a PNG (atomic)."""
        from hv_desktop.core.heatmap import heatmap_png

        r, _ = self._current_result()
        if r is None or not r.ok or self.model is None or not self.model.cam_name:
            self.statusBar().showMessage("No heatmap for this cell", 4000)
            return False
        if path is None:
            name, _ = QFileDialog.getSaveFileName(
                self, "Save heatmap", str(r.path.with_suffix(".heatmap.png").name), "PNG images (*.png)"
            )
            if not name:
                return False
            path = Path(name)
        try:
            heatmap_png(self.model, r.path, path, opacity=self.heat_opacity.value() / 100, result=r)
        except (ImageError, OSError, ValueError) as exc:
            QMessageBox.critical(self, "Heatmap not saved", f"Could not save {path}:\n{exc}")
            return False
        self.statusBar().showMessage(f"Heatmap saved: {path}", 6000)
        return True

    def _zooms_to_cell(self) -> bool:
        return self.cell_zoom.isChecked() and self.model is not None and self.model.info.preprocessing.crop != "none"

    def _cell_zoom_toggled(self, on: bool) -> None:
        self.settings.setValue("preview/cell_zoom", "true" if on else "false")
        self._refresh_preview()

    def _refresh_preview(self) -> None:
        view = self._view()
        self.show_preview(view.currentIndex())

    def _render_preview(self) -> None:
        pm: QPixmap | None = getattr(self, "_preview_pixmap", None)
        if pm is None:
            self.preview.setPixmap(QPixmap())
            r = getattr(self, "_preview_result", None)
            self.preview.setText("No image" if r is None or r.ok else "✕ Unreadable file")
            return
        if self.zoom_button.isChecked():
            self.preview.setMinimumSize(pm.size())  # 100 %: scroll around the full-size image
            self.preview.setPixmap(pm)
        else:
            # Fit: the label may shrink below its pixmap, so the old image never forces scroll bars.
            self.preview.setMinimumSize(1, 1)
            area = self.preview_scroll.size() - QSize(12, 12)
            self.preview.setPixmap(pm.scaled(area, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._render_preview()

    # ------------------------------------------------------------------ review
    def eventFilter(self, obj, event) -> bool:
        scroll = getattr(self, "preview_scroll", None)
        if event.type() == QEvent.Resize and scroll is not None and obj is scroll.viewport():
            # The preview area also changes size when the text above it wraps: refit the image then too.
            QTimer.singleShot(0, self._render_preview)
            return False
        if event.type() == QEvent.KeyPress and obj in (self.table, self.gallery) and self.model is not None:
            key, text = event.key(), event.text().lower()
            if text and not (event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier)):
                name = key_map(self.model.labels, self.extra_classes()).get(text)
                if name is not None:
                    self.assign_current(name)
                    return True
            if key in (Qt.Key_Return, Qt.Key_Enter):
                r, _ = self._current_result()
                if r is not None and r.ok:
                    self.assign_current(r.label)
                return True
            if key in (Qt.Key_Backspace, Qt.Key_Delete):
                self.assign_current(None)
                return True
        return super().eventFilter(obj, event)

    @property
    def signed(self) -> SignOff | None:
        return self.review.signed

    @property
    def audit(self) -> list[dict]:
        return self.review.audit

    def _locked(self, row: int | None = None) -> bool:
        """A signed-off case cannot change; say so instead."""
        if not self.review.locked(row):
            return False
        case = self.review.results[row].case if row is not None else self.review.current
        s = self.review.signoffs[case]
        self.statusBar().showMessage(
            f"Case {case or ''} signed off by {s.operator} at {s.at}: Review ▸ Unlock Signed-Off Case to change it", 6000
        )
        return True

    def assign_current(self, label: str | None) -> None:
        """Set (or clear) the reviewer's label of the current cell, then move on."""
        r, row = self._current_result()
        if r is None or not r.ok or self._locked(row):
            return
        self.review.assign(row, label)
        self.results.rows_changed([row])
        self._autosave_timer.start()
        self.update_differential()
        if label is not None:
            self._move_next()
        else:
            view = self._view()
            self.show_preview(view.currentIndex())

    def _move_next(self) -> None:
        view = self._view()
        idx = view.currentIndex()
        nxt = view.model().index(idx.row() + 1, 0)
        if nxt.isValid():
            view.selectionModel().setCurrentIndex(nxt, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)
        else:
            self.show_preview(idx)

    def accept_unflagged(self, ask: bool = True) -> int:
        """The usual workflow: confirm the confident pre-classifications at once, review the flagged ones."""
        if self._locked():
            return 0
        n = sum(1 for r in self.case_results() if r.ok and not r.needs_review and not r.reviewer_label)
        if not n:
            self.statusBar().showMessage("No unflagged, unreviewed cells", 4000)
            return 0
        if (
            ask
            and QMessageBox.question(
                self,
                "Accept unflagged cells",
                f"Confirm the model's class for {n} cells that are not flagged?\n"
                "Flagged cells stay for you to review (Ctrl+Z takes this back).",
            )
            != QMessageBox.Yes
        ):
            return 0
        rows = self.review.accept_unflagged()
        self.results.rows_changed(rows)
        self.update_differential()
        self._autosave_timer.start()
        left = differential(self.case_results(), self.model.labels).flagged
        self.statusBar().showMessage(f"Accepted {len(rows)} cells; {left} flagged cells to review", 6000)
        return len(rows)

    def undo_review(self) -> None:
        if self._locked():
            return
        rows = self.review.undo()
        if not rows:
            self.statusBar().showMessage("Nothing to undo", 3000)
            return
        self.results.rows_changed(rows)
        self.update_differential()
        self._autosave_timer.start()
        if len(rows) == 1:  # back to the cell, so the reviewer sees what changed
            src = self.results.index(rows[0], 0)
            idx = self._view().model().mapFromSource(src) if hasattr(self._view().model(), "mapFromSource") else src
            self._view().selectionModel().setCurrentIndex(idx, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)
        self.statusBar().showMessage(f"Undone: {len(rows)} review{'s' if len(rows) != 1 else ''}", 3000)

    def next_flagged(self) -> None:
        view = self.table
        self.tabs.setCurrentWidget(self.table)
        start = view.currentIndex().row() + 1
        n = self.proxy.rowCount()
        for k in range(n):
            row = (start + k) % n
            r = self.proxy.index(row, 0).data(RESULT_ROLE)
            if awaiting_review(r):
                view.selectRow(row)
                return
        self.statusBar().showMessage("No cell left that needs review", 4000)

    # ------------------------------------------------------------------ differential
    def update_differential(self) -> None:
        labels = list(self.model.labels) if self.model else []
        reviewed = self.diff_mode.currentIndex() == 1
        self.proxy.reviewed_view = reviewed
        d = differential(self.case_results(), labels, reviewed=reviewed)
        if reviewed:  # white cells as % of white cells in clinical order; NRBC, smudge... per 100 white cells
            rd = reviewed_differential(self.case_results(), labels, self.extra_classes())
            rows = [(n.capitalize(), str(c), f"{p:.1f}") for n, c, p in rd.white]
            rows += [(f"{n.capitalize()} /100 WBC", str(c), f"{p:.1f}") for n, c, p in rd.per_100]
        else:
            rows = [(lab.capitalize(), str(n), f"{d.percent(lab):.1f}") for lab, n in d.counts.items()]
        rows.append(("Classified", str(d.classified), ""))
        rows.append(("⚑ Needs review", str(d.flagged), f"{100 * d.flagged / d.classified:.1f}" if d.classified else ""))
        rows.append(("✕ Failed", str(d.failed), ""))
        self.diff_table.setRowCount(len(rows))
        self.diff_table.setVerticalHeaderLabels([r[0] for r in rows])
        for i, (_, n, pct) in enumerate(rows):
            for j, text in enumerate((n, pct)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.diff_table.setItem(i, j, item)
        full = self.diff_table.horizontalHeader().height() + 24 * len(rows) + 4
        # Every row shows by default; dragging the preview's splitter down lets the table scroll instead.
        self.diff_table.setMaximumHeight(full)
        self.diff_table.setMinimumHeight(min(full, self.diff_table.horizontalHeader().height() + 24 * 3 + 4))
        self.review_progress.setText(
            f"Reviewed {d.reviewed} of {d.classified} cells" + (f" · {d.flagged} still need review" if d.flagged else "")
        )
        self.empty_hint.setVisible(d.total == 0)

    # ------------------------------------------------------------------ export / session
    def export_csv(self, path: Path | None = None) -> bool:
        if not self.case_results():
            QMessageBox.information(self, "Nothing to export", "Classify some images first.")
            return False
        path = self._save_target(path, "Export CSV", f"hematovision-{self.review.current or 'results'}.csv", "CSV files (*.csv)")
        if path is None:
            return False
        info = self.model.info if self.model else None
        try:
            case = {"case": self.review.current} if self.review.current else {}
            if self.signed:
                case.update(signed_off_by=self.signed.operator, signed_off_at=self.signed.at)
            write_csv(
                path,
                self.case_results(),
                list(self.model.labels) if self.model else [],
                info.name if info else "",
                info.version if info else "",
                case,
            )
        except OSError as exc:
            QMessageBox.critical(
                self,
                "Export failed",
                f"Could not write {path}:\n{exc.strerror or exc}\n\nNothing was lost; choose another location.",
            )
            return False
        self.statusBar().showMessage(f"Exported {len(self.case_results())} rows to {path}", 8000)
        return True

    def _save_target(self, path: Path | None, title: str, suggested: str, filters: str) -> Path | None:
        """``path``, or the file a save dialog gives; None when cancelled or when writing there would destroy
        something (hv_desktop.core.outputs)."""
        if path is None:
            suggested = suggested.replace("/", "_")
            name, _ = QFileDialog.getSaveFileName(self, title, str(Path(self._last_dir()) / suggested), filters)
            if not name:
                return None
            path = Path(name)
        return path if self._output_allowed(path) else None

    def _output_allowed(self, path: Path) -> bool:
        """Never write over one of the session's images, a link or a device (hv_desktop.core.outputs)."""
        from hv_desktop.core.outputs import output_problem

        problem = output_problem(path, [r.path for r in self.results.results])
        if problem:
            QMessageBox.warning(self, "Choose another file", f"{problem}.\n\nNothing was written.")
            return False
        return True

    def export_report(self, path: Path | None = None, info=None) -> bool:
        from hv_desktop.gui.report import ReportInfo, write_pdf

        if not self.case_results():
            QMessageBox.information(self, "Nothing to report", "Classify some images first.")
            return False
        heatmaps = False
        if info is None:
            dlg = ask_case_details(self, "Export report", self._operator())
            if dlg is None:
                return False
            info = ReportInfo(dlg.case_id.text(), dlg.note.toPlainText(), dlg.operator.text())
            heatmaps = dlg.heatmaps.isChecked()
            self.settings.setValue("operator", info.operator)
        path = self._save_target(path, "Export report", f"hematovision-{info.case_id or 'report'}.pdf", "PDF files (*.pdf)")
        if path is None:
            return False
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            pages = write_pdf(
                path,
                self.case_results(),
                list(self.model.labels),
                self.model.info.name,
                self.model.info.version,
                self._case_info(info),
                self.model,
                heatmaps,
                signed=self.signed,
                extras=self.extra_classes(),
            )
        except OSError as exc:
            QMessageBox.critical(self, "Report not written", f"Could not write {path}:\n{exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"Report written: {path} ({pages} pages)", 8000)
        return True

    def autosave(self, wait: bool = False) -> None:
        """Save the session off the GUI thread (serialising thousands of results would stall the
        window); a save requested while one runs is done right after it. ``wait`` blocks (on close)."""
        if self.autosave_path is None:
            return
        if self._restoring:  # the previous session is still being read: save once it is in
            self._autosave_again = True
            return
        with self._autosave_lock:
            if self._autosave_thread is not None and self._autosave_thread.is_alive():
                self._autosave_again = True
                if not wait:
                    return
        if self._autosave_thread is not None:
            self._autosave_thread.join()
        info = self.model.info if self.model else None
        snapshot = list(self.results.results)  # the list may grow while we write; the objects are shared
        extra = self.review.to_extra()
        if self.consultation:
            extra["consultation"] = dict(self.consultation, sender_labels=dict(self.results.sender_labels))
        args = (self.autosave_path, snapshot, info.name if info else "", info.version if info else "", extra)
        self._autosave_again = False
        self._autosave_thread = threading.Thread(target=self._autosave_worker, args=args, daemon=False)
        self._autosave_thread.start()
        if wait:
            self._autosave_thread.join()

    def _autosave_worker(self, path: Path, results: list, name: str, version: str, extra: dict | None = None) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_session(path, results, name, version, extra)
        except OSError as exc:
            log.error("autosave failed: %s", exc)
            self.autosaveFailed.emit(str(exc))
        with self._autosave_lock:
            again = self._autosave_again
        if again:
            self.autosaveAgain.emit()

    def restore_autosave(self) -> None:
        """Read the autosaved session off the GUI thread (10,000 results take seconds to check); autosave waits
        until it is in, so a slow restore is never overwritten by an empty session."""
        if self.autosave_path is None or not self.autosave_path.exists():
            return
        self._restoring = True
        path = self.autosave_path

        def work() -> None:
            try:
                self.sessionLoaded.emit(load_session(path), "")
            except SessionError as exc:
                self.sessionLoaded.emit(None, str(exc))
            except Exception as exc:  # never a crash at start-up
                self.sessionLoaded.emit(None, f"{exc.__class__.__name__}")

        self.sessionLoaded.connect(self._on_session_loaded)
        self.statusBar().showMessage("Restoring the previous session…")
        threading.Thread(target=work, daemon=True).start()

    def _on_session_loaded(self, payload, error: str) -> None:
        self._restoring = False
        if payload is None:
            kept = self._set_aside(self.autosave_path)
            log.warning("autosave not restored: %s; kept as %s", error, kept)
            where = f"; it was kept as {kept}" if kept else ""
            self.statusBar().showMessage(f"Previous session could not be restored ({error}){where}", 15000)
            self.sessionRestored.emit(0)
            return
        restored, header = payload
        self.review.load_extra(header.get("extra"))
        self._restore_consultation((header.get("extra") or {}).get("consultation"))
        fresh = [r for r in restored if self._key(r) not in self._seen]
        if fresh:
            self.results.append(fresh)
            self._seen.update(self._key(r) for r in fresh)
            # thumbnails are not saved with the session: rebuild them in the background
            self.thumbnailsReady.connect(
                lambda: self.results.dataChanged.emit(
                    self.results.index(0, 0), self.results.index(self.results.rowCount() - 1, 0)
                )
            )
            threading.Thread(target=self._rebuild_thumbnails, args=(list(fresh),), daemon=True).start()
            reviewed = sum(1 for r in fresh if r.reviewer_label)
            skipped = f"; {header['skipped']} unreadable entries left out" if header.get("skipped") else ""
            self.statusBar().showMessage(
                f"Restored the previous session: {len(fresh)} files, {reviewed} reviewed{skipped} (File ▸ New Session clears it)",
                10000,
            )
            self.update_differential()
            self._update_actions()
        else:
            self.statusBar().clearMessage()
        self._refresh_cases()
        if self._autosave_again:
            self.autosave()
        self.sessionRestored.emit(len(fresh))

    @staticmethod
    def _set_aside(path: Path | None) -> Path | None:
        """Move an unrestorable session out of the way (never overwrite it): a dated backup beside it."""
        if path is None or not path.exists():
            return None
        target = path.with_name(f"{path.stem}.unrestorable-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
        try:
            os.replace(path, target)
            return target
        except OSError:
            return None

    def _rebuild_thumbnails(self, results: list[Result]) -> None:
        from hv_desktop.gui.worker import THUMBNAIL_SIDE

        last = time.monotonic()
        for r in results:
            if not r.ok or r.thumbnail is not None:
                continue
            try:
                im = open_image(r.path, draft_size=(THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
                im.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                r.thumbnail = np.asarray(im)
            except ImageError:
                continue  # moved or deleted since: the row stays, without a picture
            if time.monotonic() - last > 0.3:
                self.thumbnailsReady.emit()
                last = time.monotonic()
        self.thumbnailsReady.emit()

    def new_session(self) -> None:
        if self.job is not None:
            return
        unsaved = sum(1 for r in self.results.results if r.reviewer_label)
        if (
            unsaved
            and QMessageBox.question(
                self,
                "New session",
                f"Clear {len(self.results.results)} results ({unsaved} reviewed)?\nExport them first if you need them.",
            )
            != QMessageBox.Yes
        ):
            return
        self.results.clear()
        self.review.clear()
        self._seen.clear()
        self.consultation = None
        self.results.sender_labels = {}
        self.table.setColumnHidden(COL_SENDER, True)
        self._refresh_cases()
        self.update_differential()
        self.autosave()
        self._update_actions()

    # ------------------------------------------------------------------ misc
    def _update_actions(self) -> None:
        running = self.job is not None
        has_model = self.model is not None
        self.act_open.setEnabled(has_model)
        self.act_open_folder.setEnabled(has_model)
        self.act_cancel.setEnabled(running)
        self.act_model.setEnabled(not running)
        self.act_new.setEnabled(not running)
        self.act_export.setEnabled(bool(self.results.results))
        self.act_report.setEnabled(bool(self.results.results) and has_model)
        self.act_adapt.setEnabled(has_model and not running)
        self.act_sign.setEnabled(bool(self.results.results) and not running and self.signed is None)
        self.act_send.setEnabled(bool(self.results.results) and has_model and not running)
        self.act_open_package.setEnabled(not running)
        self.act_unlock.setEnabled(self.signed is not None)
        self.act_shipped.setEnabled(
            not running and (self.model is None or self.model.path.resolve() != bundled_model_path().resolve())
        )

    def _recent(self) -> list[str]:
        recent = self.settings.value("recent_folders", []) or []
        return [recent] if isinstance(recent, str) else list(recent)  # QSettings returns a lone value bare

    def _last_dir(self) -> str:
        recent = self._recent()
        return recent[0] if recent else str(Path.home())

    def _remember_recent(self, folder: Path) -> None:
        recent = [str(folder)] + [r for r in self._recent() if r != str(folder)]
        self.settings.setValue("recent_folders", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = self._recent()
        for folder in recent:
            a = self.recent_menu.addAction(folder)
            a.triggered.connect(lambda _=False, f=folder: self.classify([Path(f)]))
        self.recent_menu.setEnabled(bool(recent))

    def about(self) -> None:
        info = self.model.info if self.model else None
        QMessageBox.about(
            self,
            "About HematoVision",
            f"<h3>HematoVision {__version__}</h3>"
            f"<p>Model: {info.name + ' v' + info.version if info else 'none loaded'}</p>"
            f"<p><b>Intended use.</b> {INTENDED_USE}</p>"
            "<p>Runs fully offline; images never leave this computer.</p>",
        )

    # drag and drop -------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
                self.open_package(paths[0])
                return
            self.open_paths(paths)

    #: QSettings keys of what the window remembers about its own layout
    LAYOUT_KEYS = {"geometry": "layout/geometry", "main": "layout/main_split", "preview": "layout/preview_split"}

    def save_layout(self) -> None:
        """Window size and both split handles, so the next start looks as the user left it."""
        self.settings.setValue(self.LAYOUT_KEYS["geometry"], self.saveGeometry())
        self.settings.setValue(self.LAYOUT_KEYS["main"], self.main_split.saveState())
        self.settings.setValue(self.LAYOUT_KEYS["preview"], self.preview_split.saveState())

    def restore_layout(self) -> None:
        """The saved layout; a missing or damaged entry leaves the default (Qt validates the bytes)."""
        for key, apply in (
            (self.LAYOUT_KEYS["geometry"], self.restoreGeometry),
            (self.LAYOUT_KEYS["main"], self.main_split.restoreState),
            (self.LAYOUT_KEYS["preview"], self.preview_split.restoreState),
        ):
            value = self.settings.value(key)
            if isinstance(value, (QByteArray, bytes)) and value:
                apply(QByteArray(value))
            elif key == self.LAYOUT_KEYS["preview"]:
                self._preview_default = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if getattr(self, "_preview_default", True) and not getattr(self, "_preview_sized", False):
            self._preview_sized = True
            QTimer.singleShot(0, self.default_preview_split)

    def default_preview_split(self) -> None:
        """The cell is what a reviewer judges: by default the picture's pane takes all the height the panel
        below can spare (the differential scrolls instead). A saved split is kept."""
        total = sum(self.preview_split.sizes())
        bottom = self.preview_split.widget(1).minimumSizeHint().height()
        self.preview_split.setSizes([max(total - bottom, total // 3), min(bottom, total - total // 3)])

    def closeEvent(self, event) -> None:
        if self._remember_layout:
            self.save_layout()
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10000)
        self._closing = True
        self.autosave(wait=True)
        super().closeEvent(event)
