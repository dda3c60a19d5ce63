"""Every white cell of a camera field classified (issue 28, step 2: core.inference.fields), on fields drawn here: one row per
cell with its box, one "no white cell" row for a field without, cells at the border marked and left out of the
differential by default, and the cells' fields kept in the JSON form. The command line: test_cli_cells.py; real
fields: tests/realdata/test_fields_realdata.py."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.cases.differential import Tally, differential
from hv_desktop.core.imaging.detect import find_cells
from hv_desktop.core.imaging.preprocess import Preprocessing
from hv_desktop.core.inference.fields import cell_square, classify_fields, cut_cells, field_results
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import NO_CELL, Result, decode, encode, result_fields
from hv_desktop.core.io.export import StreamingCsv, summary_csv, summary_text
from tests.unit.test_detect import BACKGROUND, D, field


@pytest.fixture(scope="module")
def model(tiny_model_path) -> Model:
    return Model(tiny_model_path, threads=1)


def save(im: Image.Image, path):
    im.save(path)
    return path


def inside(box, x: float, y: float) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def test_a_field_with_two_white_cells_gives_two_rows_with_their_boxes(tmp_path, model):
    path = save(field(nuclei=[(180, 200), (450, 300)]), tmp_path / "two.png")
    (rows,) = list(field_results([path], model))
    assert [r.cell_index for r in rows] == [1, 2]  # top to bottom
    assert inside(rows[0].cell_box, 180, 200) and inside(rows[1].cell_box, 450, 300)
    for r in rows:
        assert r.ok and r.label in model.labels and not r.no_cell and not r.cell_at_edge
        assert r.path == path and r.sha256 and r.model_name == "tiny-test"
        x0, y0, x1, y1 = r.cell_box
        assert 1.2 * D <= x1 - x0 <= 2.5 * D  # the cell's box, not the field's
    assert rows[0].cell_id != rows[1].cell_id  # two cells, two identities


def test_a_field_with_no_white_cell_gives_one_row_that_says_so(tmp_path, model):
    path = save(field(), tmp_path / "none.png")
    (rows,) = list(field_results([path], model))
    (r,) = rows
    assert r.no_cell and r.ok and r.error is None  # not an error ...
    assert r.label is None and r.confidence is None and r.cell_index is None  # ... and no class
    buf = tmp_path / "out.csv"
    with StreamingCsv(buf, model.labels, "m", "1", cells=True) as out:
        out.write(r)
    with open(buf, encoding="utf-8-sig", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["cell_note"] == NO_CELL and row["predicted_label"] == "" and row["error"] == ""
    diff = differential(rows, model.labels)
    assert (diff.classified, diff.failed, diff.no_cell, diff.files) == (0, 0, 1, 1)


def test_a_cell_cut_by_the_border_is_marked_and_left_out_of_the_differential_unless_counted(tmp_path, model):
    path = save(field(nuclei=[(300, 240), (630, 100)]), tmp_path / "edge.png")
    (rows,) = list(field_results([path], model))
    edge = [r for r in rows if inside(r.cell_box, 625, 100)]
    inner = [r for r in rows if inside(r.cell_box, 300, 240)]
    assert len(rows) == 2 and len(edge) == 1 and len(inner) == 1
    assert edge[0].cell_at_edge and edge[0].cell_box[2] == 640 and edge[0].ok and edge[0].label
    assert not inner[0].cell_at_edge
    skipped = differential(rows, model.labels)  # the default: as in a manual count
    assert (skipped.classified, skipped.edge_cells, skipped.edge_counted, skipped.fields) == (1, 1, False, 1)
    assert sum(skipped.counts.values()) == 1
    assert "edge_cells_left_out,1" in summary_csv(skipped) and "1 at the edge left out" in summary_text(skipped)
    tally = Tally(model.labels, count_edge=True)
    for r in rows:
        tally.add(r)
    counted = tally.result()
    assert (counted.classified, counted.edge_cells, counted.edge_counted) == (2, 1, True)
    assert "edge_cells_counted,1" in summary_csv(counted)


def test_cells_say_how_many_fields_they_came_from(tmp_path, model):
    paths = [
        save(field(nuclei=[(180, 200), (450, 300)]), tmp_path / "a.png"),
        save(field(nuclei=[(320, 240)], seed=1), tmp_path / "b.png"),
        save(field(seed=2), tmp_path / "c.png"),
    ]
    (tmp_path / "d.png").write_bytes(b"not an image")
    diff = differential(classify_fields([*paths, tmp_path / "d.png"], model), model.labels)
    assert (diff.classified, diff.fields, diff.no_cell, diff.failed, diff.files) == (3, 2, 1, 1, 4)
    assert "3 cells counted from 2 fields" in summary_text(diff)
    assert "total_files,4" in summary_csv(diff) and "fields_with_counted_cells,2" in summary_csv(diff)


def test_single_cell_results_keep_the_summary_they_had(model):
    rows = [Result(Path("a.png"), "monocyte", 0.9, {"monocyte": 0.9}), Result(Path("b.png"), error="broken")]
    text = summary_csv(differential(rows, model.labels))
    assert text.splitlines()[-2:] == ["failed,1,", "total_files,2,"]  # no cell rows, as before fields existed
    assert "cells counted" not in summary_text(differential(rows, model.labels))


def test_a_square_that_leaves_the_field_is_filled_with_its_background_not_black():
    im = field(nuclei=[(630, 100)])
    prep = Preprocessing(width=64, height=64)
    (cell,) = find_cells(im)
    left, top, right, bottom = cell_square(cell.box, 2.2)
    assert right > 640  # the square leaves the field ...
    x, _ = cut_cells(im, [cell], prep, 2.2)
    outside = x[0][:, -2:, :].reshape(-1, 3).astype(int)  # the columns beyond the field's right border
    assert np.abs(outside - BACKGROUND).max() < 12  # ... and is the field's own background there


def test_cell_square_is_the_multiple_of_the_longer_side_centred_on_the_box():
    assert cell_square((100, 100, 140, 120), 2.0) == (80, 70, 160, 150)
    assert cell_square((0, 0, 10, 10), 3.0) == (-10, -10, 20, 20)


def test_boxes_are_in_the_stored_images_pixels_when_a_large_field_is_decoded_reduced(tmp_path, model):
    # 4800 x 3600 = 17 MP: decoded at half size (preprocess.LARGE_PIXELS), the finder works on that copy
    big = field(nuclei=[(180, 200)]).resize((4800, 3600), Image.Resampling.BILINEAR)
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    (rows,) = list(field_results([path], model))
    (r,) = rows
    assert inside(r.cell_box, 180 * 7.5, 200 * 7.5), r.cell_box  # the stored image's pixels, not the reduced copy's
    assert r.cell_box[2] - r.cell_box[0] > 1.2 * D * 7.5


def test_a_bad_file_among_fields_is_one_error_row_and_the_run_goes_on(tmp_path, model):
    (tmp_path / "bad.jpg").write_bytes(b"<html>no image</html>")
    good = save(field(nuclei=[(320, 240)]), tmp_path / "good.png")
    rows = list(field_results([tmp_path / "bad.jpg", good, tmp_path / "gone.png"], model))
    assert [len(r) for r in rows] == [1, 1, 1]
    assert "not an image" in rows[0][0].error and rows[0][0].cell_index is None
    assert rows[1][0].ok and rows[1][0].cell_index == 1
    assert "not found" in rows[2][0].error


def test_a_field_of_more_stained_objects_than_any_smear_is_one_error_row_not_gigabytes(tmp_path, model):
    grid = np.full((480, 640, 3), BACKGROUND, np.uint8)
    for y in range(0, 480, 16):
        for x in range(0, 640, 16):
            grid[y : y + 8, x : x + 8] = (104, 58, 168)  # 1,200 purple dots: 1,200 "cells" to the finder
    path = save(Image.fromarray(grid), tmp_path / "grid.png")
    good = save(field(nuclei=[(320, 240)]), tmp_path / "good.png")
    rows = list(field_results([path, good], model))
    assert [len(r) for r in rows] == [1, 1]
    assert "1200 stained objects found, more than 256" in rows[0][0].error
    assert rows[1][0].ok and rows[1][0].cell_index == 1


def test_a_model_failure_costs_the_chunks_cell_rows_not_the_run(tmp_path, model, monkeypatch):
    paths = [save(field(nuclei=[(320, 240)]), tmp_path / "cell.png"), save(field(), tmp_path / "none.png")]

    def broken(tensor):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "assess", broken)
    rows = [r for group in field_results(paths, model) for r in group]
    assert len(rows) == 2
    assert "model failed" in rows[0].error and "out of memory" in rows[0].error
    assert rows[1].no_cell and rows[1].ok


def test_progress_counts_fields_and_cancel_stops_before_the_next(tmp_path, model):
    paths = [save(field(nuclei=[(320, 240)], seed=i), tmp_path / f"{i}.png") for i in range(5)]
    seen: list[int] = []
    cancel = threading.Event()
    got = []
    for rows in field_results(paths, model, batch_size=2, progress=seen.append, cancel=cancel):
        got.append(rows)
        if len(got) == 2:
            cancel.set()
    assert len(got) == 2 and seen == [1, 2]


def test_thumbnails_are_each_cells_square(tmp_path, model):
    path = save(field(nuclei=[(180, 200), (450, 300)]), tmp_path / "two.png")
    (rows,) = list(field_results([path], model, thumbnail=24))
    for r in rows:
        assert r.thumbnail is not None and r.thumbnail.shape == (24, 24, 3)


# ------------------------------------------------------------------------------------------- the JSON form


def test_a_cells_fields_survive_the_json_form(tmp_path):
    cell = Result(
        tmp_path / "f.png", "monocyte", 0.8, {"monocyte": 0.8}, cell_index=2, cell_box=(10, 20, 130, 150), cell_at_edge=True
    )
    back = decode(json.loads(json.dumps(encode(cell))))
    assert (back.cell_index, back.cell_box, back.cell_at_edge, back.no_cell) == (2, (10, 20, 130, 150), True, False)
    assert back.cell_id == cell.cell_id
    none = decode(json.loads(json.dumps(encode(Result(tmp_path / "g.png", no_cell=True)))))
    assert none.no_cell and none.cell_index is None and none.ok


def test_a_single_cell_result_keeps_the_json_it_had(tmp_path):
    d = encode(Result(tmp_path / "f.png", "monocyte", 0.8, {"monocyte": 0.8}))
    assert not {"cell_index", "cell_box", "cell_at_edge", "no_cell"} & set(d)  # sessions written before fields read the same
    assert list(result_fields(Result(tmp_path / "f.png"))) == [
        "label",
        "confidence",
        "probabilities",
        "needs_review",
        "typicality",
        "error",
        "sha256",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"cell_index": "2"},
        {"cell_index": True},
        {"cell_index": -1},
        {"cell_box": [1, 2, 3]},
        {"cell_box": [1, 2, 3, "4"]},
        {"cell_box": [10, 0, 5, 5]},
        {"cell_box": "0,0,5,5"},
        {"cell_at_edge": "yes"},
        {"no_cell": 1},
    ],
)
def test_cell_fields_of_the_wrong_type_are_refused(tmp_path, bad):
    d = encode(Result(tmp_path / "f.png", "monocyte", 0.8, {"monocyte": 0.8}, cell_index=1, cell_box=(0, 0, 5, 5)))
    d.update(bad)
    with pytest.raises(TypeError):
        decode(d)


def test_csv_cell_columns_hold_the_box_in_pixels(tmp_path, model):
    path = save(field(nuclei=[(180, 200), (450, 300)]), tmp_path / "two.png")
    out = tmp_path / "cells.csv"
    with StreamingCsv(out, model.labels, "m", "1", cells=True) as w:
        for r in classify_fields([path], model):
            w.write(r)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [r["cell_index"] for r in rows] == ["1", "2"]
    x0, y0, x1, y1 = (int(rows[1][k]) for k in ("cell_x0", "cell_y0", "cell_x1", "cell_y1"))
    assert x0 <= 450 < x1 and y0 <= 300 < y1
    assert [r["cell_at_edge"] for r in rows] == ["no", "no"] and rows[0]["cell_note"] == ""


# ------------------------------------------------------------------------------------------- watching fields


def _poll(watcher, want: int, tries: int = 60) -> list[Result]:
    import time

    added: list[Result] = []
    for _ in range(tries):
        added += watcher.poll_once()
        if len(added) >= want:
            return added
        time.sleep(0.05)
    return added


def test_a_watched_field_gets_a_row_per_cell_once_even_after_a_restart(tmp_path, model):
    from hv_desktop.core.io.watch import FolderWatcher

    camera, out = tmp_path / "camera", tmp_path / "live.csv"
    camera.mkdir()
    field(nuclei=[(180, 200), (450, 300)]).save(camera / "two.png")
    added = _poll(FolderWatcher(camera, model, out, settle=0.05, cells=True), 2)
    assert [r.cell_index for r in added] == [1, 2]  # the second cell of a field is not taken for the file again
    again = FolderWatcher(camera, model, out, settle=0.05, cells=True)
    assert _poll(again, 1, tries=10) == []  # continued: no cell is added twice
    (camera / "copy.png").write_bytes((camera / "two.png").read_bytes())
    dup = _poll(again, 2)
    assert len(dup) == 2 and all("duplicate of two.png" in r.error for r in dup)
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file_name"], r["cell_index"]) for r in rows] == [
        ("two.png", "1"),
        ("two.png", "2"),
        ("copy.png", "1"),
        ("copy.png", "2"),
    ]
