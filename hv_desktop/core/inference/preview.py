"""The picture the window shows for one cell, Qt-free: decoded (with a small cache of recent decodes), the
classified square outlined, optionally the heatmap, optionally zoomed to the cell.

Everything here may take a while (decoding a large field, the nucleus search, a heatmap inference): the window
calls :func:`render` on a worker thread and shows the answer for the row that is still selected.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import ImageError, Preprocessing, at_image_edge, model_box_and_centre, open_image
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result

PREVIEW_SIDE = 1600  # longest side kept: more than a screen shows, less than a full field decoded


def cell_view_box(box: tuple[int, int, int, int], size: tuple[int, int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """The classified square grown by ``margin`` of its side on every edge (the outline and a little context
    stay in view), kept inside the image."""
    left, top, right, bottom = box
    m = round(margin * max(right - left, bottom - top))
    return max(0, left - m), max(0, top - m), min(size[0], right + m), min(size[1], bottom + m)


@dataclass(frozen=True)
class Decoded:
    """One decoded picture and, for a model that crops, the square it classified."""

    image: Image.Image
    box: tuple[int, int, int, int]
    at_edge: bool


def decode(path: Path, prep: Preprocessing | None) -> Decoded:
    """Open ``path`` for the preview (ImageError when it cannot be read) and find the classified square: one
    nucleus search for the outline, the zoom and the edge note."""
    im = open_image(path, draft_size=(800, 800))
    im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    box, centre = model_box_and_centre(im, prep)
    return Decoded(im, box, at_image_edge(box, centre))


class PreviewCache:
    """The last few decodes, keyed by path, modification time and the model's preprocessing (thread-safe):
    going back to a cell, or switching the heatmap on, does not decode it again."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Decoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, prep: Preprocessing | None) -> Decoded:
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = -1  # gone: decode says why
        key = (str(path), mtime, prep)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        decoded = decode(path, prep)
        with self._lock:
            self._items[key] = decoded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return decoded

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class PreviewOptions:
    heat: bool = False
    opacity: float = 0.45
    zoom_to_cell: bool = False


@dataclass(frozen=True)
class Preview:
    """What the preview shows: the pixels (None when the file could not be read: ``error`` says why)."""

    pixels: np.ndarray | None
    at_edge: bool = False
    error: str = ""


def render(result: Result, model: Model | None, options: PreviewOptions, cache: PreviewCache) -> Preview:
    """The picture of ``result`` as the window shows it (call off the GUI thread: it decodes and may infer)."""
    from hv_desktop.core.inference.heatmap import view_for

    try:
        decoded = cache.get(result.path, model.info.preprocessing if model is not None else None)
        im = decoded.image
        if model is None:
            return Preview(np.asarray(im))
        k = model.labels.index(result.label) if result.label in model.labels else None
        view = view_for(model, im, heat=options.heat, class_index=k, opacity=options.opacity, box=decoded.box)
        if options.zoom_to_cell:
            view = view.crop(cell_view_box(decoded.box, im.size))
        return Preview(np.asarray(view), decoded.at_edge)
    except ImageError as exc:
        return Preview(None, error=str(exc))
