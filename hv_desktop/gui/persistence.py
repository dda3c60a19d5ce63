"""What the window keeps between starts: the open session, restored from the case archive at start (the workspace
writes every change there as it happens: hv_desktop.core.workspace), the one-time import of an old JSON autosave,
and the window's own layout (size and split handles).

Why no JSON any more: the whole session used to be rewritten as one JSON file after every change, and read back
whole at start (a 10,000-cell session froze the window while it restored, issue 29). Now the window only says
which cases are open and which is current (:meth:`Persistence.save`), and a restore adds one chunk of cells per
event-loop turn, so the window answers throughout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QByteArray, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QSplitter, QWidget

from hv_desktop.core.inference.fields import cell_thumbnails
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.storage.autosave import AutosaveImport, import_autosave, rebuild_thumbnails
from hv_desktop.core.workspace import Workspace
from hv_desktop.gui.dialogs import confirm
from hv_desktop.gui.shell import Shell
from hv_desktop.gui.worker import THUMBNAIL_SIDE

if TYPE_CHECKING:
    from hv_desktop.gui.results_model import ResultsModel

log = logging.getLogger("hematovision")

#: restored cells added to the table per event-loop turn (500 rows take ~20 ms to insert, sort and filter)
RESTORE_CHUNK = 500

#: QSettings keys of what the window remembers about its own layout
LAYOUT_KEYS = {"geometry": "layout/geometry", "main": "layout/main_split", "preview": "layout/preview_split"}


class LayoutHost(Protocol):
    """The window whose size and split handles are remembered."""

    @property
    def main_split(self) -> QSplitter: ...

    @property
    def preview_split(self) -> QSplitter: ...

    @property
    def diff_table(self) -> QWidget: ...

    def saveGeometry(self) -> QByteArray: ...

    def restoreGeometry(self, geometry: QByteArray) -> bool: ...


class Persistence(QObject):
    imported = Signal(object)  # AutosaveImport | None, from the import thread
    restored = Signal(int)  # the restore ended: how many cells it brought back
    thumbnailsReady = Signal(int, int)  # restored cells (first, last) whose thumbnails were just made

    def __init__(
        self,
        workspace: Workspace,
        shell: Shell,
        autosave_path: Path | None,
        table: ResultsModel,
        layout: LayoutHost,
        running: Callable[[], bool],
    ) -> None:
        """``autosave_path``: where an old JSON autosave would be (imported once at start); ``table``: the model
        the cells are shown in; ``running``: whether a run is in progress."""
        super().__init__(table)
        self.workspace, self.shell, self.table, self.layout, self.running = workspace, shell, table, layout, running
        self.autosave_path = autosave_path
        self.restoring = False  # the previous session is coming back: a run waits for it (issue 30)
        self.closing = False
        self._steps: Generator[tuple[int, int], None, None] | None = None
        self._first_row = 0
        self._thumbs: list[Result] = []  # the restored cells whose thumbnails are being made
        self._said = ""  # what the import of an old autosave did, said again when the restore ends
        self.imported.connect(self._imported)
        self.thumbnailsReady.connect(self._repaint)
        self.timer = QTimer(self, singleShot=True, interval=400)
        self.timer.timeout.connect(self.save)

    # --- the open session
    def save(self, wait: bool = False) -> None:
        """Record which cases are open and the current one (every other change is in the archive already, one
        transaction each, as it happened). ``wait`` is kept for callers of the autosave's time: a write here is
        done when this returns."""
        self.workspace.record_open()

    def restore(self) -> None:
        """An old JSON autosave is imported into the archive first, on a thread of its own (reading 10,000 cells
        takes seconds); then the open session comes back from the archive a chunk per event-loop turn."""
        archive = self.workspace.archive
        self.restoring = self.workspace.restoring = True
        path = self.autosave_path
        if archive is not None and path is not None and path.exists():
            self.shell.status("Moving the previous session into the case archive…", 0)
            threading.Thread(target=self._import, args=(archive.path, path), daemon=True).start()
        else:  # the cases at once (a run opened now waits only when there are cells to come)
            self._imported(None)

    def _import(self, archive_path: Path, path: Path) -> None:
        """On the import thread, with a connection of its own (a connection stays on the thread that opened it)."""
        try:
            with CaseArchive.open(archive_path) as archive:
                outcome = import_autosave(archive, path)
        except Exception as exc:  # said on the status line, never a silent dead thread
            log.exception("autosave import failed")
            outcome = AutosaveImport(None, None, f"The previous session was not imported ({exc}); it is kept")
        try:
            self.imported.emit(outcome)
        except RuntimeError:  # the window closed meanwhile: the archive has the import, the next start shows it
            log.info("autosave imported after the window closed")

    def _imported(self, outcome: AutosaveImport | None) -> None:
        if outcome is not None:
            self._said = outcome.message
            self.shell.status(outcome.message, 20000)
        self._first_row = len(self.table.results)
        self._steps = self.workspace.restore_open(RESTORE_CHUNK)
        self._step()

    def _step(self) -> None:
        """One chunk of the restore; the next is queued behind whatever else the event loop has to do."""
        if self._steps is None:
            return
        if self.closing:  # the window closed meanwhile: the archive keeps the open session as it was
            self._steps.close()
            self._steps = None
            return
        try:
            done, total = next(self._steps)
            while done >= total:  # every cell is in: the restore ends in this turn
                done, total = next(self._steps)
        except StopIteration:
            self._finish()
            return
        except ArchiveError as exc:  # a damaged archive: what came in stays, and the person is told
            log.error("open session not restored: %s", exc)
            self.shell.status(f"The previous session was not restored whole: {exc}", 20000)
            self._finish()
            return
        self.shell.status(f"Restoring the previous session: {done:,} of {total:,} cells…", 0)
        QTimer.singleShot(0, self._step)

    def _finish(self) -> None:
        self._steps = None
        self.restoring = self.workspace.restoring = False
        fresh = self.table.results[self._first_row :]
        if fresh:
            self._thumbs = [r for r in fresh if r.ok and r.thumbnail is None]
            # thumbnails are not kept in the archive: made again in the background
            threading.Thread(target=self._make_thumbnails, args=(list(self._thumbs),), daemon=True).start()
            reviewed = sum(1 for r in fresh if r.reviewer_label)
            restored = f"Restored the previous session: {len(fresh)} cells, {reviewed} reviewed (File ▸ New Session clears it)"
            self.shell.status(f"{self._said}. {restored}" if self._said else restored, 30000 if self._said else 10000)
        elif self._said:
            self.shell.status(self._said, 30000)
        self.restored.emit(len(fresh))

    def _make_thumbnails(self, rows: list[Result]) -> None:
        """On the thumbnail thread: a camera field's cells get their own square (core.inference.fields), the rest
        their file's picture."""
        cell_thumbnails(rows, THUMBNAIL_SIDE)
        rebuild_thumbnails(rows, THUMBNAIL_SIDE, self._thumbnails_made)

    def _thumbnails_made(self, first: int, last: int) -> None:
        """On the thumbnail thread: tell the window, unless it has closed meanwhile."""
        with contextlib.suppress(RuntimeError):
            self.thumbnailsReady.emit(first, last)

    def _repaint(self, first: int, last: int) -> None:
        """The rows that just got a thumbnail (``first``..``last`` of those being made), and only their picture:
        no re-sort, no re-filter."""
        table = self.table
        done = {id(r) for r in self._thumbs[first : last + 1]}
        rows = [i for i, r in enumerate(table.results) if id(r) in done]
        if rows:
            table.dataChanged.emit(table.index(rows[0], 0), table.index(rows[-1], 0), [Qt.ItemDataRole.DecorationRole])

    def new_session(self) -> None:
        """Clear the session (asked first when some cells are reviewed); every case stays in the archive."""
        if self.running() or self.restoring:
            return
        results = self.table.results
        unsaved = sum(1 for r in results if r.reviewer_label)
        question = f"Clear {len(results)} results ({unsaved} reviewed)?\nThey stay in the case archive (Cases ▸ Case Archive)."
        if unsaved and not confirm(self.shell.dialog_parent(), "New session", question):
            return
        self.table.clear()  # the table's reset first: its views never see the list change under them
        self.table.sender_labels = {}
        self.workspace.clear()  # its listeners show the empty session (and the consultation gone)
        self.save()

    # --- layout
    def save_layout(self) -> None:
        """Window size and both split handles, so the next start looks as the user left it."""
        settings, host = self.shell.settings, self.layout
        settings.setValue(LAYOUT_KEYS["geometry"], host.saveGeometry())
        settings.setValue(LAYOUT_KEYS["main"], host.main_split.saveState())
        settings.setValue(LAYOUT_KEYS["preview"], host.preview_split.saveState())

    def restore_layout(self) -> None:
        """The saved layout; a missing or damaged entry leaves the default (Qt validates the bytes)."""
        host = self.layout
        for key, apply in (
            (LAYOUT_KEYS["geometry"], host.restoreGeometry),
            (LAYOUT_KEYS["main"], host.main_split.restoreState),
            (LAYOUT_KEYS["preview"], host.preview_split.restoreState),
        ):
            value = self.shell.settings.value(key)
            if isinstance(value, (QByteArray, bytes)) and value:
                apply(QByteArray(value))

    def default_preview_split(self) -> None:
        """The cell is what a reviewer judges: by default the picture's pane takes all the height the panel
        below can spare, which is the whole differential (every class and total always show; the flagged and
        failed rows too while the picture keeps a third of the height). A saved split is kept."""
        split = self.layout.preview_split
        total = sum(split.sizes())
        below = split.widget(1)
        table = self.layout.diff_table
        bottom = below.minimumSizeHint().height() + table.maximumHeight() - table.minimumHeight() if below is not None else 0
        split.setSizes([max(total - bottom, total // 3), min(bottom, total - total // 3)])
