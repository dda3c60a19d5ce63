"""Watch a folder that a microscope camera or scanner writes into.

A file is classified once it is *complete*: its size and modification time
have stayed the same for ``settle`` seconds (cameras write in chunks). If it
still fails to decode as truncated, it is retried until ``give_up`` seconds
after it was first seen, then reported as an error. Rows are keyed on the
file's sha256, so restarting the watcher on the same CSV never duplicates a
row, and the CSV is rewritten atomically after each batch of new files.
Plain polling: it works the same on local disks, network shares and USB
drives, where OS change notifications are unreliable.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from hv_desktop.core.imaging.scan import scan
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.fields import field_results
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.export import csv_columns, result_row
from hv_desktop.core.system.files import regular_path
from hv_desktop.core.system.paths import display_name, text_to_path
from hv_desktop.core.system.writing import atomic_write_text


@dataclass
class _Seen:
    size: int
    mtime: float
    stable_since: float
    first_seen: float


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """What makes a file "the same file" to the watcher: replaced under the same name, it is new again."""
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class SettleTracker:
    """Decides when files under a folder are complete; Qt-free so the GUI can share it."""

    settle: float = 0.4
    give_up: float = 30.0
    _files: dict[Path, _Seen] = field(default_factory=dict)
    #: path -> identity when finished (None: finished in an earlier run, from the CSV)
    done: dict[Path, tuple | None] = field(default_factory=dict)

    def observe(self, paths: list[Path], now: float | None = None) -> list[Path]:
        """Record sizes; return the files that just became complete."""
        now = time.monotonic() if now is None else now
        ready = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                self._files.pop(p, None)
                continue
            if p in self.done:
                ident = self.done[p]
                if ident is None or ident == _identity(st):
                    continue
                del self.done[p]  # replaced under the same name: a new image
            seen = self._files.get(p)
            if seen is None or (st.st_size, st.st_mtime) != (seen.size, seen.mtime):
                first = seen.first_seen if seen else now
                self._files[p] = _Seen(st.st_size, st.st_mtime, now, first)
                continue
            if st.st_size > 0 and now - seen.stable_since >= self.settle:
                ready.append(p)
        return ready

    def retry_or_finish(self, path: Path, failed: bool, now: float | None = None) -> bool:
        """After classifying: True if the file should be tried again later (it may still be being written).

        Any failure is retried until ``give_up`` seconds after the file was first seen: a camera that writes
        a few header bytes, pauses, then the rest, must not leave a "not an image" row for a good image.
        """
        now = time.monotonic() if now is None else now
        seen = self._files.get(path)
        if failed and seen is not None and now - seen.first_seen < self.give_up:
            seen.stable_since = now  # wait another settle period
            return True
        try:
            self.done[path] = _identity(path.stat())
        except OSError:
            self.done[path] = None
        self._files.pop(path, None)
        return False

    def pending(self) -> int:
        return len(self._files)


class StopFlag:
    """A stop request that a signal handler may make.

    Why not ``threading.Event``: its ``set`` takes the event's lock, and a Python signal handler runs in the main
    thread between two bytecodes, possibly while that thread holds the same (non-reentrant) lock inside
    ``Event.wait``: the stop then deadlocks the process, which a service manager kills after its timeout (seen
    twice in CI: a ``watch`` still running 30 and 90 s after SIGTERM; CPython issue 126434 describes it for
    ``multiprocessing.Event``). A plain attribute and short sleeps take no lock."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self._set and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return self._set


