"""One working session, Qt-free: the review session (cases, cells, reviews, sign-offs, audit), the model in use, the
run queue, and the case archive every change is written to; listeners are told what changed.

Why: a session's state had no Qt-free home (issue 29): it was spread over the window's handlers, and only the
window could save it, as one JSON file rewritten whole. Here each change is one transaction in the archive
(hv_desktop.core.archive) as it happens, the command line uses the same object (``classify --case``,
``report --case``), and a view subscribes instead of being refreshed by hand.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hv_desktop.core.appdata import ARCHIVE_NAME
from hv_desktop.core.archive import ArchivedCase, CaseArchive
from hv_desktop.core.archive_schema import ArchiveError
from hv_desktop.core.model import Model
from hv_desktop.core.result import Result
from hv_desktop.core.review import CaseInfo, CaseLocked, ReviewSession, SignOff
from hv_desktop.core.runs import RunQueue


def open_archive(folder: Path | None) -> tuple[CaseArchive | None, str]:
    """The case archive in the app's data ``folder`` (created when new), or None and why it cannot be used (a file
    from a newer HematoVision, a damaged file, a folder that cannot be written): the session then goes on
    without it, and the person is told."""
    if folder is None:
        return None, ""
    path = folder / ARCHIVE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return CaseArchive.open(path), ""
    except (ArchiveError, OSError, sqlite3.Error) as exc:
        return None, f"The case archive {path} cannot be used ({exc}); cases are not archived in this session"


@dataclass(frozen=True)
class Change:
    """What changed: ``kind`` is "cases", "added", "reviews", "signed", "model", "reclassified" or "archive" (a
    write to the archive failed: ``message`` says why); ``rows`` the indices of the session's results it touched."""

    kind: str
    rows: tuple[int, ...] = ()
    message: str = ""


