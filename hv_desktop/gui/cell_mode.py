"""What a case's images are (issue 28): single-cell crops (one cell per file, as before) or a clinic camera's
fields, in which every white cell is found and classified; and whether the cells a field's border cuts count in
the differential (no, by default, as in a manual count; the CLI's ``--edge-cells``).

Kept in the settings (:data:`IMAGES_KEY`, :data:`EDGE_KEY`) and chosen in the Cases menu, where a technologist
sets up a case. The runner reads the first when a run starts (rows already classified keep their kind: both kinds
may sit in one session); the differential reads the second each time it counts.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QMenuBar

IMAGES_KEY = "cases/images"  # "crops" (default) or "fields"
EDGE_KEY = "cases/edge_cells"  # "skip" (default) or "count"


def camera_fields(settings: QSettings) -> bool:
    """Whether new runs find and classify every white cell of each image (camera fields)."""
    return str(settings.value(IMAGES_KEY, "crops")) == "fields"


def count_edge(settings: QSettings) -> bool:
    """Whether a field's cells at its border count in the differential."""
    return str(settings.value(EDGE_KEY, "skip")) == "count"


class CellModeMenu(QObject):
    """The Cases menu: the images' kind (two exclusive choices) and the edge-cell rule. ``changed(message)``: a
    choice was made; the message says what it does, for the status line."""

    changed = Signal(str)

    def __init__(self, settings: QSettings, bar: QMenuBar) -> None:
        super().__init__(bar)
        self.settings = settings
        self.menu = QMenu("&Cases", bar)
        review = next((a for a in bar.actions() if a.text() == "&Review"), None)
        if review is not None:  # beside File, where a case is opened
            bar.insertMenu(review, self.menu)
        else:
            bar.addMenu(self.menu)
        group = QActionGroup(self)
        self.crops = self._choice("Images Are Single-Cell &Crops", "One cell per image: the most stained nucleus")
        self.fields = self._choice(
            "Images Are Camera &Fields (Every White Cell)", "Find every white cell in each image and classify each"
        )
        for a in (self.crops, self.fields):
            group.addAction(a)
            self.menu.addAction(a)
        (self.fields if camera_fields(settings) else self.crops).setChecked(True)
        group.triggered.connect(lambda _a: self._images_chosen())
        self.menu.addSeparator()
        self.edge = self._choice(
            "Count Cells at the Field &Edge", "Count the white cells the image border cuts in the differential"
        )
        self.edge.setChecked(count_edge(settings))
        self.edge.toggled.connect(self._edge_chosen)
        self.menu.addAction(self.edge)

    def _choice(self, text: str, tip: str) -> QAction:
        a = QAction(text, self)
        a.setCheckable(True)
        a.setStatusTip(tip)
        return a

    def set_fields(self, on: bool) -> None:
        """Choose the images' kind (as the menu does)."""
        (self.fields if on else self.crops).setChecked(True)
        self._images_chosen()

    def _images_chosen(self) -> None:
        on = self.fields.isChecked()
        self.settings.setValue(IMAGES_KEY, "fields" if on else "crops")
        what = "camera fields: every white cell is found and classified" if on else "single-cell crops: one cell each"
        self.changed.emit(f"Images opened from now on are {what}")

    def _edge_chosen(self, on: bool) -> None:
        self.settings.setValue(EDGE_KEY, "count" if on else "skip")
        self.changed.emit(f"Cells at a field's edge are {'counted' if on else 'left out of the differential'}")
