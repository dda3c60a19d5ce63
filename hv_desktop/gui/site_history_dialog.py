"""Review ▸ Site Model History: every site model this lab made, newest first, what each was made from, and going
back to any of them (or to the shipped model). The list is read from the files (hv_desktop.core.site.site_history)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.site.site_history import site_models
from hv_desktop.core.system.paths import display_name


class SiteHistoryDialog(QDialog):
    """The lab's site models; ``chosen`` a file to use, ``shipped`` to go back to the shipped model."""

    chosen = Signal(Path)
    shipped = Signal()

    def __init__(self, folder: Path, in_use: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Site Model History")
        self.resize(720, 420)
        self.folder, self.in_use = folder, in_use
        lay = QVBoxLayout(self)
        lay.addWidget(
            QLabel(
                "Every site model made at this lab, newest first. Choose one to go back to it: the session is "
                "re-classified with it (signed-off cases keep the model they were signed with)."
            )
        )
        self.list = QListWidget()
        lay.addWidget(self.list, 1)
        self.problems = QLabel("")
        self.problems.setWordWrap(True)
        lay.addWidget(self.problems)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.use_button = QPushButton("Use This Model")
        self.shipped_button = QPushButton("Use Shipped Model")
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.shipped_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.use_button.clicked.connect(self.use_selected)
        self.shipped_button.clicked.connect(self._use_shipped)
        self.list.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.list.currentRowChanged.connect(lambda _row: self._enable())
        lay.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        entries, problems = site_models(self.folder)
        self.list.clear()
        for e in entries:
            used = self.in_use is not None and e.path.resolve() == self.in_use.resolve()
            item = QListWidgetItem(("● in use · " if used else "") + e.describe())
            item.setData(Qt.ItemDataRole.UserRole, str(e.path))
            item.setToolTip(f"{display_name(e.path)}\nmade from {e.base or 'an unnamed base'}; {e.kind}")
            self.list.addItem(item)
        if not entries:
            self.list.addItem("No site model yet: Review ▸ Adapt to This Lab or Match Lab Magnification makes one.")
            self.list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)
        shown = "; ".join(f"{display_name(p.name)}: {why}" for p, why in problems[:3])
        self.problems.setText(f"Not listed: {shown}" + (" …" if len(problems) > 3 else "") if problems else "")
        self._enable()

    def selected(self) -> Path | None:
        item = self.list.currentItem()
        data = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return Path(data) if data else None

    def use_selected(self) -> None:
        path = self.selected()
        if path is not None:
            self.chosen.emit(path)
            self.accept()

    def _use_shipped(self) -> None:
        self.shipped.emit()
        self.accept()

    def _enable(self) -> None:
        self.use_button.setEnabled(self.selected() is not None)
