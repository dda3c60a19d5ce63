"""Training configs: the base and every override in training/configs resolve to a whole config."""

from __future__ import annotations

import json

import pytest

from tests.support import ROOT
from training.train import load_config

BASE = ROOT / "training" / "config.json"
OVERRIDES = sorted((ROOT / "training" / "configs").glob("*.json"))


def test_there_are_overrides():
    assert len(OVERRIDES) >= 10


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: p.name)
def test_every_override_resolves_to_a_whole_config(path):
    cfg = load_config(path)
    assert "extends" not in cfg and None not in cfg.values()
    base = load_config(BASE)
    required = {"alpha", "image_size", "batch_size", "epochs", "steps_per_epoch", "source_weights", "validation", "augment"}
    assert required <= cfg.keys()
    known = {
        "_comment",
        "bars",
        "ema_momentum",
        "instance_norm_until",
        "l2sp",
        "lab_batch_norm",
        "lab_batches",
        "record_only",
        "select",
        "train_from",
    }
    assert set(cfg) - set(base) <= known, "a key the base does not know: a typo?"
    assert sum(cfg["source_weights"].values()) == pytest.approx(1.0)


def test_an_override_replaces_whole_values_and_null_removes_a_key(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps({"a": 1, "augment": {"zoom": 0.25, "hue": 0.04}, "crop": {"kind": "cell"}}))
    (tmp_path / "child.json").write_text(json.dumps({"extends": "base.json", "augment": {"zoom": 0.5}, "crop": None}))
    (tmp_path / "grandchild.json").write_text(json.dumps({"extends": "child.json", "a": 2}))
    assert load_config(tmp_path / "grandchild.json") == {"a": 2, "augment": {"zoom": 0.5}}


def test_the_default_is_the_shipped_recipe():
    assert load_config() == json.loads(BASE.read_text())
    assert load_config()["crop"] == {"kind": "cell", "fraction": 0.75}


def test_a_split_of_a_lab_without_one_is_fixed_disjoint_and_whole(tmp_path):
    from training.data import list_labelled

    for cls in ("eosinophil", "neutrophil"):
        (tmp_path / "cells" / cls).mkdir(parents=True)
        for i in range(40):
            (tmp_path / "cells" / cls / f"{cls}_{i}.jpg").write_bytes(b"")
    whole = list_labelled(tmp_path / "cells")
    train, val = list_labelled(tmp_path / "cells@train"), list_labelled(tmp_path / "cells@val")
    assert sorted(train + val) == sorted(whole) and not set(train) & set(val)
    assert 5 <= len(val) <= 35  # about a quarter of 80
    (tmp_path / "cells" / "neutrophil" / "new.jpg").write_bytes(b"")  # a new file moves no old one
    assert set(val) <= set(list_labelled(tmp_path / "cells@val"))
    with pytest.raises(ValueError, match="unknown split"):
        list_labelled(tmp_path / "cells@test")
