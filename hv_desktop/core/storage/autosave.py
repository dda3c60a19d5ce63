"""The JSON autosave's end: a session file from before the case archive is imported into it once, whole, and
then renamed aside (never deleted, never imported twice); and the thumbnails a restored session makes again.

Why: the window used to rewrite the whole session as JSON after every change (a 10,000-cell session froze the
window while it restored, issue 29). The case archive now keeps every change as it happens, and the open session
with it (hv_desktop.core.storage.archive_session); this module only brings an old file in. Qt-free: the window runs
:func:`import_autosave` on a thread of its own, with a connection of its own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import ImageError, open_image
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import CaseArchive, ImportReport
from hv_desktop.core.storage.archive_import import read_session_file
from hv_desktop.core.storage.archive_schema import ArchiveError

log = logging.getLogger("hematovision")


@dataclass
class AutosaveImport:
    """What became of an old autosave: ``report`` (None when it could not be read or written), where the file
    now is (``kept_as``; None when it stayed where it was) and a line for the status bar."""

    report: ImportReport | None
    kept_as: Path | None
    message: str


def _dated_beside(path: Path, tag: str) -> Path | None:
    """``path`` renamed to a dated name beside it, never over anything; None when it cannot be."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        target = path.with_name(f"{path.stem}.{tag}-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if target.exists():
            continue
        try:
            os.rename(path, target)  # a rename: the file as it was, under another name
            return target
        except OSError:
            return None
    return None


def import_autosave(archive: CaseArchive, path: Path | None) -> AutosaveImport | None:
    """Import the JSON autosave at ``path`` (None when there is none) into ``archive`` whole: every case, cell,
    review, sign-off and audit event, its cases then the open session. The file is then renamed aside
    (``autosave.imported-DATE.json``); one that cannot be read is renamed ``autosave.unrestorable-DATE.json``. One
    the archive cannot take (a full disk) stays where it is, to be imported at the next start; a file imported
    before (a rename that failed) adds nothing again."""
    if path is None or not path.exists():
        return None
    try:
        file = read_session_file(path)
    except ArchiveError as exc:
        kept = _dated_beside(path, "unrestorable")
        log.warning("autosave not imported: %s; kept as %s", exc, kept)
        return AutosaveImport(None, kept, f"The previous session could not be restored ({exc})" + _where(kept))
    try:
        report = archive.import_session_file(file, path, open_them=True)
    except ArchiveError as exc:
        log.error("autosave not imported: %s", exc)
        return AutosaveImport(None, None, f"The previous session was not imported into the case archive ({exc}); it is kept")
    kept = _dated_beside(path, "imported")
    log.info("autosave imported: %s; kept as %s", report.as_dict(), kept)
    if report.already_imported:
        return AutosaveImport(report, kept, "The previous session was already in the case archive" + _where(kept))
    part = [f"{n} {what}" for n, what in ((report.skipped, "unreadable cells"), (len(report.problems), "unreadable parts")) if n]
    said = f"; {', '.join(part)} could not be read" if part else ""
    return AutosaveImport(
        report,
        kept,
        f"The previous session moved into the case archive: {report.cases} cases, {report.cells} cells{said}" + _where(kept),
    )


def _where(kept: Path | None) -> str:
    return f"; the file is kept as {kept}" if kept is not None else ""


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
