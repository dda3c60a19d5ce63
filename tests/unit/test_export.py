from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hv_desktop.core.cases.differential import differential
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io import export as export_mod
from hv_desktop.core.io.export import StreamingCsv, csv_columns, summary_csv, write_csv
from hv_desktop.core.system.writing import atomic_write_text, safe_cell

LABELS = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def _results():
    probs = {"eosinophil": 0.1, "lymphocyte": 0.1, "monocyte": 0.1, "neutrophil": 0.7}
    return [
        Result(Path("/d/=cmd|' calc'!A0.png"), "neutrophil", 0.7, probs, False, sha256="ab", timestamp="t"),
        Result(
            Path("/d/b.png"),
            "neutrophil",
            0.45,
            probs,
            True,
            typicality=0.123456,
            sha256="cd",
            timestamp="t",
            reviewer_label="monocyte",
        ),
        Result(Path("/d/c.jpg"), error="empty file (0 bytes)", timestamp="t"),
    ]


def _read(path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_columns_and_rows(tmp_path):
    out = tmp_path / "r.csv"
    write_csv(out, _results(), LABELS, "m", "1")
    rows = _read(out)
    assert list(rows[0].keys()) == csv_columns(LABELS)
    assert rows[0]["file_name"].startswith("'=")  # formula neutralised
    assert rows[1]["reviewer_label"] == "monocyte" and rows[1]["needs_review"] == "yes"
    assert rows[1]["typicality"] == "0.1235" and rows[0]["typicality"] == "" and rows[2]["typicality"] == ""
    assert rows[2]["error"] == "empty file (0 bytes)" and rows[2]["predicted_label"] == ""
    assert rows[0]["p_neutrophil"] == "0.7000" and rows[0]["model_version"] == "1"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised(text):
    assert safe_cell(text) == "'" + text
    assert safe_cell("plain") == "plain"


def test_interrupted_export_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    write_csv(out, _results(), LABELS, "m", "1")
    before = out.read_bytes()

    def exploding():
        yield _results()[0]
        raise KeyboardInterrupt  # the user or the OS stops us mid-export

    with pytest.raises(KeyboardInterrupt):
        write_csv(out, exploding(), LABELS, "m", "2")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]  # no temp file left behind


def test_failed_rename_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    atomic_write_text(out, "old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(out, "new")
    with pytest.raises(OSError), StreamingCsv(out, LABELS, "m", "1") as w:
        w.write(_results()[0])
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_differential_by_model_and_by_review():
    res = _results()
    d = differential(res, LABELS)
    assert d.counts == {"eosinophil": 0, "lymphocyte": 0, "monocyte": 0, "neutrophil": 2}
    assert (d.classified, d.flagged, d.failed, d.total) == (2, 0, 1, 3)  # reviewed items are not "flagged"
    r = differential(res, LABELS, reviewed=True)
    assert r.counts["monocyte"] == 1 and r.counts["neutrophil"] == 1 and r.percent("monocyte") == 50.0
    text = summary_csv(d)
    assert "neutrophil,2,100.0" in text and "failed,1," in text
