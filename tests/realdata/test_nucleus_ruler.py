"""The nucleus ruler behind a scale-normalised crop (issue 17, item 1) follows the magnification on real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.imaging.preprocess import nucleus_radius
from training.analysis.scale_probe import SCALES, zoom


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
