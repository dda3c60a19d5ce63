from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.cases.practice import PracticeSession, load_practice_set

LABELS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def _set(tmp_path: Path) -> Path:
    for cls, n in (("EOSINOPHIL", 2), ("Lymphocyte", 1), ("basophil", 3)):  # basophil: not a model class
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "EOSINOPHIL" / "notes.txt").write_text("ignored")
    return tmp_path


def test_practice_set_matches_folders_case_insensitively(tmp_path):
    items = load_practice_set(_set(tmp_path), LABELS, seed=1)
    assert sorted(lab for _, lab in items) == ["eosinophil", "eosinophil", "lymphocyte"]
    assert items == load_practice_set(tmp_path, LABELS, seed=1)  # the same seed, the same order
    with pytest.raises(ValueError, match="no class folders"):
        load_practice_set(tmp_path / "basophil", LABELS)


def test_scoring_confusion_and_csv(tmp_path):
    items = [(Path("a.png"), "eosinophil"), (Path("b.png"), "eosinophil"), (Path("c.png"), "lymphocyte")]
    s = PracticeSession(LABELS, items)
    s.answer("eosinophil", "eosinophil", 0.9)
    s.answer("neutrophil", "eosinophil", 0.8)
    s.answer("lymphocyte")
    assert s.finished and s.score() == (2, 3)
    assert s.per_class()["eosinophil"] == (1, 2)
    assert s.confusion()[0] == [1, 0, 0, 1]
    s.to_csv(tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text(encoding="utf-8-sig")
    assert "b.png,eosinophil,neutrophil,no,eosinophil,0.8000" in text
