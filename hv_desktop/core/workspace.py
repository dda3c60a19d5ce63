"""One working session, Qt-free: the review session (cases, cells, reviews, sign-offs, audit), the model in use, the
run queue, and the case archive every change is written to; listeners are told what changed.

Why: a session's state had no Qt-free home (issue 29): it was spread over the window's handlers, and only the
window could save it, as one JSON file rewritten whole. Here each change is one transaction in the archive
(hv_desktop.core.storage.archive) as it happens, the open session too (which cases, the current one, the consultation:
the archive is its one store; the JSON autosave went), the command line uses the same object (``classify --case``,
``report --case``), and a view subscribes instead of being refreshed by hand.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hv_desktop.core.cases.consultation import ConsultationState
from hv_desktop.core.cases.review import CaseLocked, ReviewSession, SignOff
from hv_desktop.core.cases.runs import RunQueue
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import ArchivedCase, CaseArchive
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.storage.archive_session import CONSULTATION, read_open, record_open, record_value
from hv_desktop.core.system.appdata import ARCHIVE_NAME


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

    kind: str  # also "consultation"
    rows: tuple[int, ...] = ()
    message: str = ""


class Workspace:
    """The session and its archive. A change is made in the session first, then written to the archive (when there
    is one); a refusal by the session's rules (a signed-off case, a text over its limit) changes nothing. An archive that
    cannot be written (a full disk, a damaged file) never undoes the session's change (the person goes on
    working): it is told to the listeners as a Change("archive", message=...)."""

    def __init__(self, archive: CaseArchive | None = None) -> None:
        self.review = ReviewSession()
        self.model: Model | None = None
        self.queue = RunQueue()
        self.archive = archive
        #: how rows join the session's list: the window's table model sets its own ``append`` (which tells its
        #: views) so the one list is changed in one place
        self.append_rows: Callable[[list[Result]], None] = self.review.results.extend
        self._listeners: list[Callable[[Change], None]] = []
        self._consultation: ConsultationState | None = None
        #: the open session (which cases, the current one) is the window's: a workspace records it once it has
        #: restored it (:meth:`restore_open`), so the command line's never writes over it
        self.keeps_open = False
        self.restoring = False  # a restore is under way: the open session is not recorded half back
        self._recorded: tuple[tuple[str, ...], str] | None = None

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

    def case_results(self) -> list[Result]:
        """The current case's results (all of them before cases are used)."""
        return self.review.case_results()

    def choose_case(self, case_id: str) -> None:
        """Make ``case_id`` (a case of this session) current; listeners told. Another ID changes nothing."""
        if case_id != self.review.current and case_id in self.review.cases:
            self.review.current = case_id
            self.record_open()
            self._tell("cases")

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
        self.record_open()
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
        self.record_open()
        self._tell("cases")
        return case

    def clear(self) -> None:
        """A new session: the session empties; the archive keeps every case."""
        self.review.clear()
        self.queue.clear()
        self.consultation = self._consultation.without_package() if self._consultation else None
        self.record_open()
        self._tell("cases")

    # --- the open session and the consultation (kept in the archive: hv_desktop.core.storage.archive_session)
    @property
    def consultation(self) -> ConsultationState | None:
        """The package the session came in and the requests it sent (hv_desktop.core.cases.consultation)."""
        return self._consultation

    @consultation.setter
    def consultation(self, state: ConsultationState | None) -> None:
        """Checked as it enters (ValueError when over a limit), then written to the archive (one transaction)."""
        if state == self._consultation:
            return
        if state is not None:
            state.check()
        self._consultation = state
        self._archive(lambda a: record_value(a.connection, CONSULTATION, state.to_json() if state else None))
        self._tell("consultation")

    def record_open(self) -> None:
        """Write which cases are open, in order, and the current one, when they changed since last written (one
        transaction). Called on each change of cases here; the window also calls it when it changes the current
        case itself."""
        state = (tuple(self.review.cases), self.review.current)
        if not self.keeps_open or self.restoring or self.archive is None or state == self._recorded:
            return
        if self._archive(lambda a: record_open(a.connection, *state)):
            self._recorded = state

    def restore_open(self, chunk: int = 500) -> Generator[tuple[int, int], None, None]:
        """Bring back the open session the archive holds (after a restart): its cases, sign-offs, audit, current
        case and consultation at once, then its cells ``chunk`` at a time through ``append_rows`` (the current
        case's first, so it shows in the first turn). Yields (cells restored, cells in all) after the cases and
        after each chunk, so a window adds one chunk per event-loop turn. Cases already in the session stay as
        they are. ArchiveError when the archive cannot be read (what came in stays). From then on this workspace
        records the open session."""
        self.restoring = True
        archive = self.archive
        try:
            if archive is None:
                return
            held = read_open(archive.connection)
            ids = [c.info.case_id for c in held.cases if c.info.case_id not in self.review.cases]
            for c in held.cases:
                if c.info.case_id in ids:
                    self.review.cases[c.info.case_id] = c.info
                    if c.sign_off is not None:
                        self.review.signoffs[c.info.case_id] = c.sign_off
            new = set(ids)
            self.review.audit += [e for e in held.audit if e.get("case") in new]
            if self.review.current not in self.review.cases:
                self.review.current = held.current if held.current in self.review.cases else (ids or [""])[-1]
            ids.sort(key=lambda cid: cid != self.review.current)  # the case shown first: it shows in the first turn
            if self._consultation is None and held.consultation is not None:
                self._consultation = ConsultationState.from_json(held.consultation)
                self._tell("consultation")
            self._tell("cases")
            done = 0
            yield done, held.cells
            for results in archive.cells_in_chunks(ids, chunk):
                if self.archive is not archive:  # closed meanwhile (the window closed)
                    return
                start = len(self.review.results)
                self.append_rows(results)
                self.queue.remember(results)
                done += len(results)
                self._tell("added", range(start, len(self.review.results)))
                yield done, held.cells
        finally:
            self.restoring, self.keeps_open = False, True
            self.record_open()

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
