"""Autosave scheduling and restore, Qt-free: the session is written off the GUI thread (serialising thousands of
results would stall the window), a save asked for while one runs is done right after it, and nothing is saved
while the previous session is still being read (a slow restore is never overwritten by an empty session).

The window gives callables: what to save (taken on its own thread), and what to do when a save failed or must be
repeated (called on the saving thread: a Qt signal's emit, which is thread-safe).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hv_desktop.core.preprocess import ImageError, open_image
from hv_desktop.core.result import Result
from hv_desktop.core.session import SessionError, load_session, save_session

log = logging.getLogger("hematovision")


@dataclass
class Snapshot:
    """What one autosave writes."""

    results: list[Result]
    model_name: str = ""
    model_version: str = ""
    extra: dict = field(default_factory=dict)


class Autosaver:
    def __init__(
        self,
        path: Path | None,
        snapshot: Callable[[], Snapshot],
        failed: Callable[[str], None],
        again: Callable[[], None],
    ) -> None:
        self.path = path
        self.snapshot, self.failed, self.again = snapshot, failed, again
        self.restoring = False  # the previous session is being read: saves wait for it
        self.pending = False  # a save was asked for while another ran (or during the restore)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def save(self, wait: bool = False) -> None:
        """Save now, off this thread; ``wait`` blocks until written (on close)."""
        if self.path is None:
            return
        if self.restoring:
            self.pending = True
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self.pending = True
                if not wait:
                    return
        if self._thread is not None:
            self._thread.join()
        snap = self.snapshot()  # the list may grow while we write; the objects are shared
        self.pending = False
        self._thread = threading.Thread(target=self._work, args=(self.path, snap), daemon=False)
        self._thread.start()
        if wait:
            self._thread.join()

    def _work(self, path: Path, snap: Snapshot) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_session(path, snap.results, snap.model_name, snap.model_version, snap.extra)
        except Exception as exc:  # any failure is said, never a silent dead thread (issue 30: an unencodable name)
            log.error("autosave failed: %s", exc)
            self.failed(str(exc) or type(exc).__name__)
        with self._lock:
            again = self.pending
        if again:
            self.again()


def read_session(path: Path) -> tuple[tuple[list[Result], dict] | None, str]:
    """(results, header) or None, and why not: never an exception (a start-up must not crash)."""
    try:
        return load_session(path), ""
    except SessionError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{exc.__class__.__name__}"


def _dated_beside(path: Path | None, tag: str, move: bool) -> Path | None:
    """``path`` moved (or copied) to a dated name beside it, never over anything; None when there is nothing or it
    cannot be done."""
    if path is None or not path.exists():
        return None
    target = path.with_name(f"{path.stem}.{tag}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    try:
        if move:
            os.replace(path, target)
        else:
            shutil.copy2(path, target)
        return target
    except OSError:
        return None


def set_aside(path: Path | None) -> Path | None:
    """Move an unrestorable session out of the way (never overwrite it): a dated backup beside it."""
    return _dated_beside(path, "unrestorable", move=True)


def keep_copy(path: Path | None) -> Path | None:
    """A dated copy of a session that was restored only in part, so nothing it held is lost (the restored part
    is saved over the original at the next autosave)."""
    return _dated_beside(path, "incomplete", move=False)


def rebuild_thumbnails(results: list[Result], side: int, progress: Callable[[int, int], None]) -> None:
    """Thumbnails are not saved with a session: make them again (call on a worker thread). ``progress(first,
    last)`` names the span of ``results`` whose thumbnails were made since its previous call (every 0.3 s and at
    the end), so the view repaints those rows only: repainting all 10,000 rows each time froze the window for
    seconds (issue 30)."""
    last = time.monotonic()
    first = 0
    for i, r in enumerate(results):
        if not r.ok or r.thumbnail is not None:
            continue
        try:
            im = open_image(r.path, draft_size=(side * 2, side * 2))
            im.thumbnail((side, side))
            r.thumbnail = np.asarray(im)
        except ImageError:
            continue  # moved or deleted since: the row stays, without a picture
        if time.monotonic() - last > 0.3:
            progress(first, i)
            first, last = i + 1, time.monotonic()
    if results:
        progress(first, len(results) - 1)
