"""A consultant's reply matched to the cells of the request it answers: by cell ID (two identical images are two
cells), by the image's sha256 only where that is unambiguous; which case it answers, and what it says, in words.

Why its own module: reading a package (:mod:`hv_desktop.core.io.package`) trusts nothing in it; matching a reply that
has been read is a separate rule, the one the window's merge and its summary both use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hv_desktop.core.cases.review import reviewable
from hv_desktop.core.inference.fields import cell_name
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.package import Consultation, PackageError


def matched_cells(results: Sequence[Result], reply: Consultation) -> list[tuple[int, str | None]]:
    """(index in ``results``, the consultant's review) for each cell of ``results`` the reply holds: by cell ID.
    Where no cell ID matches (a request sent before cells had IDs), by the image's sha256 where exactly one cell
    on each side has it: never a guess between two identical images."""
    theirs = reply.sender_labels
    out = [(i, theirs[r.cell_id]) for i, r in enumerate(results) if r.cell_id in theirs]
    if out:
        return out
    by_sha = {r.sha256: reply.sender_labels[r.cell_id] for r in reply.results if r.sha256}
    usable = _unique(r.sha256 for r in reply.results) & _unique(r.sha256 for r in results)
    return [(i, by_sha[r.sha256]) for i, r in enumerate(results) if r.sha256 in usable]


def _unique(shas: Iterable[str | None]) -> set[str]:
    """The digests that occur exactly once."""
    seen: dict[str, int] = {}
    for s in shas:
        if s:
            seen[s] = seen.get(s, 0) + 1
    return {s for s, n in seen.items() if n == 1}


def sender_label(labels: Mapping[str, str | None], r: Result) -> str | None:
    """The sender's review of a cell, by its cell ID (a session saved before cells had IDs kept it by the image's
    sha256, or its name)."""
    return labels[r.cell_id] if r.cell_id in labels else labels.get(r.sha256 or r.path.name)


def disagreeing(results: Sequence[Result], reply: Consultation) -> list[tuple[int, str]]:
    """(index, the consultant's review) wherever the consultant reviewed a cell otherwise than it stands here (the
    reviewer's class, or the model's where the cell is not reviewed)."""
    return [
        (i, theirs)
        for i, theirs in matched_cells(results, reply)
        if theirs and theirs != (results[i].reviewer_label or results[i].label)
    ]


def reply_summary(results: Sequence[Result], reply: Consultation, case: str) -> str:
    """What a reply says about a case, in words: how many of its cells the consultant reviewed and how many they
    classed otherwise. Why: a reply that reviewed nothing read "the consultant agrees with every review" (issue 30)."""
    who = " ".join(str(reply.case.get("operator") or "the consultant").split())[:200]
    n = sum(1 for r in results if reviewable(r))  # a camera field's "no white cell" row is no cell
    reviewed = sum(1 for _, theirs in matched_cells(results, reply) if theirs)
    differ = len(disagreeing(results, reply))
    cells = f"cell{'s' if n != 1 else ''}"
    if reviewed == 0:
        return f"Case {case}: {who} reviewed none of its {n} {cells}: there is nothing to compare yet."
    if differ:
        left = f" ({n - reviewed} not reviewed)" if reviewed < n else ""
        return (
            f"Case {case}: {who} reviewed {reviewed} of {n} {cells}{left} and classed {differ} otherwise. Choose a row "
            "to see the cell; accept the consultant's class or keep yours."
        )
    if reviewed < n:
        return f"Case {case}: {who} reviewed {reviewed} of {n} {cells}, agreeing with each; {n - reviewed} were not reviewed."
    return f"Case {case}: {who} reviewed every cell and agrees with every review of this case."


def disagreements(mine: Sequence[Result], reply: Consultation) -> list[tuple[str, str | None, str | None]]:
    """(the cell's name, my review, the consultant's review) wherever the consultant's review differs from mine (a
    camera field's cell named which it is: "field.jpg · cell 2", fields.cell_name)."""
    mine = list(mine)
    return [(cell_name(mine[i]), mine[i].reviewer_label, theirs) for i, theirs in disagreeing(mine, reply)]


def reply_case(reply: Consultation, sent: Mapping[str, str], results: Sequence[Result]) -> str:
    """The case of ``results`` a reply answers: the one its package ID was sent for (``sent``: package ID ->
    case), else (a session restored without that record) the case of the reply's case ID. PackageError, said
    plainly, when the reply answers a request this session did not send, or holds none of that case's cells."""
    cases = {r.case for r in results}
    asked = str(reply.case.get("case_id") or "")[:200]
    cid = sent.get(reply.package_id)
    if cid not in cases:
        cid = asked if asked in cases else None
    if cid is None:
        raise PackageError(
            f"this reply answers case {asked or '(no ID)'} (package {reply.package_id or '?'}), which was not sent "
            "from this session; nothing was merged"
        )
    if not matched_cells([r for r in results if r.case == cid], reply):
        raise PackageError(
            f"none of the reply's {len(reply.results)} cells is a cell of case {cid or '(no ID)'}; nothing was merged"
        )
    return cid
