"""The window's watch-folder state, Qt-free: which folder is watched and which of its files are ready (written
completely) to classify. The window owns only the file-system notifications and the timer that call ``poll``."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.scan import scan
from hv_desktop.core.watch import SettleTracker


class WatchedFolder:
    SETTLE = 0.4  # seconds a file must stay unchanged before it is classified

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._tracker: SettleTracker | None = None

    @property
    def active(self) -> bool:
        return self.folder is not None

    def start(self, folder: Path) -> None:
        """Watch ``folder``: only new arrivals (and files replaced from now on) are classified."""
        self._tracker = SettleTracker(settle=self.SETTLE)
        for item in scan([folder]):
            if not item.error:
                self._tracker.retry_or_finish(item.path, failed=False)
        self.folder = folder

    def stop(self) -> None:
        self.folder = None

    def poll(self) -> list[Path]:
        """The files that have settled since the last poll (each returned once)."""
        if self.folder is None or self._tracker is None:
            return []
        candidates = [i.path for i in scan([self.folder]) if not i.error]
        ready = self._tracker.observe(candidates)
        for p in ready:
            self._tracker.retry_or_finish(p, failed=False)
        return ready
