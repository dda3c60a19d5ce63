"""The report of camera fields (issue 28, item 3), Qt-free: each cell its own square named "field · cell 2 of 3", a
field with no white cell neither in the gallery nor counted, edge cells marked and left out of the count, and the
differential saying how many cells from how many fields (the window's line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hv_desktop.core.cases.differential import differential
from hv_desktop.core.cases.differential_view import source_line
from hv_desktop.core.inference.fields import cell_square, classify_fields
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.report import THUMB_PX, Report, build_report, gallery_blocks
from tests.unit.test_detect import field


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> tuple[Model, list[Result]]:
    folder = tmp_path_factory.mktemp("fields")
    field(nuclei=[(180, 200), (450, 300)]).save(folder / "a_two.png")
    field(seed=1).save(folder / "b_none.png")
    field(nuclei=[(300, 240), (630, 100)], seed=2).save(folder / "c_edge.png")
    model = Model(tiny_model_path)
    rows = list(classify_fields(sorted(folder.iterdir()), model))
    assert [(r.path.name, r.cell_index, r.no_cell) for r in rows] == [
        ("a_two.png", 1, False),
        ("a_two.png", 2, False),
        ("b_none.png", None, True),
        ("c_edge.png", 1, False),
        ("c_edge.png", 2, False),
    ]
    assert [r.path.name for r in rows if r.cell_at_edge] == ["c_edge.png"]
    return model, rows


def report_of(model: Model, rows: list[Result], count_edge: bool = False) -> Report:
    return build_report(rows, model.labels, model.info.name, model.info.version, model=model, count_edge=count_edge)


def gallery_html(report: Report) -> str:
    return "".join(b.html for b in report.blocks[1:])


def test_each_cell_is_named_which_of_its_field_and_edge_cells_are_marked(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    text = gallery_html(report_of(model, rows))
    assert "a_two.png ·<br>cell 1 of 2" in text and "a_two.png ·<br>cell 2 of 2" in text
    edge = next(r for r in rows if r.cell_at_edge)
    assert f"c_edge.png ·<br>cell {edge.cell_index} of 2 · <b>at edge</b>" in text
    assert text.count("at edge") == 1


def test_a_field_without_a_white_cell_is_not_a_cell_of_the_gallery_or_the_count(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    none = next(r for r in rows if r.no_cell)
    none.reviewer_label = model.labels[0]  # even a row someone labelled by mistake is no cell
    try:
        report = report_of(model, rows)
    finally:
        none.reviewer_label = None
    assert "b_none.png" not in gallery_html(report)
    shown = sum(len(b.images) for b in report.blocks[1:])
    assert shown == 4  # the four cells, edge one included (marked), never the field without one


def test_the_differential_says_how_many_cells_from_how_many_fields(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    summary = report_of(model, rows).blocks[0].html
    line = source_line(differential(rows, model.labels))
    assert line.startswith("3 cells from 2 fields") and "1 edge cell left out" in line and "1 field with no white" in line
    assert line in summary
    assert "Cells classified: <b>3</b>" in summary  # the edge cell and the field without a cell are not counted
    counted = report_of(model, rows, count_edge=True).blocks[0].html
    assert "Cells classified: <b>4</b>" in counted and "4 cells from 2 fields · 1 edge cell counted" in counted


def test_edge_cells_are_said_to_be_left_out_in_their_class_heading(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    edge = next(r for r in rows if r.cell_at_edge)
    headings = [b.html for b in gallery_blocks(rows, model.labels, model, False) if b.keep_with_next]
    heading = next(h for h in headings if (edge.label or "").capitalize() in h)
    assert "1 at the edge of a field, not counted" in heading
    assert all(
        "edge" not in b.html for b in gallery_blocks(rows, model.labels, model, False, count_edge=True) if b.keep_with_next
    )


def test_a_cells_picture_is_its_square_not_the_field(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    cells = [r for r in rows if r.cell_box is not None]
    blocks = [b for b in gallery_blocks(cells, model.labels, None, False) if b.images]
    pictures = [img for b in blocks for img in b.images.values()]
    assert len(pictures) == len(cells)
    for img in pictures:
        h, w = img.shape[:2]
        assert h == w <= 2 * THUMB_PX  # a square, as the model saw it; the field is 640 x 480
    # The first cell's picture is centred on its own nucleus (purple), not on the field's strongest one.
    first = next(r for r in cells if r.path.name == "a_two.png" and r.cell_index == 2)
    (block,) = [b for b in gallery_blocks([first], model.labels, None, False) if b.images]
    (img,) = block.images.values()
    assert first.cell_box is not None
    side = cell_square(first.cell_box)[2] - cell_square(first.cell_box)[0]
    assert img.shape[0] == min(side, 2 * THUMB_PX)
    centre = img[img.shape[0] // 2, img.shape[1] // 2].astype(int)
    assert centre[2] > centre[1] + 60  # the nucleus' purple


def test_a_cell_with_heatmaps_gets_the_heat_of_its_own_square(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    first = rows[0]
    plain = [b for b in gallery_blocks([first], model.labels, model, False) if b.images][0]
    heat = [b for b in gallery_blocks([first], model.labels, model, True) if b.images][0]
    a, b = next(iter(plain.images.values())), next(iter(heat.images.values()))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_a_flagged_edge_cell_keeps_the_report_preliminary_as_it_keeps_sign_off(fields: tuple[Model, list[Result]]) -> None:
    model, rows = fields
    before = [r.needs_review for r in rows]
    try:
        for r in rows:
            r.needs_review = r.cell_at_edge  # only the cell the border cuts is flagged
        summary = report_of(model, rows).blocks[0].html
    finally:
        for r, flag in zip(rows, before, strict=True):
            r.needs_review = flag
    assert "PRELIMINARY: 1 cell flagged for review has not been reviewed" in summary
