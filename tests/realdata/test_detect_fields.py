"""The white-cell finder on real boxed fields of both labs (issue 28, step 1): recall and precision stay above the
floor measured when it was written (a handful of fields per lab, as captured and at other magnifications).

Measured 2026-12-02 on these fields (every 7th deepbionet field, every 9th bccd field; raw labels, which include
some label errors): deepbionet 41 fields, recall 96.7 %, precision 98.3 %; bccd 41 fields, 100 % / 97.6 %; the
same at 0.5x and 2x. Full tables: python -m training.analysis.detect_eval --lab LAB."""

from __future__ import annotations

import pytest

from hv_desktop.core.imaging.detect import FinderParams
from training.analysis.detect_eval import SIMS, evaluate, load_lab

FLOOR = 0.93


@pytest.mark.realdata
@pytest.mark.parametrize("lab, step", [("deepbionet", 7), ("bccd", 9)])
@pytest.mark.parametrize("condition", ["as captured", "magnification 0.5x", "magnification 2x"])
def test_recall_and_precision_stay_above_the_measured_floor(shared_data, lab, step, condition):
    fields = load_lab(shared_data, lab)[::step]
    assert len(fields) >= 40
    tallies, _ = evaluate(fields, SIMS[condition], FinderParams())
    every = tallies["all"]
    assert every.true >= 40
    assert every.recall() >= FLOOR, (lab, condition, every)
    assert every.precision() >= FLOOR, (lab, condition, every)
