"""The copy finder behind the per-cell TEST analysis: copies by rotation or flip group, other cells do not."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.support.images import smear
from training.analysis.photo_copies import descriptor, group, unit_rows


def _shift(im: Image.Image, dx: int, dy: int) -> Image.Image:
    out = Image.new("RGB", im.size, (0, 0, 0))  # the data set's shifted copies have black borders
    out.paste(im, (dx, dy))
    return out


def test_a_rotated_flipped_or_shifted_copy_is_nearest_its_own_cell():
    cells = [smear(nucleus=(160, 120), radius=18 + 2 * s, seed=s) for s in range(6)]
    original = cells[2]
    copies = [
        original.transpose(Image.Transpose.ROTATE_90),
        original.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        original.rotate(33, resample=Image.Resampling.BILINEAR),
        _shift(original, 12, -9),
    ]
    known = unit_rows(np.stack([descriptor(im) for im in cells]))
    for copy in copies:
        q = unit_rows(descriptor(copy)[None], reference=np.stack([descriptor(im) for im in cells]))[0]
        sims = known @ q
        assert int(np.argmax(sims)) == 2, sims.round(2)
        assert sims[2] - np.delete(sims, 2).max() > 0.2, sims.round(2)  # by a clear margin


def test_group_links_transitively():
    unit = np.array([[1.0, 0.0], [0.8, 0.6], [0.28, 0.96], [-1.0, 0.0]])  # 0~1, 1~2, 0 not ~2 directly
    ids = group(unit, threshold=0.75)
    assert ids[0] == ids[1] == ids[2] != ids[3]
