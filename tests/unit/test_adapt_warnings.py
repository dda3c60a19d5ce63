"""A site model that flags fewer unusual cells than its base is never offered silently (issue 27 item 1)."""

from __future__ import annotations

from hv_desktop.core.inference.metadata import ModelMetadata
from hv_desktop.core.site.adapt import Adaptation, Estimate

META = ModelMetadata.from_dict({"labels": ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]})


def _adaptation(before_other, after_other, outside, before=(0.8, 0.5), after=(0.9, 0.3), in_use=None):
    counts = {"eosinophil": 10, "lymphocyte": 10, "monocyte": 10, "neutrophil": 10}
    b, a = Estimate(*before, before_other), Estimate(*after, after_other)
    return Adaptation(b"", META, counts, 1.0, b, a, outside=outside, in_use_flagged=in_use)


def test_fewer_unusual_cells_flagged_is_said_first_in_words():
    a = _adaptation(0.385, 0.154, {"blast": 8, "platelet": 5})
    assert len(a.warnings()) == 1 and "38% -> 15%" in a.warnings()[0] and "13 reviewed" in a.warnings()[0]
    assert a.summary_lines()[0].startswith("WARNING: this site model flags fewer unusual cells")


def test_as_many_or_more_unusual_cells_flagged_or_none_marked_says_nothing():
    assert _adaptation(0.385, 0.385, {"blast": 8}).warnings() == []
    assert _adaptation(0.385, 0.6, {"blast": 8}).warnings() == []
    assert _adaptation(None, None, {}).warnings() == []
    assert not _adaptation(None, None, {}).summary_lines()[0].startswith("WARNING")


def test_a_site_model_that_flags_every_cell_for_no_gain_is_warned_of():
    """2.0.0 calibrated at PBC flags 19 % of its cells, unflagged 99.8 % right; adapted from 10 reviewed cells per class
    it flags them all (the unflag bound needs ~125) and reads them no better: switching would lose the pre-classification."""
    a = _adaptation(None, None, {}, before=(0.975, 0.15), after=(0.975, 1.0))
    assert len(a.warnings()) == 1 and "flags 100% of your reviewed cells" in a.warnings()[0] and "15%" in a.warnings()[0]
    assert a.summary_lines()[0].startswith("WARNING: this site model flags 100%")
    # one cell more right of 40 is no reason to give up the pre-classification; an exact quarter more flagged counts
    assert _adaptation(None, None, {}, before=(0.95, 0.15), after=(0.975, 1.0)).warnings()
    assert _adaptation(None, None, {}, before=(0.975, 9 / 40), after=(0.975, 19 / 40)).warnings()
    assert _adaptation(None, None, {}, before=(37 / 40, 0.15), after=(39 / 40, 1.0)).warnings() == []  # exactly 5 points
    # not where it reads the lab's cells clearly better (a lab the model was not trained on), nor where the model in use
    # flagged most of them already
    assert _adaptation(None, None, {}, before=(0.7, 0.15), after=(0.9, 1.0)).warnings() == []
    assert _adaptation(None, None, {}, before=(0.975, 0.9), after=(0.975, 1.0)).warnings() == []
    # a refresh of a site model that flags every cell: its ancestor's rule would flag 15 %, but the model in use flags
    # them all, so keeping it gains nothing
    refresh = _adaptation(None, None, {}, before=(0.975, 0.15), after=(0.975, 1.0), in_use=1.0)
    assert refresh.warnings() == []
    assert any("the model in use flags 100% of them by its own threshold" in line for line in refresh.summary_lines())
