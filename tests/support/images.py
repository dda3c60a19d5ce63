"""Synthetic images the tests draw themselves."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def smear(size=(320, 240), nucleus=(230, 70), radius=22, seed=0) -> Image.Image:
    """A synthetic Wright-stained field: pale background, pink red cells, one purple nucleus."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, (236, 226, 222))
    d = ImageDraw.Draw(im)
    for _ in range(25):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        d.ellipse([x - 18, y - 18, x + 18, y + 18], fill=(214, 150, 160))
    x, y = nucleus
    d.ellipse([x - radius * 1.6, y - radius * 1.6, x + radius * 1.6, y + radius * 1.6], fill=(205, 190, 225))
    d.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(110, 60, 170))
    return im


def disc_image(radius: int, size=(320, 240), centre=(160, 120)) -> Image.Image:
    im = Image.new("RGB", size, (235, 225, 215))
    ImageDraw.Draw(im).ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=(90, 40, 150)
    )
    return im
