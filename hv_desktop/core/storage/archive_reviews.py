"""The lab's reviews as they accumulate in the case archive, for site models (issue 27: learn as reviews accumulate).

Why here: a lab reviews cells every day, in many cases over many sessions; a site model refreshed from the open
session alone would forget the cases closed yesterday. The archive keeps every review, so the count a refresh is
offered at, and the cells a refresh learns from, are the lab's, not the window's.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.system.paths import path_to_text, text_to_path

#: The newest reviewed cells a refresh reads at most (adapt itself keeps at most its own limit per class).
MAX_REVIEWED = 20_000


@dataclass(frozen=True)
class ReviewedCell:
    cell_id: str
    path: Path
    label: str


def _outside(prefix: Path | None) -> tuple[str, list[object]]:
    """SQL and arguments leaving out cells whose file is under ``prefix`` (another lab's images: consultation
    packages are unpacked into the data folder's ``consultations``, and must not teach this lab's site model)."""
    if prefix is None:
        return "", []
    text = path_to_text(prefix).rstrip("/\\") + os.sep
    return " AND substr(cells.path, 1, ?) != ?", [len(text), text]


def reviewed_counts(archive: CaseArchive, leave_out: Path | None = None) -> dict[str, int]:
    """Reviewed cells per reviewer label over every case in the archive (labels as the reviewers wrote them),
    leaving out files under ``leave_out``."""
    where, args = _outside(leave_out)
    try:
        rows = archive.connection.execute(
            "SELECT reviewer_label, COUNT(*) FROM cells WHERE reviewer_label IS NOT NULL AND error IS NULL"
            + where
            + " GROUP BY reviewer_label",
            args,
        ).fetchall()
    except sqlite3.Error as exc:
        raise ArchiveError(f"the case archive cannot be read ({exc})") from exc
    return {str(label): int(n) for label, n in rows}


def reviewed_cells(archive: CaseArchive, leave_out: Path | None = None, limit: int = MAX_REVIEWED) -> list[ReviewedCell]:
    """The archive's reviewed cells, newest cases first, leaving out files under ``leave_out`` (a file that has
    gone is the reader's to skip)."""
    where, args = _outside(leave_out)
    try:
        rows = archive.connection.execute(
            "SELECT cells.cell_id, cells.path, cells.reviewer_label FROM cells JOIN cases USING (case_id) "
            "WHERE cells.reviewer_label IS NOT NULL AND cells.error IS NULL"
            + where
            + " ORDER BY cases.created_at DESC, cells.case_id, cells.position LIMIT ?",
            [*args, limit],
        ).fetchall()
    except sqlite3.Error as exc:
        raise ArchiveError(f"the case archive cannot be read ({exc})") from exc
    return [ReviewedCell(str(cid), text_to_path(path), str(label)) for cid, path, label in rows]


def merged(first: Iterable[ReviewedCell], then: Iterable[ReviewedCell]) -> list[ReviewedCell]:
    """``first`` (e.g. the open session's reviews, which may be newer than the archive's), then ``then``, each cell
    once (by cell ID)."""
    seen: set[str] = set()
    out = []
    for c in [*first, *then]:
        if c.cell_id not in seen:
            seen.add(c.cell_id)
            out.append(c)
    return out
