"""The window's run queue, Qt-free: what waits to be classified, the progress of the run in hand and which files
the session already holds (the same file opened again keeps its row and its review).

Why here: the rules (duplicate detection, progress wording, what a finished run says) are testable without a
window, and the window only shows them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from hv_desktop.core.inference.result import Result
from hv_desktop.core.system.paths import display_name

ResultKey = tuple[str, str, str | None, str | None, int | None]


def result_key(r: Result, case: str | None = None) -> ResultKey:
    """Same case, same path, same bytes (and the same failure), and the same cell of a camera field: the same
    cell. The same images opened again as a new case are that case's cells too (issue 30: a new case of them was
    left empty); a field's second cell is not its first (issue 28: it was dropped as a repeat)."""
    return r.case if case is None else case, str(r.path), r.sha256, r.error, r.cell_index


def files_in(rows: Iterable[Result]) -> int:
    """How many files ``rows`` finish: a camera field's cells after its first belong to a file already counted
    (a run's progress counts files, as its total does)."""
    return sum(1 for r in rows if r.cell_index is None or r.cell_index == 1)


#: a case named after a folder keeps at most this much of the name (a typed ID over the limit is refused instead)
CASE_NAME_CHARS = 150


def case_name(paths: list[Path]) -> str:
    """The name a case opened from ``paths`` gets: the first folder's name, else the files' folder; as text a
    session can save (a name that is not valid UTF-8 shows U+FFFD) and short enough to be a case ID (issue 30: a
    non-UTF-8 folder name lost the session; a 200-character one could not be classified)."""
    name = next((p.name for p in paths if p.is_dir()), paths[0].parent.name if paths else "")
    return " ".join(display_name(name).split())[:CASE_NAME_CHARS].strip() or "Case"


class RunQueue:
    """Pending runs, the counters of the current one and the keys of the cells already in the session."""

    def __init__(self) -> None:
        self.pending: list[list[Path]] = []
        self.seen: set[ResultKey] = set()
        self.reclassifying = False
        self.case = ""  # the case the run in hand adds to
        self.started = 0.0
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.note = ""  # said with the run's end, e.g. where its images went

    # --- the run in hand
    def begin(self, case: str, note: str = "") -> None:
        self.case, self.note = case, note
        self.started, self.total, self.done, self.skipped = time.monotonic(), 0, 0, 0

    def fresh(self, batch: list[Result]) -> list[Result]:
        """Count ``batch`` as done; the results not already in the session, each put in the run's case (the
        files seen before are counted as skipped)."""
        self.done += files_in(batch)
        fresh = [r for r in batch if result_key(r, self.case) not in self.seen]
        for r in fresh:
            r.case = self.case
        self.remember(fresh)
        self.skipped += files_in(batch) - files_in(fresh)
        return fresh

    def remember(self, results: Iterable[Result]) -> None:
        self.seen.update(result_key(r) for r in results)

    def unseen(self, results: Iterable[Result]) -> list[Result]:
        return [r for r in results if result_key(r) not in self.seen]

    def progress_text(self) -> str:
        if self.reclassifying:
            return f"Re-classifying with the new model: {self.done} / {self.total}"
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0
        left = (self.total - self.done) / rate if rate > 0 else 0
        return f"{self.done} / {self.total} · {rate:.0f} img/s · {left:.0f} s left"

    def finish_message(self, cancelled: bool) -> str:
        msg = f"Cancelled after {self.done} of {self.total} files" if cancelled else f"Classified {self.done} files"
        if self.skipped:
            msg += f" ({self.skipped} already in this session, kept with their reviews)"
        return f"{msg} · {self.note}" if self.note else msg

    def next_run(self, cancelled: bool) -> list[Path] | None:
        """The queued paths to run next, or None (a cancel drops the queue)."""
        self.reclassifying = False
        if self.pending and not cancelled:
            return self.pending.pop(0)
        self.pending.clear()
        return None

    def clear(self) -> None:
        """A new session: nothing is in it any more."""
        self.seen.clear()
