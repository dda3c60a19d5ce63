"""One working session, Qt-free: the review session (cases, cells, reviews, sign-offs, audit), the model in use, the
run queue, and the case archive every change is written to; listeners are told what changed.

Why: a session's state had no Qt-free home (issue 29): it was spread over the window's handlers, and only the
window could save it, as one JSON file rewritten whole. Here each change is one transaction in the archive
(hv_desktop.core.archive) as it happens, the command line uses the same object (``classify --case``,
``report --case``), and a view subscribes instead of being refreshed by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hv_desktop.core.archive import ArchivedCase, CaseArchive
from hv_desktop.core.model import Model
from hv_desktop.core.result import Result
from hv_desktop.core.review import CaseLocked, ReviewSession, SignOff
from hv_desktop.core.runs import RunQueue


@dataclass(frozen=True)
class Change:
    """What changed: ``kind`` is "cases", "added", "reviews", "signed", "model" or "reclassified"; ``rows`` the
    indices of the session's results it touched (empty when it is not about rows)."""

    kind: str
    rows: tuple[int, ...] = ()


class Workspace:
    """The session and its archive. Every method that changes something writes it to the archive (when there is
    one) before it tells the listeners; a refusal (a signed-off case, a text over its limit) changes nothing."""

    def __init__(self, archive: CaseArchive | None = None) -> None:
        self.review = ReviewSession()
        self.model: Model | None = None
        self.queue = RunQueue()
        self.archive = archive
        self._listeners: list[Callable[[Change], None]] = []

    # --- listening
    def subscribe(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def _tell(self, kind: str, rows: Sequence[int] = ()) -> None:
        change = Change(kind, tuple(rows))
        for listener in list(self._listeners):
            listener(change)

    @property
    def results(self) -> list[Result]:
        return self.review.results

    # --- cases and cells
    def new_case(self, case_id: str, operator: str = "", note: str = "") -> str:
        """Open a case and make it current (see ReviewSession.new_case); archived at once."""
        previous = self.review.current
        cid = self.review.new_case(case_id, operator, note)
        if self.archive is not None:
            try:
                self.archive.upsert_case(self.review.cases[cid])
            except Exception:
                del self.review.cases[cid]
                self.review.current = previous
                raise
        self._tell("cases")
        return cid

    def set_case_details(self, operator: str, note: str) -> None:
        self.review.set_case_details(operator, note)
        if self.archive is not None:
            self.archive.upsert_case(self.review.cases[self.review.current])
        self._tell("cases")

    def add_results(self, results: Sequence[Result], case_id: str | None = None) -> list[int]:
        """New cells of a case (the current one by default); refused (CaseLocked) when it is signed off."""
        cid = self.review.current if case_id is None else case_id
        if cid in self.review.signoffs:
            raise CaseLocked(f"case {cid} is signed off")
        for r in results:
            r.case = cid
        if self.archive is not None and results:
            self.archive.add_cells(cid, list(results))
        start = len(self.review.results)
        self.review.results.extend(results)
        rows = list(range(start, len(self.review.results)))
        self._tell("added", rows)
        return rows

    def open_archived(self, case_id: str) -> ArchivedCase:
        """Bring a case from the archive into the session (signed off: read-only, as it was signed) and make it
        current; a case already in the session is only made current."""
        if self.archive is None:
            raise ValueError("there is no case archive")
        if case_id in self.review.cases:
            self.review.current = case_id
            self._tell("cases")
            return self.archive.load_case(case_id)
        case = self.archive.load_case(case_id)
        self.review.cases[case_id] = case.info
        if case.sign_off is not None:
            self.review.signoffs[case_id] = case.sign_off
        start = len(self.review.results)
        for r in case.results:
            r.case = case_id
        self.review.results.extend(case.results)
        self.review.current = case_id
        self._tell("cases")
        self._tell("added", range(start, len(self.review.results)))
        return case

    # --- reviews
    def _cells(self, rows: Sequence[int]) -> list[tuple[str, str | None]]:
        return [(self.review.results[i].cell_id, self.review.results[i].reviewer_label) for i in rows]

    def _saved(self, kind: str, rows: Sequence[int], undo: Callable[[], object]) -> list[int]:
        """Write the reviews of ``rows`` to the archive; when that fails, take the change back and re-raise."""
        if self.archive is not None and rows:
            try:
                self.archive.set_reviews(self._cells(rows))
            except Exception:
                undo()
                raise
        self._tell(kind, rows)
        return list(rows)

    def assign(self, index: int, label: str | None) -> None:
        before = self.review.results[index].reviewer_label
        self.review.assign(index, label)
        if self.review.results[index].reviewer_label != before:
            self._saved("reviews", [index], self.review.undo)

    def accept_unflagged(self) -> list[int]:
        rows = self.review.accept_unflagged()
        return self._saved("reviews", rows, self.review.undo)

    def undo(self) -> list[int]:
        rows = self.review.undo()
        return self._saved("reviews", rows, lambda: None)

    def sign_off(self, operator: str, at: str, reason: str = "") -> SignOff:
        signed = self.review.sign_off(operator, at, reason)
        if self.archive is not None:
            try:
                self.archive.sign_off(self.review.current, signed)
            except Exception:
                del self.review.signoffs[self.review.current]
                self.review.audit.pop()
                raise
        self._tell("signed")
        return signed

    def unlock(self, reason: str, at: str) -> None:
        case = self.review.current
        signed = self.review.signoffs.get(case)
        self.review.unlock(reason, at)
        if self.archive is not None and signed is not None:
            try:
                self.archive.unlock(case, reason, at)
            except Exception:
                self.review.signoffs[case] = signed
                self.review.audit.pop()
                raise
        self._tell("signed")

    # --- the model
    def set_model(self, model: Model) -> None:
        self.model = model
        self._tell("model")

    def apply_reclassified(self, fresh: Sequence[Result]) -> list[int]:
        """A model change's results, into every cell outside a signed-off case (ReviewSession.apply_reclassified)."""
        rows = self.review.apply_reclassified(fresh)
        if self.archive is not None and rows:
            self.archive.reclassify([(self.review.results[i].cell_id, self.review.results[i]) for i in rows])
        self._tell("reclassified", rows)
        return rows
