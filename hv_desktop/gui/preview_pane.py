"""The preview pane: the selected cell's picture (fit or 100 %, whole field or zoomed to the cell, optionally
with its heatmap), its name and why it is flagged.

The picture is made off the GUI thread (decoding a large field, the nucleus search and a heatmap inference can
take a noticeable time): each request gets a number, a worker of a small thread pool renders it through
hv_desktop.core.inference.preview (which keeps the last few decodes), and only the answer to the latest request is shown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, QPointF, QRunnable, QSettings, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QMouseEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QScrollArea, QSlider, QToolButton, QVBoxLayout, QWidget

from hv_desktop.core.cases.flags import flag_reason
from hv_desktop.core.cases.review import awaiting_review
from hv_desktop.core.inference.fields import cell_name
from hv_desktop.core.inference.heatmap import PNG_OPACITY
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.preview import Preview, PreviewCache, PreviewOptions, render
from hv_desktop.core.inference.result import Result
from hv_desktop.gui.results_model import to_pixmap

EDGE_NOTE = "<br><small>Cell at the image edge: may be cut off.</small>"
EDGE_TIP = "The classified square had to stay inside the image, so the cell is off-centre in it and may be cut by the edge."
LOADING_DELAY_MS = 150  # a picture that takes longer than this is replaced by "Loading…" meanwhile
#: a camera field's legend (core.inference.preview's colours) and its row with no white cell
FIELD_LEGEND = (
    "<small><span style='color:#00be6e'>■</span> this cell · <span style='color:#286eff'>■</span> other cells of the"
    " field · <span style='color:#eb7800'>▪ ▪</span> cut by the edge · click a box to select its cell</small>"
)
NO_CELL_NOTE = "No white cell was found in this field."


def _tool_button(text: str, checkable: bool = False) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setCheckable(checkable)
    return b


class _Done(QObject):
    rendered = Signal(int, object)  # (request number, Preview)


class _RenderJob(QRunnable):
    def __init__(
        self,
        number: int,
        latest: list[int],
        done: _Done,
        result: Result,
        model: Model | None,
        options: PreviewOptions,
        field: Sequence[Result] = (),
    ) -> None:
        super().__init__()
        self.number, self.latest, self.done = number, latest, done
        self.result, self.model, self.options, self.field = result, model, options, field

    def run(self) -> None:
        if self.number != self.latest[0]:
            return  # another cell was chosen while this one waited: never rendered
        preview = render(self.result, self.model, self.options, PreviewLoader.cache, self.field)
        self.done.rendered.emit(self.number, preview)


class PreviewLoader(QObject):
    """Renders previews on a small thread pool; ``rendered`` carries the latest request's answer only."""

    rendered = Signal(object)  # Preview
    cache = PreviewCache()  # shared: decodes survive a new window (and its model)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._latest = [0]
        self._done = _Done(self)
        self._done.rendered.connect(self._arrived)
        self.pending = False

    def request(self, result: Result, model: Model | None, options: PreviewOptions, field: Sequence[Result] = ()) -> None:
        self._latest[0] += 1
        self.pending = True
        self.pool.start(_RenderJob(self._latest[0], self._latest, self._done, result, model, options, tuple(field)))

    def drop(self) -> None:
        """Nothing asked for is wanted any more."""
        self._latest[0] += 1
        self.pending = False

    def _arrived(self, number: int, preview: Preview) -> None:
        if number == self._latest[0]:  # an answer for a row no longer selected is dropped
            self.pending = False
            self.rendered.emit(preview)

    def wait(self, ms: int = 10000) -> bool:
        return self.pool.waitForDone(ms)


