"""The one definition of the review rules (hv_desktop.core.cases.review)."""

from pathlib import Path

from hv_desktop.core.cases.flags import flag_reason
from hv_desktop.core.cases.review import awaiting_review
from hv_desktop.core.inference.result import Result


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


def test_review_classes_keys_are_unique_and_keep_the_model_keys():
    from hv_desktop.core.cases.review import key_map, review_classes

    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    classes = review_classes(labels)
    keys = [k for c in classes for k in c.key.split("/")]
    assert len(keys) == len(set(keys)) and "F" not in keys  # F jumps to the next flagged cell
    km = key_map(labels)
    assert km["1"] == km["e"] == "eosinophil" and km["b"] == "basophil" and km["r"] == "nucleated red cell"


def test_reviewed_differential_counts_nrbc_per_100_white_cells_outside_the_total():
    from hv_desktop.core.cases.reviewed_differential import reviewed_differential

    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    rs = [Result(Path(f"n{i}.png"), label="neutrophil", confidence=0.99) for i in range(6)]
    rs += [Result(Path(f"l{i}.png"), label="lymphocyte", confidence=0.99) for i in range(3)]
    rs.append(Result(Path("b.png"), label="neutrophil", confidence=0.6, needs_review=True, reviewer_label="basophil"))
    rs += [
        Result(Path(f"r{i}.png"), label="lymphocyte", confidence=0.7, needs_review=True, reviewer_label="nucleated red cell")
        for i in range(2)
    ]
    d = reviewed_differential(rs, labels)
    assert d.white_total == 10  # 6 neutrophils, 3 lymphocytes, 1 basophil; the 2 NRBC are not white cells
    assert [n for n, _, _ in d.white][:3] == ["neutrophil", "lymphocyte", "monocyte"]  # clinical order
    assert ("basophil", 1, 10.0) in d.white and ("neutrophil", 6, 60.0) in d.white
    assert d.per_100 == [("nucleated red cell", 2, 20.0)]


def test_sign_off_needs_reviews_or_a_reason():
    import pytest

    from hv_desktop.core.cases.review import SignOff, sign_off

    rs = [
        Result(Path("a.png"), label="monocyte", confidence=0.6, needs_review=True),
        Result(Path("b.png"), label="neutrophil", confidence=0.99),
    ]
    with pytest.raises(ValueError, match="1 flagged cell not reviewed"):
        sign_off(rs, "A. Tech", "2026-11-28T16:00")
    with pytest.raises(ValueError, match="name"):
        sign_off(rs, "  ", "2026-11-28T16:00", "urgent")
    s = sign_off(rs, "A. Tech", "2026-11-28T16:00", "urgent sample, consultant informed")
    assert s.unreviewed_flagged == 1 and s.override_reason.startswith("urgent")
    rs[0].reviewer_label = "monocyte"
    clean = sign_off(rs, "A. Tech", "2026-11-28T16:05", "ignored when nothing is left")
    assert clean.unreviewed_flagged == 0 and clean.override_reason == ""
    assert SignOff.from_dict(clean.as_dict()) == clean
    for bad in ([], {"operator": 3}, {"operator": ""}, {"operator": "x", "unreviewed_flagged": -1}):
        assert SignOff.from_dict(bad) is None


def test_review_session_undo_accept_and_lock():
    import pytest

    from hv_desktop.core.cases.review import CaseLocked, ReviewSession

    s = ReviewSession()
    s.results += [
        Result(Path("a.png"), label="monocyte", confidence=0.99),
        Result(Path("b.png"), label="neutrophil", confidence=0.6, needs_review=True),
        Result(Path("c.png"), error="empty file"),
    ]
    s.assign(1, "basophil")
    assert s.accept_unflagged() == [0] and s.results[0].reviewer_label == "monocyte"
    assert s.undo() == [0] and s.results[0].reviewer_label is None  # accept-all is one step
    assert s.undo() == [1] and s.results[1].reviewer_label is None
    assert s.undo() == []
    s.assign(2, "monocyte")  # a failed file cannot be reviewed
    assert s.results[2].reviewer_label is None
    s.assign(1, "basophil")
    s.sign_off("A. Tech", "2026-11-28T17:00")
    with pytest.raises(CaseLocked):
        s.assign(0, "monocyte")
    assert s.undo() == []  # a signed case has no undo history; its history is the audit
    extra = s.to_extra()
    t = ReviewSession()
    t.load_extra(extra)
    assert t.signed == s.signed and t.audit == s.audit and t.signoffs == s.signoffs
    s.unlock("second look", "2026-11-28T17:05")
    assert not s.locked() and s.audit[-1]["event"] == "unlocked"
    s.assign(0, "monocyte")


def test_cases_each_have_their_results_and_their_own_sign_off():
    import pytest

    from hv_desktop.core.cases.review import CaseLocked, ReviewSession

    s = ReviewSession()
    a = s.new_case("S-1", "A. Tech")
    s.results += [Result(Path(f"a{i}.png"), label="neutrophil", confidence=0.99, case=a) for i in range(3)]
    b = s.new_case("S-1")  # the same ID again: kept apart
    assert b == "S-1 (2)" and s.current == b
    s.results += [Result(Path(f"b{i}.png"), label="lymphocyte", confidence=0.99, case=b) for i in range(2)]
    assert [r.path.name for r in s.case_results(a)] == ["a0.png", "a1.png", "a2.png"]
    assert len(s.case_results()) == 2  # the current case
    s.sign_off("A. Tech", "2026-11-28T17:00")  # signs S-1 (2) only
    with pytest.raises(CaseLocked):
        s.assign(3, "monocyte")
    s.assign(0, "monocyte")  # S-1 is still open
    t = ReviewSession()
    t.load_extra(s.to_extra())
    assert list(t.cases) == ["S-1", "S-1 (2)"] and t.current == b and t.locked() and not t.signoffs.get(a)


def test_parse_extra_classes_names_the_wrong_line():
    import pytest

    from hv_desktop.core.cases.review import EXTRA_CLASSES, format_extra_classes, parse_extra_classes

    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert parse_extra_classes(format_extra_classes(EXTRA_CLASSES), labels) == list(EXTRA_CLASSES)
    for text, words in (
        ("blast", "line 1"),
        ("blast, XY", "one letter"),
        ("blast, X\nmyelocyte, X", "line 2"),
        ("monocyte, Q", "already in the list"),
        ("smudge, S, per 1000", "per 100"),
        ("blast, F", "already used"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_extra_classes(text, labels)


def test_a_case_flagged_far_more_than_the_training_labs_names_the_ways_to_fit_it():
    from pathlib import Path

    from hv_desktop.core.cases.flags import LAB_HINT_CELLS, lab_hint

    def cells(n, flagged):
        return [Result(Path(f"c{i}.png"), label="neutrophil", needs_review=i < flagged) for i in range(n)]

    assert lab_hint(cells(LAB_HINT_CELLS - 1, LAB_HINT_CELLS - 1)) is None  # too few to say
    assert lab_hint(cells(100, 43)) is None  # a training lab's rate (BCCD TEST: 42.5 %)
    hint = lab_hint(cells(100, 95))
    assert hint is not None and "95%" in hint and "Match Lab Magnification" in hint and "Adapt to This Lab" in hint
    errors = [Result(Path(f"e{i}.png"), error="not an image") for i in range(50)]
    assert lab_hint(cells(10, 10) + errors) is None  # failed files are not cells
