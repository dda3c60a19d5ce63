"""The one definition of the review rules (hv_desktop.core.review)."""

from pathlib import Path

from hv_desktop.core.batch import Result
from hv_desktop.core.review import awaiting_review, flag_reason


def test_awaiting_review_is_flagged_and_unreviewed_only():
    r = Result(Path("a.png"), label="monocyte", confidence=0.8, needs_review=True)
    assert awaiting_review(r)
    r.reviewer_label = "monocyte"
    assert not awaiting_review(r)
    assert not awaiting_review(Result(Path("b.png"), label="monocyte", confidence=0.99, needs_review=False))
    assert not awaiting_review(Result(Path("c.png"), error="empty file", needs_review=True))


def test_flag_reason_in_words():
    low = flag_reason(Result(Path("a.png"), label="monocyte", confidence=0.55, needs_review=True))
    odd = flag_reason(Result(Path("b.png"), label="monocyte", confidence=0.97, needs_review=True))
    assert low[0] == "Low confidence" and "55 %" in low[1]
    assert odd[0] == "Unlike the cells the model was trained on"
