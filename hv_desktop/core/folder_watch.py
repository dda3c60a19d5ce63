"""The window's watch-folder state, Qt-free: which folder is watched and which of its files are ready (written
completely) to classify. The window owns only the file-system notifications and the timer that call ``poll``."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.result import Result
from hv_desktop.core.scan import scan
from hv_desktop.core.watch import SettleTracker


class WatchedFolder:
    SETTLE = 0.4  # seconds a file must stay unchanged before it is classified

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._tracker: SettleTracker | None = None
        self._in_flight: set[Path] = set()  # returned by poll, not yet classified

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
        return not self._tracker.retry_or_finish(r.path, failed=not r.ok)
