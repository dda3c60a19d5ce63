"""A lab's site models over time (issue 27 item 2): the history read from the files, when a refresh is due."""

from __future__ import annotations

import dataclasses

import numpy as np

from hv_desktop.core.site.site_history import SiteModelEntry, entry_for, refresh_due, site_models, usable_counts
from tests.support.onnx_factory import LABELS, tiny_model


def _site(path, date, per_class, verified=True, site="Ward 3"):
    meta = {
        "site_adaptation": {
            "site": site,
            "date": date,
            "base_model": {"name": "HematoVision", "version": "1.2.3"},
            "cells_per_class": per_class,
            "unflag_check": {"verified": verified},
            "estimate_after_cross_validated": {"accuracy": 0.9},
        }
    }
    return tiny_model(path, metadata=meta)


def _entry(per_class):
    return SiteModelEntry(path=None, site="", kind="", made="", version="", base="", cells_per_class=per_class)  # type: ignore[arg-type]


def test_the_history_lists_site_models_newest_first_and_names_what_is_not_one(tmp_path):
    folder = tmp_path / "site-models"
    folder.mkdir()
    _site(folder / "a.onnx", "2026-12-01T09:00:00+00:00", {"x": 10, "y": 12})
    _site(folder / "b.onnx", "2026-12-02T09:00:00+00:00", {"x": 25, "y": 30}, verified=False)
    tiny_model(folder / "base.onnx")  # a model, but not a site model
    (folder / "junk.onnx").write_bytes(b"not onnx")
    entries, problems = site_models(folder)
    assert [e.path.name for e in entries] == ["b.onnx", "a.onnx"]
    assert entries[0].fewest_per_class == 25 and entries[0].unflag_verified is False
    assert entries[1].estimated_accuracy == 0.9 and entries[1].base == "HematoVision 1.2.3"
    assert "flags every cell" in entries[0].describe() and "at least 10 of each type" in entries[1].describe()
    assert sorted(p.name for p, _ in problems) == ["base.onnx", "junk.onnx"]
    assert all(why for _, why in problems)


def test_a_missing_folder_is_an_empty_history(tmp_path):
    assert site_models(tmp_path / "nope") == ([], [])


def test_a_refresh_is_due_at_each_step_beyond_what_the_model_in_use_was_made_from():
    labels = list(LABELS)
    few = dict.fromkeys(labels, 9)
    assert refresh_due(few, labels, None) is None  # not even 10 of each
    ten = dict.fromkeys(labels, 10)
    assert refresh_due(ten, labels, None) == 10  # the base model: the first site model is due
    assert refresh_due(ten, labels, _entry(dict.fromkeys(labels, 10))) is None  # made from these already
    lopsided = {**dict.fromkeys(labels, 60), labels[0]: 24}
    assert refresh_due(lopsided, labels, _entry(dict.fromkeys(labels, 10))) is None  # one class still short of 25
    assert refresh_due({k.upper(): 30 for k in labels}, labels, _entry(dict.fromkeys(labels, 10))) == 25
    assert refresh_due(dict.fromkeys(labels, 80), labels, _entry(dict.fromkeys(labels, 25))) == 50
    assert refresh_due(dict.fromkeys(labels, 80), labels, _entry(dict.fromkeys(labels, 50))) is None
    assert refresh_due(dict.fromkeys(labels, 120), labels, _entry(dict.fromkeys(labels, 50))) == 100  # adapt's most
    assert refresh_due(dict.fromkeys(labels, 900), labels, _entry(dict.fromkeys(labels, 100))) is None


def test_an_entry_reads_a_calibrated_model_as_made_from_no_reviews(tmp_path):
    path = tiny_model(
        tmp_path / "cal.onnx", metadata={"site_adaptation": {"site": "Lab", "kind": "magnification from unlabelled images"}}
    )
    entry = entry_for(path)
    assert entry.fewest_per_class == 0 and entry.unflag_verified is None and "unlabelled images" in entry.describe()


def test_a_step_the_cell_limit_keeps_adapt_from_reaching_is_not_offered_again_and_again():
    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    # 120 of each class and 60 smudge cells: adapt reads 400 at most, 85 of each class and all 60 smudges
    counts = {**dict.fromkeys(labels, 120), "smudge cell": 60}
    assert usable_counts(counts, 400) == {**dict.fromkeys(labels, 85), "smudge cell": 60}
    assert refresh_due(counts, labels, _entry(dict.fromkeys(labels, 50))) is None  # 100 each cannot be used yet
    assert refresh_due(counts, labels, _entry(dict.fromkeys(labels, 25))) == 50
    assert usable_counts({"a": 3, "b": 500}, 400) == {"a": 3, "b": 397}
    assert usable_counts({"a": 10}, 400) == {"a": 10}


def test_the_cells_adapt_can_use_are_limit_by_classs_own_choice():
    from hv_desktop.core.site.lab_images import limit_by_class

    rng = np.random.default_rng(5)
    for _ in range(300):
        counts = {f"label {i}": int(rng.integers(0, 250)) for i in range(int(rng.integers(1, 9)))}
        names = sorted(counts)
        y = np.repeat(np.arange(len(names)), [counts[k] for k in names])
        taken = np.bincount(y[limit_by_class(y, 400)], minlength=len(names)) if len(y) else np.zeros(len(names), int)
        assert usable_counts(counts, 400) == {k: int(taken[i]) for i, k in enumerate(names)}
    # the reviewer's example: four classes of 60, 60 smudge cells and four small types: 50 of each class, not 49
    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    counts = {**dict.fromkeys(labels, 60), "smudge": 60, "a": 40, "b": 40, "c": 40, "d": 31}
    assert {k: usable_counts(counts, 400)[k] for k in labels} == dict.fromkeys(labels, 50)


def test_a_step_is_not_offered_again_when_a_few_given_cells_were_duplicates():
    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    made = _entry({**dict.fromkeys(labels, 100), "monocyte": 97})  # 3 monocyte pictures were duplicates
    assert refresh_due(dict.fromkeys(labels, 100), labels, made) == 100  # an older file, which does not say
    given = dataclasses.replace(made, given_per_class=dict.fromkeys(labels, 100))
    assert given.made_at == 100 and refresh_due(dict.fromkeys(labels, 100), labels, given) is None
