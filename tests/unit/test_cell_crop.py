"""The "cell" crop: find the stained nucleus, cut a square around it, show where."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.imaging.preprocess import Preprocessing, cell_centre, model_box, normalise, resize_for_model
from hv_desktop.core.inference.heatmap import explain, overlay, view_for
from hv_desktop.core.inference.model import Model
from tests.support.images import smear
from tests.support.onnx_factory import tiny_model

CELL = Preprocessing(width=32, height=32, crop="cell", crop_fraction=0.5)


@pytest.mark.parametrize("where", [(230, 70), (60, 180), (160, 120), (300, 20)])
def test_nucleus_is_found_wherever_it_lies(where):
    cx, cy = cell_centre(smear(nucleus=where))
    assert abs(cx - where[0]) <= 8 and abs(cy - where[1]) <= 8


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (95, 95), (97, 40), (2000, 30), (1600, 1200)])
def test_the_search_copes_with_any_image_size(size):
    """Tiny, thin and camera-sized fields: a centre inside the image, the nucleus found when it fits."""
    w, h = size
    where = (w * 0.7, h * 0.4)
    radius = max(1, min(w, h) // 10)
    cx, cy = cell_centre(smear(size=size, nucleus=where, radius=radius))
    assert 0 <= cx <= w and 0 <= cy <= h
    if min(w, h) >= 40:
        assert abs(cx - where[0]) <= max(8, w / 40) and abs(cy - where[1]) <= max(8, h / 40)


def test_an_image_without_stain_is_cropped_at_its_centre():
    gray = Image.new("RGB", (300, 200), (128, 128, 128))
    assert cell_centre(gray) == (150, 100)
    assert model_box(gray, CELL) == (100, 50, 200, 150)


def test_the_square_stays_inside_the_image_for_a_cell_at_the_edge():
    im = smear(nucleus=(312, 8))
    left, top, right, bottom = model_box(im, CELL)
    assert right - left == bottom - top == 120
    assert (left, top, right, bottom) == (200, 0, 320, 120)


def test_without_a_crop_the_whole_image_is_used():
    im = smear()
    assert model_box(im, None) == model_box(im, Preprocessing()) == (0, 0, 320, 240)
    whole = resize_for_model(im, (32, 32))
    cropped = resize_for_model(im, (32, 32), CELL)
    assert whole.shape == cropped.shape == (32, 32, 3)
    box = model_box(im, CELL)
    assert box[2] - box[0] == 120 and abs((box[0] + box[2]) / 2 - 230) <= 8
    expected = np.asarray(im.crop(box).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(cropped, expected)


@pytest.mark.parametrize("size", [(1, 1), (3, 500), (500, 2)])
def test_degenerate_shapes_still_give_a_model_input(size):
    im = Image.new("RGB", size, (110, 60, 170))
    arr = resize_for_model(im, (32, 32), CELL)
    assert arr.shape == (32, 32, 3)


def test_heat_and_outline_cover_only_the_square_the_model_saw(tmp_path):
    model = Model(
        tiny_model(
            tmp_path / "m.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.5}}
        )
    )
    assert model.info.preprocessing.crop == "cell"
    im = smear()
    box = model_box(im, model.info.preprocessing)
    heat = np.ones((7, 7), np.float32)
    blended = np.asarray(overlay(im, heat, 0.5, box)).astype(int)
    base = np.asarray(im).astype(int)
    inside = blended[box[1] + 5 : box[3] - 5, box[0] + 5 : box[2] - 5]
    assert np.abs(inside - base[box[1] + 5 : box[3] - 5, box[0] + 5 : box[2] - 5]).max() > 40
    outside = np.ones(base.shape[:2], bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert np.array_equal(blended[outside], base[outside])
    shown = np.asarray(view_for(model, im)).astype(int)
    assert tuple(shown[box[1], (box[0] + box[2]) // 2]) == (0, 190, 110)  # outline on the top edge
    assert np.array_equal(shown[outside][:100], base[outside][:100])


def test_explain_gives_the_answer_and_its_picture_from_one_inference(tmp_path):
    model = Model(
        tiny_model(
            tmp_path / "m.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.5}}
        )
    )
    im = smear()
    calls = []
    run = model.run
    model.run = lambda *a, **k: calls.append(k) or run(*a, **k)
    probs, view = explain(model, im, heat=True)
    assert len(calls) == 1 and calls[0].get("with_cam")
    x = normalise(resize_for_model(im, model.input_size, model.info.preprocessing)[None], model.info.preprocessing)
    assert np.allclose(probs, run(x)[0][0], atol=1e-6)
    assert np.array_equal(np.asarray(view), np.asarray(view_for(model, im, heat=True)))


def test_a_cell_at_the_edge_is_reported_off_centre_in_its_square():
    from hv_desktop.core.imaging.preprocess import at_image_edge, model_box_and_centre

    box, centre = model_box_and_centre(smear(nucleus=(300, 20)), CELL)
    assert box == (200, 0, 320, 120) and at_image_edge(box, centre)
    box, centre = model_box_and_centre(smear(nucleus=(160, 120)), CELL)
    assert not at_image_edge(box, centre)
    assert model_box_and_centre(smear(), Preprocessing(width=32, height=32)) == ((0, 0, 320, 240), None)
    assert not at_image_edge((0, 0, 320, 240), None)