class Workspace:
    """The session and its archive. A change is made in the session first, then written to the archive (when there
    is one); a refusal by the session's rules (a signed-off case, a text over its limit) changes nothing. While the
    window still keeps its autosave too, an archive that cannot be written (a full disk, a damaged file) never
    undoes the session's change: it is told to the listeners as a Change("archive", message=...)."""

    def __init__(self, archive: CaseArchive | None = None) -> None:
        self.review = ReviewSession()
        self.model: Model | None = None
        self.queue = RunQueue()
        self.archive = archive
        #: how rows join the session's list: the window's table model sets its own ``append`` (which tells its
        #: views) so the one list is changed in one place
        self.append_rows: Callable[[list[Result]], None] = self.review.results.extend
        self._listeners: list[Callable[[Change], None]] = []

    # --- listening
    def subscribe(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def _tell(self, kind: str, rows: Sequence[int] = (), message: str = "") -> None:
        change = Change(kind, tuple(rows), message)
        for listener in list(self._listeners):
            listener(change)

    def _archive(self, write: Callable[[CaseArchive], object]) -> bool:
        """``write(archive)``; False (and the listeners told) when the archive refused or failed."""
        if self.archive is None:
            return True
        try:
            write(self.archive)
            return True
        except (ArchiveError, OSError, sqlite3.Error) as exc:
            self._tell("archive", message=f"not recorded in the case archive: {exc}")
            return False

    @property
    def results(self) -> list[Result]:
        return self.review.results

    # --- cases and cells
    def _taken(self, case_id: str) -> bool:
        return self.archive is not None and self.archive.has_case(case_id)

    def new_case(self, case_id: str, operator: str = "", note: str = "") -> str:
        """Open a case and make it current (see ReviewSession.new_case); an ID the archive already holds gets a
        suffix as one in the session does (a case ID names one sample for good)."""
        cid = self.review.new_case(case_id, operator, note)
        n = 2
        while self._taken(cid):
            del self.review.cases[cid]
            cid = self.review.new_case(f"{case_id.strip() or cid} ({n})", operator, note)
            n += 1
        self._archive(lambda a: a.upsert_case(self.review.cases[cid]))
        self._tell("cases")
        return cid

    def case_for_new_images(self, name: str) -> tuple[str, bool]:
        """The case new images join: the current one, or, when it is signed off (or there is none), a new case
        named ``name`` (True: a new case was opened), archived. Images are never turned away: a camera keeps writing
        while a finished case is signed (issue 30)."""
        current = self.review.current
        if current and current not in self.review.signoffs:
            return current, False
        operator = self.review.cases[current].operator if current in self.review.cases else ""
        return self.new_case(name, operator), True

    def set_case_details(self, operator: str, note: str) -> None:
        self.review.set_case_details(operator, note)
        self._archive(lambda a: a.upsert_case(self.review.cases[self.review.current]))
        self._tell("cases")

    def add_results(self, results: Sequence[Result], case_id: str | None = None) -> list[int]:
        """New cells of a case (the current one by default); refused (CaseLocked) when it is signed off."""
        cid = self.review.current if case_id is None else case_id
        if cid in self.review.signoffs:
            raise CaseLocked(f"case {cid} is signed off")
        for r in results:
            r.case = cid
        start = len(self.review.results)
        self.append_rows(list(results))
        if results and cid:
            self._archive(lambda a: a.add_cells(cid, list(results)))
        rows = list(range(start, len(self.review.results)))
        self._tell("added", rows)
        return rows

    def sync_to_archive(self) -> None:
        """Write what the session holds and the archive does not (a session restored from an autosave made
        before the archive existed): cases, cells, reviews and sign-offs. Idempotent."""
        if self.archive is None:
            return
        for cid, info in self.review.cases.items():
            cells = self.review.case_results(cid)
            self._archive(partial(self._sync_case, info=info, cells=cells))

    def _sync_case(self, a: CaseArchive, info: CaseInfo, cells: list[Result]) -> None:
        held = a.load_case(info.case_id) if a.has_case(info.case_id) else None
        if held is None:
            a.upsert_case(info)
        if held is None or held.sign_off is None:
            known = {r.cell_id: r.reviewer_label for r in held.results} if held is not None else {}
            new = [r for r in cells if r.cell_id not in known]
            if new:
                a.add_cells(info.case_id, new)
            changed = [(r.cell_id, r.reviewer_label) for r in cells if r.ok and r.cell_id in known]
            a.set_reviews([(cid, label) for cid, label in changed if known[cid] != label])
            signed = self.review.signoffs.get(info.case_id)
            if signed is not None:
                a.sign_off(info.case_id, signed)

    def open_archived(self, case_id: str) -> ArchivedCase:
        """Bring a case from the archive into the session (signed off: read-only, as it was signed) and make it
        current; a case already in the session is only made current."""
        if self.archive is None:
            raise ValueError("there is no case archive")
        case = self.archive.load_case(case_id)
        if case_id not in self.review.cases:
            self.review.cases[case_id] = case.info
            if case.sign_off is not None:
                self.review.signoffs[case_id] = case.sign_off
            for r in case.results:
                r.case = case_id
            start = len(self.review.results)
            self.append_rows(case.results)
            self._tell("added", range(start, len(self.review.results)))
        self.review.current = case_id
        self._tell("cases")
        return case

    def clear(self) -> None:
        """A new session: the session empties; the archive keeps every case."""
        self.review.clear()
        self.queue.clear()
        self._tell("cases")

    # --- reviews
    def _cells(self, rows: Sequence[int]) -> list[tuple[str, str | None]]:
        return [(self.review.results[i].cell_id, self.review.results[i].reviewer_label) for i in rows]

    def _reviewed(self, rows: Sequence[int]) -> list[int]:
        if rows:
            self._archive(lambda a: a.set_reviews(self._cells(rows)))
        self._tell("reviews", rows)
        return list(rows)

    def assign(self, index: int, label: str | None) -> None:
        before = self.review.results[index].reviewer_label
        self.review.assign(index, label)
        if self.review.results[index].reviewer_label != before:
            self._reviewed([index])

    def accept_unflagged(self) -> list[int]:
        return self._reviewed(self.review.accept_unflagged())

    def undo(self) -> list[int]:
        return self._reviewed(self.review.undo())

    def sign_off(self, operator: str, at: str, reason: str = "", cell_types: str = "") -> SignOff:
        case = self.review.current
        signed = self.review.sign_off(operator, at, reason, cell_types)
        self._archive(lambda a: self._archive_sign_off(a, case, signed))
        self._tell("signed")
        return signed

    def _archive_sign_off(self, a: CaseArchive, case: str, signed: SignOff) -> None:
        a.set_reviews(self._cells(self._rows_of(case)))
        a.sign_off(case, signed)

    def _rows_of(self, case: str) -> list[int]:
        return [i for i, r in enumerate(self.review.results) if r.case == case and r.ok]

    def unlock(self, reason: str, at: str) -> None:
        case = self.review.current
        was_signed = case in self.review.signoffs
        self.review.unlock(reason, at)
        if was_signed:
            self._archive(lambda a: a.unlock(case, reason, at))
        self._tell("signed")

    # --- the model
    def set_model(self, model: Model) -> None:
        self.model = model
        self._tell("model")

    def archive_reclassified(self, rows: Sequence[int]) -> None:
        """Rows whose classification changed in the session (a watched file completed after it was shown)."""
        if rows:
            self._archive(lambda a: a.reclassify([(self.review.results[i].cell_id, self.review.results[i]) for i in rows]))
        self._tell("reclassified", rows)

    def apply_reclassified(self, fresh: Sequence[Result]) -> list[int]:
        """A model change's results, into every cell outside a signed-off case (ReviewSession.apply_reclassified)."""
        rows = self.review.apply_reclassified(fresh)
        if rows:
            self._archive(lambda a: a.reclassify([(self.review.results[i].cell_id, self.review.results[i]) for i in rows]))
        self._tell("reclassified", rows)
        return rows
