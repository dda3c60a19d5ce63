"""Heatmaps of a camera field's cells (issue 28, item 3): drawn on the cell's own square (``fields.cell_square`` of
its box, the pixels the model classified), never on a nucleus search of the whole field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.inference.fields import cell_square, classify_fields
from hv_desktop.core.inference.heatmap import cell_view, heatmap_png
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from tests.unit.test_detect import NUCLEUS, field

CENTRES = [(180, 200), (450, 300)]


@pytest.fixture(scope="module")
def two_cells(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> tuple[Path, Model, list[Result]]:
    path = tmp_path_factory.mktemp("field") / "two.png"
    field(nuclei=CENTRES).save(path)
    model = Model(tiny_model_path)
    rows = list(classify_fields([path], model))
    assert [r.cell_index for r in rows] == [1, 2]
    return path, model, rows


def side_of(r: Result) -> int:
    assert r.cell_box is not None
    x0, _, x1, _ = cell_square(r.cell_box)
    return x1 - x0


def test_heatmap_png_of_a_cell_is_its_square_with_the_legend(tmp_path: Path, two_cells: tuple[Path, Model, list[Result]]) -> None:
    path, model, rows = two_cells
    for r in rows:
        out = tmp_path / f"cell{r.cell_index}.png"
        heatmap_png(model, path, out, result=r)
        with Image.open(out) as im:
            assert im.size == (side_of(r), side_of(r) + 22)  # the cell's square, not the 640 x 480 field


def test_a_cells_view_is_centred_on_its_own_cell(two_cells: tuple[Path, Model, list[Result]]) -> None:
    path, model, rows = two_cells
    field_pixels = np.asarray(Image.open(path).convert("RGB"))
    for r, (cx, cy) in zip(rows, CENTRES, strict=True):
        assert r.cell_box is not None
        _, view = cell_view(model, path, r.cell_box, heat=False)
        arr = np.asarray(view)
        side = side_of(r)
        assert arr.shape == (side, side, 3)
        assert tuple(arr[side // 2, side // 2]) == NUCLEUS  # the nucleus of this cell, in the middle
        x0, y0, _, _ = cell_square(r.cell_box)
        assert tuple(arr[3 * side // 10, 1]) == tuple(field_pixels[y0 + 3 * side // 10, x0 + 1])  # the field's pixels
        assert abs(x0 + side / 2 - cx) <= 3 and abs(y0 + side / 2 - cy) <= 3


def test_a_cells_heat_is_the_evidence_for_the_square_that_row_classified(two_cells: tuple[Path, Model, list[Result]]) -> None:
    path, model, rows = two_cells
    for r in rows:
        assert r.cell_box is not None and r.label is not None
        probs, _ = cell_view(model, path, r.cell_box, heat=True, class_index=model.labels.index(r.label))
        assert probs is not None
        np.testing.assert_allclose(probs, [r.probabilities[k] for k in model.labels], atol=1e-5)


def test_cell_view_without_a_model_still_shows_the_square(two_cells: tuple[Path, Model, list[Result]]) -> None:
    path, _, rows = two_cells
    assert rows[0].cell_box is not None
    probs, view = cell_view(None, path, rows[0].cell_box, heat=True)
    assert probs is None and view.size == (side_of(rows[0]),) * 2
