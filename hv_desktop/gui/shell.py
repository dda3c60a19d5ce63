"""What a handler may ask of the window it works in: a status line, a parent for its dialogs, the settings, the
folder dialogs start in, the cell in view. Handlers take the workspace (the state) and a shell (this), never the
MainWindow itself, so they import no window module and the window is one implementation among others (a test's
stub is another)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from hv_desktop.core.inference.result import Result


class Shell(Protocol):
    settings: QSettings

    def status(self, message: str, ms: int = 5000) -> None:
        """Show ``message`` on the status line for ``ms`` milliseconds (0: until replaced)."""

    def dialog_parent(self) -> QWidget:
        """The widget dialogs are opened over."""

    def last_dir(self) -> str:
        """The folder file dialogs start in."""

    def remember_recent(self, folder: Path) -> None:
        """Add ``folder`` to File ▸ Recent."""

    def current_result(self) -> Result | None:
        """The cell in view (the table's current row), or None."""

    def data_folder(self) -> Path:
        """The app's data folder (archive, logs)."""
