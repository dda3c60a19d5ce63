"""The nucleus crop (issue 17, item 1): the ruler on drawn nuclei, the square it sizes, and the model files that
declare it. The real-image check is in tests/realdata/test_nucleus_ruler.py."""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw

from hv_desktop.core.imaging.preprocess import nucleus_radius
from tests.support.images import disc_image as _disc_image


def test_a_drawn_nucleus_is_measured_as_its_radius_of_gyration():
    # A uniform disc of radius r has a radius of gyration of r / sqrt(2).
    for r in (12, 25, 50):
        assert nucleus_radius(_disc_image(r)) == pytest.approx(r / math.sqrt(2), rel=0.08)


def test_no_stain_gives_nan_not_a_size():
    assert math.isnan(nucleus_radius(Image.new("RGB", (100, 80), (200, 200, 200))))
    assert math.isnan(nucleus_radius(Image.new("RGB", (1, 1), (90, 40, 150))))


def test_a_second_cell_does_not_move_the_ruler():
    im = _disc_image(20, size=(640, 240), centre=(160, 120))
    ImageDraw.Draw(im).ellipse([440, 80, 520, 160], fill=(90, 40, 150))  # a second, larger nucleus
    # Either nucleus on its own, not their average or their span.
    measured = nucleus_radius(im)
    assert min(abs(measured / (20 / math.sqrt(2)) - 1), abs(measured / (40 / math.sqrt(2)) - 1)) <= 0.1, measured


def test_a_nucleus_square_is_its_multiple_of_the_radius_and_follows_magnification():
    from hv_desktop.core.imaging.preprocess import Preprocessing, model_box

    prep = Preprocessing(crop="nucleus", crop_radii=6.0, crop_fraction=0.75)
    sides = {}
    for r in (10, 20):
        box = model_box(_disc_image(r, size=(400, 300), centre=(200, 150)), prep)
        sides[r] = box[2] - box[0]
        assert sides[r] == pytest.approx(6.0 * r / math.sqrt(2), rel=0.08)
    assert sides[20] / sides[10] == pytest.approx(2.0, rel=0.08)
    # Nothing to measure: the "cell" square's fallback, a fraction of the short side.
    box = model_box(Image.new("RGB", (400, 300), (200, 200, 200)), prep)
    assert (box[2] - box[0], box[3] - box[1]) == (225, 225)


def test_a_nucleus_square_wider_than_the_field_is_padded_with_its_background():
    from hv_desktop.core.imaging.preprocess import Preprocessing, model_box, resize_for_model

    im = _disc_image(30, size=(200, 150), centre=(100, 75))
    prep = Preprocessing(crop="nucleus", crop_radii=12.0)
    box = model_box(im, prep)
    assert box[2] - box[0] > 200  # 12 x 21 px radius
    arr = resize_for_model(im, (64, 64), prep)
    assert tuple(arr[0, 0]) == (235, 225, 215)


def test_models_declare_the_nucleus_crop_and_out_of_range_multiples_are_refused(tmp_path):
    from hv_desktop.core.inference.model import Model, ModelError
    from tests.support.onnx_factory import tiny_model

    ok = tiny_model(
        tmp_path / "ok.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "nucleus", "crop_radii": 8}}
    )
    prep = Model(ok).info.preprocessing
    assert (prep.crop, prep.crop_radii) == ("nucleus", 8.0)
    bad = tiny_model(
        tmp_path / "bad.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "nucleus", "crop_radii": 0.5}}
    )
    with pytest.raises(ModelError, match="crop_radii"):
        Model(bad)


def test_a_field_stained_all_over_cannot_ask_for_a_huge_square():
    from hv_desktop.core.imaging.preprocess import MAX_CROP_FRACTION, Preprocessing, model_box

    strip = Image.new("RGB", (300, 3000), (90, 40, 150))  # purple everywhere: no nucleus, a "radius" of the field
    box = model_box(strip, Preprocessing(crop="nucleus", crop_radii=40.0, crop_fraction=0.75))
    assert box[2] - box[0] <= MAX_CROP_FRACTION * 300


def test_crop_radii_on_a_cell_model_is_kept_as_written_and_not_checked(tmp_path):
    from hv_desktop.core.inference.model import Model
    from tests.support.onnx_factory import tiny_model

    meta = {"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_radii": 0}}
    info = Model(tiny_model(tmp_path / "m.onnx", metadata=meta)).info
    assert info.to_dict()["preprocessing"]["crop_radii"] == 0


def test_model_text_that_cannot_be_written_is_refused(tmp_path):
    from hv_desktop.core.inference.model import Model, ModelError
    from tests.support.onnx_factory import tiny_model

    with pytest.raises(ModelError, match="name"):
        Model(tiny_model(tmp_path / "m.onnx", metadata={"name": "x\ud800"}))
