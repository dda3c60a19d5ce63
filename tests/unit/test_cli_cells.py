"""``hematovision classify/watch --cells all`` (issue 28, step 2): one CSV row per found white cell with its box, one
row for a field with none, the differential counting cells (those at the edge left out unless --edge-cells count)
and the fields they came from; ``--cells one`` (the default) writes the CSV it always wrote."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

from hv_desktop.core.inference.result import NO_CELL
from tests.support import ROOT
from tests.support.cli import run_module, serve
from tests.unit.test_detect import field

#: The CSV's columns before camera fields existed (issue 28): ``--cells one`` must keep them, and only them.
TODAYS_COLUMNS = (
    "path,file_name,predicted_label,confidence,p_eosinophil,p_lymphocyte,p_monocyte,p_neutrophil,needs_review,"
    "typicality,reviewer_label,error,model_name,model_version,sha256,timestamp"
)
CELL_COLUMNS = ["cell_index", "cell_x0", "cell_y0", "cell_x1", "cell_y1", "cell_at_edge", "cell_note"]


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> Path:
    """Three camera fields: two white cells, none, and one inside with one cut by the right border."""
    folder = tmp_path_factory.mktemp("fields")
    field(nuclei=[(180, 200), (450, 300)]).save(folder / "a_two.png")
    field(seed=1).save(folder / "b_none.png")
    field(nuclei=[(300, 240), (630, 100)], seed=2).save(folder / "c_edge.png")
    return folder


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def classify(model: Path, *args):
    return run_module("hv_desktop", "classify", *args, "--model", model, timeout=300)


def test_cells_all_gives_a_row_per_cell_with_its_box_and_one_row_for_a_field_without(tmp_path, fields, tiny_model_path):
    out, summary = tmp_path / "cells.csv", tmp_path / "summary.csv"
    r = classify(tiny_model_path, fields, "--csv", out, "--cells", "all", "--summary", summary)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = rows_of(out)
    assert list(rows[0])[-len(CELL_COLUMNS) :] == CELL_COLUMNS
    by_file: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_file.setdefault(row["file_name"], []).append(row)
    two, none, edge = by_file["a_two.png"], by_file["b_none.png"], by_file["c_edge.png"]
    assert [row["cell_index"] for row in two] == ["1", "2"]
    for row, (x, y) in zip(two, [(180, 200), (450, 300)], strict=True):
        assert int(row["cell_x0"]) <= x < int(row["cell_x1"]) and int(row["cell_y0"]) <= y < int(row["cell_y1"])
        assert row["predicted_label"] and row["cell_at_edge"] == "no" and row["error"] == ""
    (row,) = none
    assert row["cell_note"] == NO_CELL and row["predicted_label"] == "" and row["error"] == "" and row["cell_index"] == ""
    assert sorted(row["cell_at_edge"] for row in edge) == ["no", "yes"]
    assert [row["cell_x1"] for row in edge if row["cell_at_edge"] == "yes"] == ["640"]
    # The differential counts cells, leaves the one at the edge out and says how many fields they came from.
    tally = dict((row[0], row[1]) for row in csv.reader(summary.read_text(encoding="utf-8").splitlines()))
    assert tally["classified"] == "3" and tally["edge_cells_left_out"] == "1"
    assert tally["fields_with_counted_cells"] == "2" and tally["fields_without_white_cell"] == "1"
    assert tally["total_files"] == "3"
    assert "3 cells counted from 2 fields (1 at the edge left out; 1 with no white cell; 3 files)" in r.stderr


def test_edge_cells_count_puts_the_cell_at_the_edge_in_the_differential(tmp_path, fields, tiny_model_path):
    summary = tmp_path / "summary.csv"
    r = classify(
        tiny_model_path, fields, "--csv", tmp_path / "o.csv", "--cells", "all", "--edge-cells", "count", "--summary", summary
    )
    assert r.returncode == 0, r.stderr
    tally = dict((row[0], row[1]) for row in csv.reader(summary.read_text(encoding="utf-8").splitlines()))
    assert tally["classified"] == "4" and tally["edge_cells_counted"] == "1"


def test_cells_one_writes_todays_csv(tmp_path, fields, tiny_model_path):
    default, one = tmp_path / "default.csv", tmp_path / "one.csv"
    assert classify(tiny_model_path, fields, "--csv", default, "-q").returncode == 0
    assert classify(tiny_model_path, fields, "--csv", one, "--cells", "one", "-q").returncode == 0
    header = one.read_text(encoding="utf-8-sig").splitlines()[0]
    assert header == TODAYS_COLUMNS
    rows = rows_of(one)
    assert len(rows) == 3 and all(row["predicted_label"] for row in rows)  # one row per file, each a class

    def without_time(path: Path) -> list[list[str]]:
        return [row[:-1] for row in csv.reader(path.read_text(encoding="utf-8-sig").splitlines())]

    assert without_time(default) == without_time(one)
    assert default.read_bytes()[:3] == one.read_bytes()[:3] == b"\xef\xbb\xbf"


def test_watch_cells_all_adds_a_row_per_cell(tmp_path, fields, tiny_model_path):
    camera, out = tmp_path / "camera", tmp_path / "live.csv"
    camera.mkdir()
    for name in ("a_two.png", "b_none.png"):
        (camera / name).write_bytes((fields / name).read_bytes())

    def done() -> bool:
        try:
            return len(rows_of(out)) >= 3
        except (OSError, csv.Error):
            return False

    cmd = [sys.executable, "-m", "hv_desktop", "watch", str(camera), "--csv", str(out), "--model", str(tiny_model_path)]
    code, stdout, stderr = serve(
        [*cmd, "--cells", "all", "--interval", "0.05"], dict(os.environ, PYTHONPATH=str(ROOT)), "watching", done
    )
    assert code == 0 and b"Traceback" not in stderr, stderr
    rows = rows_of(out)
    assert [(row["file_name"], row["cell_index"], row["cell_note"]) for row in rows] == [
        ("a_two.png", "1", ""),
        ("a_two.png", "2", ""),
        ("b_none.png", "", NO_CELL),
    ]
    printed = stdout.decode()
    assert "a_two.png cell 2\t" in printed and f"b_none.png\t{NO_CELL}" in printed


def test_a_watch_csv_of_one_mode_is_not_continued_in_the_other(tmp_path, fields, tiny_model_path):
    out = tmp_path / "live.csv"
    out.write_text("\ufeff" + TODAYS_COLUMNS + "\r\n", encoding="utf-8")
    camera = tmp_path / "camera"
    camera.mkdir()
    cmd = [sys.executable, "-m", "hv_desktop", "watch", str(camera), "--csv", str(out), "--model", str(tiny_model_path)]
    code, _, stderr = serve([*cmd, "--cells", "all"], dict(os.environ, PYTHONPATH=str(ROOT)), "watching")
    assert code == 4 and b"other columns" in stderr and b"Traceback" not in stderr, stderr
