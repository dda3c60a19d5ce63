"""Heatmaps: normalising the class-activation map and drawing it over the picture."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hv_desktop.core.inference.heatmap import normalise_heat, overlay, upsample


def test_heat_normalisation_and_overlay():
    cam = np.zeros((7, 7), np.float32)
    cam[3, 4] = 5.0
    heat = normalise_heat(cam)
    assert heat.max() == 1.0 and heat[3, 4] == 1.0 and heat[0, 0] == 0.0
    assert normalise_heat(np.ones((7, 7))).max() == 0.0  # no evidence anywhere: nothing drawn
    up = upsample(heat, (70, 70))
    y, x = np.unravel_index(up.argmax(), up.shape)
    assert 25 <= y <= 45 and 35 <= x <= 55
    img = Image.new("RGB", (70, 70), (255, 255, 255))
    out = np.asarray(overlay(img, heat)).astype(int)
    assert (out[0, 0] == 255).all() and out[35, 45].sum() < 3 * 255  # coloured only where the heat is
