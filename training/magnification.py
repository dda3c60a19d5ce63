"""Another lab's magnification, simulated on an image: used to probe models and to widen what counts as typical."""

from __future__ import annotations

import numpy as np
from PIL import Image


def at_magnification(im: Image.Image, scale: float, rng: np.random.Generator) -> Image.Image:
    """``im`` as seen at ``scale`` times its magnification, same pixel size.

    Higher (> 1): the central 1/scale of the field, enlarged back. Lower (< 1): the field shrunk by ``scale``
    and pasted at a random place on a canvas of its own background colour (the median of its top and bottom
    rows), as a wider field of view would show it.
    """
    w, h = im.size
    if scale == 1.0:
        return im
    if scale > 1.0:
        cw, ch = max(1, round(w / scale)), max(1, round(h / scale))
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BILINEAR)
    small = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    a = np.asarray(im.convert("RGB"))
    background = tuple(int(v) for v in np.median(np.concatenate([a[0], a[-1]]), 0))
    canvas = Image.new("RGB", (w, h), background)
    canvas.paste(small.convert("RGB"), (int(rng.integers(0, w - small.size[0] + 1)), int(rng.integers(0, h - small.size[1] + 1))))
    return canvas


def model_input_at(im: Image.Image, scale: float, rng: np.random.Generator, size: tuple[int, int], prep) -> np.ndarray:
    """The uint8 pixels the model would get for ``im`` seen at ``scale`` (the app's own crop and resize)."""
    from hv_desktop.core.imaging.preprocess import resize_for_model

    return np.asarray(resize_for_model(at_magnification(im, scale, rng), size, prep))
