"""What the window keeps between starts: the autosaved session (saved and read off the GUI thread; the rules
are hv_desktop.core.autosave's) and its own layout (size and split handles)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox

from hv_desktop.core.autosave import Autosaver, Snapshot, keep_copy, read_session, rebuild_thumbnails, set_aside
from hv_desktop.core.result import Result
from hv_desktop.gui.dialogs import confirm
from hv_desktop.gui.worker import THUMBNAIL_SIDE

if TYPE_CHECKING:
    from hv_desktop.gui.main_window import MainWindow

log = logging.getLogger("hematovision")

#: QSettings keys of what the window remembers about its own layout
#: restored rows added to the table per event-loop turn
RESTORE_CHUNK = 500

LAYOUT_KEYS = {"geometry": "layout/geometry", "main": "layout/main_split", "preview": "layout/preview_split"}


class Persistence(QObject):
    failed = Signal(str)
    again = Signal()
    loaded = Signal(object, str)  # ((results, header) or None, error message)
    restored = Signal(int)
    thumbnailsReady = Signal(int, int)  # source rows whose thumbnails were just made

    def __init__(self, w: MainWindow, path: Path | None) -> None:
        super().__init__(w)
        self.w = w
        self.closing = False
        self._thumbs: list[Result] = []  # the restored cells whose thumbnails are being made
        self.saver = Autosaver(path, self._snapshot, self.failed.emit, self.again.emit)
        self.failed.connect(lambda msg: w.statusBar().showMessage(f"Autosave failed: {msg}", 8000))
        self.again.connect(lambda: None if self.closing else self.save())
        self.loaded.connect(self._loaded)
        self.thumbnailsReady.connect(self._repaint)
        self.timer = QTimer(self, singleShot=True, interval=400)
        self.timer.timeout.connect(self.save)

    # --- autosave
    def _snapshot(self) -> Snapshot:
        w = self.w
        info = w.model.info if w.model else None
        extra = w.review.to_extra()
        consultation = w.exports.to_extra()
        if consultation:
            extra["consultation"] = consultation
        return Snapshot(list(w.results.results), info.name if info else "", info.version if info else "", extra)

    def save(self, wait: bool = False) -> None:
        self.saver.save(wait)

    def restore(self) -> None:
        """Read the autosaved session off the GUI thread (10,000 results take seconds to check); autosave waits
        until it is in, so a slow restore is never overwritten by an empty session."""
        path = self.saver.path
        if path is None or not path.exists():
            return
        self.saver.restoring = True
        self.w.statusBar().showMessage("Restoring the previous session…")
        threading.Thread(target=lambda: self.loaded.emit(*read_session(path)), daemon=True).start()

    def _loaded(self, payload: tuple[list[Result], dict] | None, error: str) -> None:
        w = self.w
        if payload is None:
            self.saver.restoring = False
            kept = set_aside(self.saver.path)
            log.warning("autosave not restored: %s; kept as %s", error, kept)
            where = f"; it was kept as {kept}" if kept else ""
            w.statusBar().showMessage(f"Previous session could not be restored ({error}){where}", 15000)
            self.restored.emit(0)
            return
        restored, header = payload
        problems = w.review.load_extra(header.get("extra"))
        if header.get("skipped"):
            problems.append(f"{header['skipped']} cells")
        if problems:  # restored in part: the whole file is kept aside and the user told, never silently dropped
            kept = keep_copy(self.saver.path)
            log.warning("autosave restored in part (%s unreadable); the whole file kept as %s", ", ".join(problems), kept)
            QMessageBox.warning(
                w,
                "Previous session restored in part",
                f"Some of the previous session could not be read back: {', '.join(problems)}.\n\n"
                + (f"The whole file, as it was, is kept as:\n{kept}" if kept else "A copy of it could not be kept."),
            )
        self._adopt_caseless(restored)
        w.exports.restore((header.get("extra") or {}).get("consultation"))
        fresh = w.runner.queue.unseen(restored)
        w.runner.queue.remember(fresh)
        w.refresh_cases()
        self._add_rows(fresh, 0, header)

    def _adopt_caseless(self, restored: list[Result]) -> None:
        """Cells saved before cases existed (or whose case entry is gone) get a case of their own, with any sign-off
        of that time: else the report and consultation of a restored session had no case to be of (issue 30)."""
        review = self.w.review
        orphans = [r for r in restored if r.case not in review.cases]
        if not orphans:
            return
        current = review.current
        cid = review.new_case("Restored session")
        for r in orphans:
            r.case = cid
        if "" in review.signoffs:
            review.signoffs[cid] = review.signoffs.pop("")
        review.current = current or cid

    def _add_rows(self, fresh: list[Result], start: int, header: dict) -> None:
        """Restored rows go into the table a chunk per event-loop turn: 10,000 rows at once froze the window for
        seconds while both views filtered and sorted them (issue 30). Autosave waits until the last chunk is in."""
        w = self.w
        w.results.append(fresh[start : start + RESTORE_CHUNK])
        start += RESTORE_CHUNK
        if start < len(fresh):
            w.statusBar().showMessage(f"Restoring the previous session: {start:,} of {len(fresh):,} cells…")
            QTimer.singleShot(0, lambda: self._add_rows(fresh, start, header))
            return
        self.saver.restoring = False
        w.workspace.sync_to_archive()  # a session saved before the case archive: its cases go in once
        if fresh:
            self._restored_rows(fresh, header)
        else:
            w.statusBar().clearMessage()
        if self.saver.pending:
            self.save()
        self.restored.emit(len(fresh))

    def _restored_rows(self, fresh: list[Result], header: dict) -> None:
        w = self.w
        self._thumbs = fresh
        # thumbnails are not saved with the session: rebuild them in the background
        threading.Thread(
            target=rebuild_thumbnails, args=(list(fresh), THUMBNAIL_SIDE, self.thumbnailsReady.emit), daemon=True
        ).start()
        reviewed = sum(1 for r in fresh if r.reviewer_label)
        skipped = f"; {header['skipped']} unreadable entries left out" if header.get("skipped") else ""
        w.statusBar().showMessage(
            f"Restored the previous session: {len(fresh)} files, {reviewed} reviewed{skipped} (File ▸ New Session clears it)",
            10000,
        )
        w.update_differential()
        w.update_actions()

    def _repaint(self, first: int, last: int) -> None:
        """The rows that just got a thumbnail (``first``..``last`` of the restored cells), and only their picture:
        no re-sort, no re-filter."""
        results = self.w.results
        done = {id(r) for r in self._thumbs[first : last + 1]}
        rows = [i for i, r in enumerate(results.results) if id(r) in done]
        if rows:
            results.dataChanged.emit(results.index(rows[0], 0), results.index(rows[-1], 0), [Qt.ItemDataRole.DecorationRole])

    def new_session(self) -> None:
        """Clear the results (asked first when some are reviewed) and save the empty session."""
        w = self.w
        if w.is_running():
            return
        unsaved = sum(1 for r in w.results.results if r.reviewer_label)
        question = f"Clear {len(w.results.results)} results ({unsaved} reviewed)?\nExport them first if you need them."
        if unsaved and not confirm(w, "New session", question):
            return
        w.clear_session()
        w.exports.consultation = None
        w.results.sender_labels = {}
        w.results_pane.show_sender(False)
        w.refresh_cases()
        w.update_differential()
        w.autosave()
        w.update_actions()

    # --- layout
    def save_layout(self) -> None:
        """Window size and both split handles, so the next start looks as the user left it."""
        w = self.w
        w.settings.setValue(LAYOUT_KEYS["geometry"], w.saveGeometry())
        w.settings.setValue(LAYOUT_KEYS["main"], w.main_split.saveState())
        w.settings.setValue(LAYOUT_KEYS["preview"], w.preview_split.saveState())

    def restore_layout(self) -> None:
        """The saved layout; a missing or damaged entry leaves the default (Qt validates the bytes)."""
        w = self.w
        for key, apply in (
            (LAYOUT_KEYS["geometry"], w.restoreGeometry),
            (LAYOUT_KEYS["main"], w.main_split.restoreState),
            (LAYOUT_KEYS["preview"], w.preview_split.restoreState),
        ):
            value = w.settings.value(key)
            if isinstance(value, (QByteArray, bytes)) and value:
                apply(QByteArray(value))

    def default_preview_split(self) -> None:
        """The cell is what a reviewer judges: by default the picture's pane takes all the height the panel
        below can spare, which is the whole differential (every class and total always show; the flagged and
        failed rows too while the picture keeps a third of the height). A saved split is kept."""
        split = self.w.preview_split
        total = sum(split.sizes())
        below = split.widget(1)
        table = self.w.diff_table
        bottom = below.minimumSizeHint().height() + table.maximumHeight() - table.minimumHeight() if below is not None else 0
        split.setSizes([max(total - bottom, total // 3), min(bottom, total - total // 3)])
