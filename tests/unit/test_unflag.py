"""Issue 27: a site model leaves cells unflagged only when the lab's reviewed cells verify them."""

from __future__ import annotations

import numpy as np
import pytest

from hv_desktop.core.inference.metadata import FLAG_ALL, needs_review
from hv_desktop.core.site.unflag import UNFLAG_BOUND, cells_needed, unflag_check, wilson_lower

LABELS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def test_wilson_lower_bound_matches_the_textbook_values():
    assert wilson_lower(40, 40) == pytest.approx(0.9124, abs=1e-4)  # 40 of 40 right: not yet 97 %
    assert wilson_lower(125, 125) >= UNFLAG_BOUND > wilson_lower(124, 124)  # n / (n + z²) >= 0.97 from n = 125
    assert wilson_lower(0, 0) == 0.0 and wilson_lower(5, 10) < 0.5 < wilson_lower(5, 10) + 0.3


def test_cells_needed_is_none_when_the_accuracy_itself_is_too_low():
    assert cells_needed(1.0) == 125
    assert cells_needed(0.96) is None and cells_needed(0.97) is None
    assert cells_needed(0.99) > cells_needed(1.0)


def test_ten_reviewed_cells_per_class_never_unflag_and_say_what_to_review():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    pred = y.copy()
    pred[rng.choice(np.flatnonzero(y == 2), 3, replace=False)] = 3  # monocytes misread most
    check = unflag_check(y, pred, np.ones(40), 0.6, LABELS)
    assert not check.verified and check.unflagged == 40 and check.correct == 37
    assert "every cell stays flagged" in check.message and "monocytes" in check.message


def test_a_third_of_unflagged_cells_wrong_is_never_verified_however_many():
    y = np.repeat(np.arange(4), 500)
    pred = np.where(np.arange(2000) % 3 == 0, (y + 1) % 4, y)  # the labs A and B of issue 27: 66 % right
    check = unflag_check(y, pred, np.ones(2000), 0.6, LABELS)
    assert not check.verified and "not yet reliable enough" in check.message


def test_enough_right_unflagged_cells_are_verified_and_flagged_ones_do_not_count():
    y = np.repeat(np.arange(4), 60)
    pred = y.copy()
    values = np.ones(240)
    pred[:20] = (y[:20] + 1) % 4  # 20 wrong cells ...
    values[:20] = 0.1  # ... all flagged: the unflagged 220 are all right
    check = unflag_check(y, pred, values, 0.6, LABELS)
    assert check.verified and (check.unflagged, check.correct) == (220, 220)


def test_a_threshold_of_flag_all_flags_every_cell():
    assert needs_review(0.99, FLAG_ALL) and needs_review(1.0, FLAG_ALL)
    assert not needs_review(0.7, 0.6) and needs_review(0.5, 0.6)


def test_the_interval_said_beside_an_estimate_holds_it_and_narrows_with_cells():
    from hv_desktop.core.site.unflag import wilson_interval

    lo, hi = wilson_interval(34, 40)  # "about 85 %"
    assert lo < 0.85 < hi and round(lo, 2) == 0.71 and round(hi, 2) == 0.93
    lo2, hi2 = wilson_interval(340, 400)
    assert hi2 - lo2 < (hi - lo) / 2


def test_a_stricter_threshold_is_chosen_where_the_most_typical_reviewed_cells_are_verified():
    # 400 reviewed cells, 95 % right overall (the held-out PBC lab at 100 per class), errors among the least typical
    y = np.repeat(np.arange(4), 100)
    values = np.linspace(1.0, 0.0, 400)  # most typical first
    pred = y.copy()
    pred[-20:] = (y[-20:] + 1) % 4  # the 20 least typical are wrong
    at_base = unflag_check(y, pred, np.full(400, 0.9), 0.6, LABELS)  # all tied at one value: nothing to choose
    assert not at_base.verified
    check = unflag_check(y, pred, values, 0.0, LABELS)  # at the base threshold all 400 unflagged, 95 % right
    # the lowest threshold whose unflagged cells still hold the bound: 380 of 384 (97.4 %); 380 of 385 would not
    assert check.verified and (check.correct, check.unflagged) == (380, 384)
    assert check.lower >= UNFLAG_BOUND > wilson_lower(380, 385)
    assert check.threshold == pytest.approx(values[383]) and "(review threshold 0 -> 0.0" in check.message
    assert not needs_review(float(values[383]), check.threshold) and needs_review(float(values[384]), check.threshold)


def test_the_chosen_threshold_never_unflags_what_the_base_rule_flags_and_keeps_the_base_one_when_it_holds():
    y = np.repeat(np.arange(4), 100)
    values = np.linspace(1.0, 0.0, 400)
    check = unflag_check(y, y.copy(), values, 0.5, LABELS)  # every cell right: the base threshold already holds
    assert check.verified and check.threshold == 0.5 and check.unflagged == int((values >= 0.5).sum())
    few = unflag_check(y, y.copy(), values, 0.8, LABELS)  # above 0.8 only 80 cells: too few to verify 97 %
    assert not few.verified and few.threshold == 0.8


def test_a_tie_that_holds_a_wrong_cell_is_not_split():
    y = np.repeat(np.arange(4), 50)
    values = np.r_[np.full(130, 0.95), np.linspace(0.9, 0.0, 70)]
    pred = y.copy()
    # one wrong cell among the 130 tied most typical (129 of 130, bound < 97 %), placed where splitting the tie
    # before it would leave 129 of 129 right (bound >= 97 %)
    pred[129] = (y[129] + 1) % 4
    pred[130:150] = (y[130:150] + 1) % 4  # and the next most typical wrong: no larger set holds either
    check = unflag_check(y, pred, values, 0.0, LABELS)
    assert not check.verified
    from hv_desktop.core.site.unflag import choose_threshold

    assert choose_threshold(y, pred, values, 0.0) is None


def test_review_values_that_are_not_numbers_are_never_unflagged_nor_a_threshold():
    from hv_desktop.core.site.unflag import choose_threshold

    y = np.repeat(np.arange(3), 50)
    values = np.r_[np.linspace(0.9, 0.6, 100), np.full(50, np.nan)]
    check = unflag_check(y, y.copy(), values, 0.5, LABELS)  # 100 right, 50 with no value
    assert not check.verified and check.unflagged == 100  # 100 of 100 bound 96.3 %: the NaN cells do not count
    assert choose_threshold(y, y.copy(), values, 0.5) is None
    assert needs_review(float("nan"), 0.5)  # the one rule flags a value that is not a number


def test_a_review_value_of_one_is_not_a_threshold_since_that_flags_every_cell():
    from hv_desktop.core.site.unflag import choose_threshold

    y = np.repeat(np.arange(3), 60)
    values = np.r_[np.ones(150), np.full(30, 0.2)]
    pred = y.copy()
    pred[150:] = (y[150:] + 1) % 3  # the 30 least typical wrong: only the 150 at 1.0 could be left unflagged
    assert choose_threshold(y, pred, values, 0.1) is None  # 1.0 would be FLAG_ALL, not "unflag these 150"
    assert not unflag_check(y, pred, values, 0.1, LABELS).verified
    assert choose_threshold(y, y.copy(), values, FLAG_ALL) is None  # a base that flags every cell gives no floor


def test_no_reviewed_cells_keep_every_cell_flagged_without_failing():
    empty = np.zeros(0, dtype=int)
    check = unflag_check(empty, empty, np.zeros(0), 0.5, LABELS)
    assert not check.verified and check.unflagged == 0 and "every cell stays flagged" in check.message
