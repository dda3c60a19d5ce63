"""A camera field's "no white cell" row is no cell to review (issue 28, item 3): it never awaits review, is never
listed as unreviewed or in the review order, and Accept unflagged leaves it alone (core.cases.review.reviewable)."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.cases.review import ReviewSession, awaiting_review, next_awaiting, sign_off_blockers, unreviewed
from hv_desktop.core.cases.review_order import class_shares, review_next
from hv_desktop.core.inference.result import Result

PROBS = {"eosinophil": 0.1, "lymphocyte": 0.2, "monocyte": 0.3, "neutrophil": 0.4}


def rows() -> list[Result]:
    """A field's two cells and a field with none (flagged, as a file from elsewhere may say)."""
    box = (10, 10, 60, 60)
    return [
        Result(Path("a.jpg"), "neutrophil", 0.4, dict(PROBS), True, cell_index=1, cell_box=box),
        Result(Path("a.jpg"), "monocyte", 0.95, dict(PROBS), False, cell_index=2, cell_box=box),
        Result(Path("b.jpg"), no_cell=True, needs_review=True),
    ]


def test_a_field_without_a_white_cell_never_awaits_review() -> None:
    cells = rows()
    none = cells[2]
    assert not awaiting_review(none) and not unreviewed(none)
    assert awaiting_review(cells[0]) and unreviewed(cells[1])
    assert sign_off_blockers(cells) == 1
    assert next_awaiting(cells, 0) == 0  # from the first cell round to itself: the no-cell row is skipped


def test_review_next_skips_it_and_it_has_no_share() -> None:
    cells = rows()
    assert sorted(review_next(cells)) == [0, 1]
    assert set(class_shares(cells)) == {"neutrophil", "monocyte"} and sum(class_shares(cells).values()) == 1.0


def test_accept_unflagged_leaves_it_alone() -> None:
    session = ReviewSession()
    session.new_case("S-1")
    for r in rows():
        r.case = "S-1"
        session.results.append(r)
    assert session.unflagged_rows() == [1]
    assert session.accept_unflagged() == [1]
    assert session.results[2].reviewer_label is None