class PreviewPane(QWidget):
    shown = Signal()  # the current cell's picture is on screen
    problem = Signal(str)  # for the status bar
    saveRequested = Signal()
    cellClicked = Signal(object)  # a camera field's box was clicked: that cell's Result

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.model: Model | None = None
        self.result: Result | None = None
        self.pixmap: QPixmap | None = None
        self.field: tuple[Result, ...] = ()  # a camera field's rows, drawn with the selected cell
        self.boxes: tuple[tuple[int, int, int, int], ...] = ()  # their boxes in the picture's pixels
        self._view_size = (0, 0)  # the picture's size before fitting
        self._title, self._tip = "", ""
        self.loader = PreviewLoader(self)
        self.loader.rendered.connect(self._rendered)
        self._loading = QTimer(self, singleShot=True, interval=LOADING_DELAY_MS)
        self._loading.timeout.connect(self._show_loading)
        self._build()

    def _build(self) -> None:
        self.preview = QLabel("No cell selected")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(260, 220)
        self.preview.setFrameShape(QFrame.Shape.StyledPanel)
        self.preview_scroll = QScrollArea()
        self.preview_scroll.viewport().installEventFilter(self)
        self.preview_scroll.setWidget(self.preview)
        self.preview.installEventFilter(self)  # a click on a field's box selects its cell
        self.preview_scroll.setWidgetResizable(True)
        self.preview_title = QLabel("")
        self.preview_title.setWordWrap(True)
        self.preview_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cells_note = QLabel("")  # under the picture: a camera field's legend, or that it has no white cell
        self.cells_note.setWordWrap(True)
        self.cells_note.hide()
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #a00000; font-weight: bold;")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 0)
        lay.addLayout(self._build_controls())
        lay.addWidget(self.preview_scroll, 1)
        lay.addWidget(self.cells_note)
        lay.addWidget(self.error_label)

    def _build_controls(self) -> QHBoxLayout:
        self.zoom_button = _tool_button("100 %", checkable=True)
        self.zoom_button.setToolTip("Show the image at full size (otherwise fit to the pane)")
        self.zoom_button.toggled.connect(lambda _: self.fit())
        # A cropping model classifies a square around one cell: by default the preview zooms to it (with a
        # margin), so nuclear shape and granules are visible without the 100 % view; off shows the whole field.
        self.cell_zoom = _tool_button("Cell", checkable=True)
        self.cell_zoom.setToolTip("Zoom to the cell the model classified (the outlined square); off: the whole field")
        self.cell_zoom.setChecked(str(self.settings.value("preview/cell_zoom", "true")).lower() != "false")
        self.cell_zoom.toggled.connect(self._cell_zoom_toggled)
        self.heat_box = QCheckBox("Heatmap")
        self.heat_box.setToolTip("Overlay the class-activation map: where the evidence for the predicted class lies")
        self.heat_box.toggled.connect(lambda _: self.refresh())
        self.heat_opacity = QSlider(Qt.Orientation.Horizontal)
        self.heat_opacity.setRange(10, 90)
        self.heat_opacity.setValue(round(PNG_OPACITY * 100))  # the cell's shape stays readable
        self.heat_opacity.setMaximumWidth(90)
        self.heat_opacity.setAccessibleName("Heatmap opacity")
        self.heat_opacity.setToolTip("Heatmap opacity")
        self.heat_opacity.valueChanged.connect(lambda _: self.refresh())
        self.save_heat_button = _tool_button("Save…")
        self.save_heat_button.setToolTip("Save the image with its heatmap as PNG")
        self.save_heat_button.clicked.connect(lambda: self.saveRequested.emit())
        top = QHBoxLayout()
        top.addWidget(self.preview_title, 1)
        top.addWidget(self.heat_box)
        opacity_label = QLabel("Opacity")
        opacity_label.setBuddy(self.heat_opacity)
        top.addWidget(opacity_label)
        for w in (self.heat_opacity, self.save_heat_button, self.cell_zoom, self.zoom_button):
            top.addWidget(w)
        return top

    # --- state
    def set_model(self, model: Model) -> None:
        self.model = model
        self.cell_zoom.setEnabled(model.info.preprocessing.crop != "none")

    def zooms_to_cell(self) -> bool:
        return self.cell_zoom.isChecked() and self.model is not None and self.model.info.preprocessing.crop != "none"

    def options(self) -> PreviewOptions:
        return PreviewOptions(self.heat_box.isChecked(), self.heat_opacity.value() / 100, self.zooms_to_cell())

    def _cell_zoom_toggled(self, on: bool) -> None:
        self.settings.setValue("preview/cell_zoom", "true" if on else "false")
        self.refresh()

    # --- showing a cell
    def show_result(self, r: Result, field: Sequence[Result] = ()) -> None:
        """Name and flag at once; the picture when the worker has made it. ``field``: a camera field's rows
        (core.inference.fields.same_field), whose boxes are drawn around the selected cell's."""
        self.result, self.field, self.boxes = r, tuple(field), ()
        why, tip = "", ""
        if awaiting_review(r):
            # Say why (briefly here, fully in the tooltip), so a flag reads as the model's doubt, not a finding.
            short, tip = flag_reason(r)
            why = f"<br><span style='color:#b35900'>⚑ Needs review: {short}</span>"
        of = sum(1 for x in self.field if x.cell_index is not None)
        name = html.escape(cell_name(r, of))
        self._title = f"<b>{name}</b><br><small>{html.escape(str(r.path.parent))}</small>{why}"
        self.cells_note.setText(NO_CELL_NOTE if r.no_cell else (FIELD_LEGEND if r.cell_index is not None else ""))
        self.cells_note.setVisible(r.no_cell or r.cell_index is not None)
        self._tip = tip
        self.preview_title.setToolTip(tip)
        self.preview_title.setText(self._title)
        self.error_label.setText(f"Could not classify: {r.error}" if r.error else "")
        if r.ok:
            self.loader.request(r, self.model, self.options(), self.field)
            self._loading.start()
        else:
            self.loader.drop()
            self._set_pixmap(None)

    def field_grew(self, field: Sequence[Result]) -> None:
        """The shown cell's field as it is now: a field's next cells can arrive in a later bundle of the run than
        its first, which was shown at once; their boxes are drawn too (CI once saw one box of two)."""
        if self.result is not None and len(field) != len(self.field):
            self.show_result(self.result, field)

    def refresh(self) -> None:
        if self.result is not None:
            self.show_result(self.result, self.field)

    def _rendered(self, preview: Preview) -> None:
        self._loading.stop()
        if preview.pixels is None:
            r = self.result
            self._set_pixmap(to_pixmap(r.thumbnail) if r is not None and r.thumbnail is not None else None)
            self.problem.emit(f"Preview unavailable: {preview.error}")
        else:
            if preview.at_edge:
                self.preview_title.setText(self._title + EDGE_NOTE)
                self.preview_title.setToolTip(self._tip + ("\n\n" if self._tip else "") + EDGE_TIP)
            self.boxes = preview.boxes
            self._view_size = (preview.pixels.shape[1], preview.pixels.shape[0])
            self._set_pixmap(to_pixmap(preview.pixels))
        self.shown.emit()

    def _show_loading(self) -> None:
        if self.loader.pending:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Loading…")

    def _set_pixmap(self, pm: QPixmap | None) -> None:
        self.pixmap = pm
        self.fit()

    def fit(self) -> None:
        pm = self.pixmap
        if pm is None:
            self.preview.setPixmap(QPixmap())
            r = self.result
            self.preview.setText("No image" if r is None or r.ok else "✕ Unreadable file")
            return
        if self.zoom_button.isChecked():
            self.preview.setMinimumSize(pm.size())  # 100 %: scroll around the full-size image
            self.preview.setPixmap(pm)
        else:
            # Fit: the label may shrink below its pixmap, so the old image never forces scroll bars.
            self.preview.setMinimumSize(1, 1)
            area = self.preview_scroll.size() - QSize(12, 12)
            self.preview.setPixmap(
                pm.scaled(area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit()

    def cell_at(self, pos: QPointF) -> Result | None:
        """The field's cell whose box holds ``pos`` (in the picture label's coordinates), the smallest where boxes
        overlap; None off every box."""
        shown = self.preview.pixmap()
        if not self.boxes or shown is None or shown.isNull() or not self._view_size[0]:
            return None
        area = self.preview.contentsRect()
        w, h = shown.width() / shown.devicePixelRatio(), shown.height() / shown.devicePixelRatio()
        scale = self._view_size[0] / w
        x = (pos.x() - area.x() - (area.width() - w) / 2) * scale
        y = (pos.y() - area.y() - (area.height() - h) / 2) * scale
        hits = [
            ((b[2] - b[0]) * (b[3] - b[1]), r)
            for r, b in zip(self.field, self.boxes, strict=False)
            if r.cell_box is not None and b[0] <= x < b[2] and b[1] <= y < b[3]
        ]
        return min(hits, key=lambda hit: hit[0])[1] if hits else None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.preview and event.type() == QEvent.Type.MouseButtonPress and isinstance(event, QMouseEvent):
            hit = self.cell_at(event.position()) if event.button() == Qt.MouseButton.LeftButton else None
            if hit is not None and hit is not self.result:
                self.cellClicked.emit(hit)
                return True
        if event.type() == QEvent.Type.Resize and obj is self.preview_scroll.viewport():
            # The preview area also changes size when the text above it wraps: refit the image then too.
            QTimer.singleShot(0, self.fit)
        return super().eventFilter(obj, event)
