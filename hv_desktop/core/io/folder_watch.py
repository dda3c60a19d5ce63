"""The window's watch-folder state, Qt-free: which folder is watched and which of its files are ready (written
completely) to classify. The window owns only the file-system notifications and the timer that call ``poll``."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from hv_desktop.core.imaging.scan import scan
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.watch import SettleTracker


class WatchedFolder:
    SETTLE = 0.4  # seconds a file must stay unchanged before it is classified

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._tracker: SettleTracker | None = None
        self._in_flight: set[Path] = set()  # returned by poll, not yet classified
        self._shown: dict[Path, tuple[int, str]] = {}  # a row was shown for: (size, sha256) of the bytes classified
        self._grown: dict[Path, str | None] = {}  # settled just now: the row it completes (see completed)

    @property
    def active(self) -> bool:
        return self.folder is not None

    def start(self, folder: Path) -> None:
        """Watch ``folder``: only new arrivals (and files replaced from now on) are classified."""
        self._tracker = SettleTracker(settle=self.SETTLE)
        self._in_flight = set()
        for item in scan([folder]):
            if not item.error:
                self._tracker.retry_or_finish(item.path, failed=False)
        self.folder = folder

    def stop(self) -> None:
        self.folder = None

    def poll(self) -> list[Path]:
        """The files that have settled since the last poll (each returned once, until :meth:`settled` says it
        must be tried again)."""
        if self.folder is None or self._tracker is None:
            return []
        candidates = [i.path for i in scan([self.folder]) if not i.error and i.path not in self._in_flight]
        ready = self._tracker.observe(candidates)
        self._in_flight.update(ready)
        return ready

    def release(self) -> None:
        """Forget what was handed out and not yet classified (a cancelled run dropped it): the next poll hands it
        out again. Why: such files stayed "in flight" for good and were never classified."""
        self._in_flight.clear()

    def settled(self, r: Result) -> bool:
        """After a file of this folder was classified: False when its row must not be shown yet, because it failed
        while it may still be being written (a camera that writes the header, pauses, then the rest); it is
        tried again once it settles, until the tracker gives up. Why: a partial file was classified from its
        first bytes and then appeared a second time (issue 30)."""
        if r.path not in self._in_flight:
            return True
        self._in_flight.discard(r.path)
        if self._tracker is None:
            return True
        keep = not self._tracker.retry_or_finish(r.path, failed=not r.ok)
        if keep and r.ok and r.sha256:
            self._grown[r.path] = self._grown_from(r)
            with contextlib.suppress(OSError):
                self._shown[r.path] = (r.path.stat().st_size, r.sha256)
        return keep

    def completed(self, r: Result) -> str | None:
        """When ``r`` is a watched file that only grew since its row was shown (the bytes classified then are the
        start of its bytes now: a camera that paused just before the end of a file), the sha256 of that row, which
        ``r`` should replace; else None (a new image, replaced under the same name, gets a row of its own). Ask
        after :meth:`settled`."""
        return self._grown.pop(r.path, None)

    def _grown_from(self, r: Result) -> str | None:
        before = self._shown.get(r.path)
        if before is None or r.sha256 == before[1]:
            return None
        size, digest = before
        try:
            with open(r.path, "rb") as fh:
                head = fh.read(size)
        except OSError:
            return None
        return digest if len(head) == size and hashlib.sha256(head).hexdigest() == digest else None
