"""The nucleus ruler behind a scale-normalised crop (issue 17, item 1): it must follow the magnification, and a
second cell in the field must not move it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hv_desktop.core.preprocess import nucleus_radius
from training.analysis.scale_probe import SCALES, zoom


def _disc_image(radius: int, size=(320, 240), centre=(160, 120)) -> Image.Image:
    im = Image.new("RGB", size, (235, 225, 215))
    ImageDraw.Draw(im).ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=(90, 40, 150)
    )
    return im


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
    assert nucleus_radius(im) == pytest.approx(nucleus_radius(_disc_image(20)), rel=0.1) or nucleus_radius(im) == pytest.approx(
        40 / math.sqrt(2), rel=0.1
    )


@pytest.mark.realdata
@pytest.mark.parametrize("folder", ["blood-cells/TEST_SIMPLE", "pbc/val"])
def test_the_ruler_follows_magnification_on_real_images(shared_data, folder):
    rng = np.random.default_rng(0)
    files = sorted((shared_data / folder).glob("*/*"))
    files = [files[i] for i in rng.choice(len(files), 24, replace=False)]
    for scale in SCALES:
        ratios = []
        for f in files:
            im = Image.open(f).convert("RGB")
            ratios.append(nucleus_radius(zoom(im, scale, rng)) / (scale * nucleus_radius(im)))
        ratios_arr = np.array(ratios)
        assert abs(np.median(ratios_arr) - 1) <= 0.05, (scale, ratios)
        assert np.mean(np.abs(ratios_arr - 1) <= 0.10) >= 0.8, (scale, ratios)