class FolderWatcher:
    """Poll ``folder``, classify complete new images, keep ``csv_path`` up to date."""

    def __init__(
        self,
        folder: Path,
        model: Model,
        csv_path: Path,
        interval: float = 0.25,
        settle: float = 0.4,
        on_result: Callable[[Result], None] | None = None,
        cells: bool = False,
    ) -> None:
        """``cells``: each image is a camera field, every white cell found gets a row (``core.inference.fields``)."""
        self.folder, self.model, self.csv_path = Path(folder), model, Path(csv_path)
        self.cells = cells
        self.interval = interval
        self.tracker = SettleTracker(settle=settle)
        self.on_result = on_result
        self.stop_event = StopFlag()
        self.columns = csv_columns(model.labels, cells)
        self.rows: list[list[str]] = []
        #: sha256 -> the path whose row holds it (a same-content file elsewhere is marked a duplicate of it)
        self.hashes: dict[str, Path] = {}
        #: rows of the existing CSV too short to be this table's (edited by hand): kept, padded, never classified
        #: again (blank rows are dropped: they hold nothing)
        self.damaged = 0
        self._load_existing()

    def _load_existing(self) -> None:
        """Continue an earlier watch's CSV. Why so lenient: a CSV opened and saved by a spreadsheet may gain blank
        or short rows, and a watch that refuses to start loses the camera's next images."""
        if not self.csv_path.exists():
            return
        regular_path(self.csv_path)  # a pipe or device named like the CSV would block the open
        try:
            with open(self.csv_path, encoding="utf-8-sig", newline="") as fh:
                rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{display_name(self.csv_path)} is not a CSV this watch can continue ({exc})") from None
        if not rows:
            return  # empty: a new table is written
        if rows[0] != self.columns:
            raise ValueError(f"{display_name(self.csv_path)} was written for other columns; choose a new CSV file")
        i_sha = self.columns.index("sha256")
        for row in rows[1:]:
            if len(row) < len(self.columns):
                self.damaged += 1
                row = row + [""] * (len(self.columns) - len(row))
            self.rows.append(row)
            path = text_to_path(row[0][1:] if row[0][:2] in ("'=", "'+", "'-", "'@") else row[0])
            if row[i_sha]:
                self.hashes.setdefault(row[i_sha], path)
            if row[0]:
                self.tracker.done[path] = None

    def _write(self) -> None:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(self.columns)
        w.writerows(self.rows)
        atomic_write_text(self.csv_path, "\ufeff" + buf.getvalue())

    def poll_once(self) -> list[Result]:
        """One pass: classify what became complete; returns the new results (rows added)."""
        candidates = [i.path for i in scan([self.folder]) if not i.error]
        ready = self.tracker.observe(candidates)
        added: list[Result] = []
        if not ready:
            return added
        before = len(self.rows)
        try:
            with closing(self._classified(ready)) as classified:
                for rows in classified:
                    if self.stop_event.is_set():
                        break  # stopped mid-batch: what is written stands; the rest is classified on the next start
                    self._add(rows, added)
        finally:  # also after a second Ctrl+C (KeyboardInterrupt) mid-batch: the rows made so far are written
            if len(self.rows) != before:
                self._write()
        return added

    def _add(self, rows: list[Result], added: list[Result]) -> None:
        """One file's rows into the table (none for a retry or a restart's repeat), each also into ``added``."""
        r = rows[0]  # one file's rows: its cells (camera fields), or its one row
        if not r.ok and self.tracker.retry_or_finish(r.path, failed=True):
            return
        self.tracker.retry_or_finish(r.path, failed=False)
        first = self.hashes.get(r.sha256) if r.sha256 else None
        if first is not None and first == r.path:
            return  # the same file again (a restart): no second row
        if first is not None:  # the same picture under another name: its own rows, not counted twice
            for each in rows:
                each.error = f"duplicate of {display_name(first.name)} (same image; not counted again)"
        elif r.sha256:
            self.hashes[r.sha256] = r.path
        for each in rows:
            self.rows.append(result_row(each, self.model.labels, self.model.info.name, self.model.info.version, self.cells))
            added.append(each)
            if self.on_result:
                self.on_result(each)

    def _classified(self, ready: list[Path]) -> Generator[list[Result], None, None]:
        """Each ready file's rows, in order: one per found cell with ``cells``, else one. Close it to stop the
        decoding pool early."""
        if self.cells:
            with closing(field_results(ready, self.model)) as fields:
                yield from fields
        else:
            with closing(classify_stream(ready, self.model)) as results:
                for r in results:
                    yield [r]

    def run(self) -> None:
        if not self.csv_path.exists():
            self._write()  # the header, so a reader sees a valid (empty) table from the start
        while not self.stop_event.is_set():
            self.poll_once()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop after the file in hand; safe from a signal handler (see :class:`StopFlag`)."""
        self.stop_event.set()
