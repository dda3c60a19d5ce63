"""The picture the window shows for one cell, Qt-free: decoded (with a small cache of recent decodes), the
classified square outlined, optionally the heatmap, optionally zoomed to the cell.

Everything here may take a while (decoding a large field, the nucleus search, a heatmap inference): the window
calls :func:`render` on a worker thread and shows the answer for the row that is still selected.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import (
    ImageError,
    Preprocessing,
    _read_path,
    at_image_edge,
    model_box_and_centre,
    open_image,
)
from hv_desktop.core.inference.fields import cell_square
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
    stored: tuple[int, int] = (0, 0)  # the file's size as stored (a camera field's cell boxes are in its pixels)


def decode(path: Path, prep: Preprocessing | None) -> Decoded:
    """Open ``path`` for the preview (ImageError when it cannot be read) and find the classified square: one
    nucleus search for the outline, the zoom and the edge note."""
    data = _read_path(path)
    im = open_image(data, draft_size=(800, 800))
    decoded = im.size
    im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    box, centre = model_box_and_centre(im, prep)
    return Decoded(im, box, at_image_edge(box, centre), stored_size(data, decoded))


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
    #: a camera field: each of its cells' boxes in ``pixels``' coordinates, in the order of ``render``'s ``field``
    boxes: tuple[tuple[int, int, int, int], ...] = ()


def render(
    result: Result, model: Model | None, options: PreviewOptions, cache: PreviewCache, field: Sequence[Result] = ()
) -> Preview:
    """The picture of ``result`` as the window shows it (call off the GUI thread: it decodes and may infer).
    ``field``: for a camera field's row (issue 28), the rows of its field, whose boxes are drawn and returned."""
    from hv_desktop.core.inference.heatmap import view_for

    try:
        decoded = cache.get(result.path, model.info.preprocessing if model is not None else None)
        im = decoded.image
        if result.cell_box is not None or result.no_cell:
            pixels, boxes = field_view(result, field, model, im, decoded.stored, options)
            return Preview(pixels, result.cell_at_edge, boxes=boxes)
        if model is None:
            return Preview(np.asarray(im))
        k = model.labels.index(result.label) if result.label in model.labels else None
        view = view_for(model, im, heat=options.heat, class_index=k, opacity=options.opacity, box=decoded.box)
        if options.zoom_to_cell:
            view = view.crop(cell_view_box(decoded.box, im.size))
        return Preview(np.asarray(view), decoded.at_edge)
    except ImageError as exc:
        return Preview(None, error=str(exc))


# --- a camera field's cells (issue 28): every box of the field, the selected one highlighted, edge cells marked
#: the selected cell; the field's other cells; a cell the border cuts (dashed), as the window's legend says
SELECTED, OTHER, EDGE = (0, 190, 110), (40, 110, 255), (235, 120, 0)
Box = tuple[int, int, int, int]


def stored_size(data: BinaryIO, decoded: tuple[int, int]) -> tuple[int, int]:
    """The file's size as stored, after its EXIF orientation (``decoded`` when the header cannot be re-read)."""
    try:
        data.seek(0)
        with Image.open(data) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # turned a quarter: width and height swap
                w, h = h, w
        return (w, h)
    except Exception:  # the decode succeeded; its size is the best there is
        return decoded


def _scaled(box: Box, sx: float, sy: float) -> Box:
    return (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))


def draw_box(arr: np.ndarray, box: Box, colour: tuple[int, int, int], width: int, dashed: bool = False) -> None:
    """A rectangle just inside ``box`` on ``arr`` (H x W x 3, in place; parts outside the picture are left out).
    Dashed: segments of 3 widths, gaps of 2. Plain numpy: the bundle leaves out Pillow's font stack."""
    x0, y0, x1, y1 = box
    t = max(1, min(width, (x1 - x0) // 2, (y1 - y0) // 2))
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(arr.shape[1], x1), min(arr.shape[0], y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    yy, xx = np.ogrid[cy0:cy1, cx0:cx1]
    mask = (yy < y0 + t) | (yy >= y1 - t) | (xx < x0 + t) | (xx >= x1 - t)
    if dashed:
        mask &= ((xx + yy) % (5 * t)) < 3 * t
    arr[cy0:cy1, cx0:cx1][mask] = colour


def _heat(model: Model, im: Image.Image, label: str | None, square: Box, opacity: float) -> Image.Image:
    """``im`` with the heatmap of the cell's square (which may leave the picture: only its inside is shown)."""
    from hv_desktop.core.inference.heatmap import cam_for, overlay, upsample

    if not model.cam_name or label not in model.labels:
        return im
    heat, _ = cam_for(model, im, model.labels.index(label), square)
    x0, y0, x1, y1 = square
    full = upsample(heat, (x1 - x0, y1 - y0)).astype(np.float32)
    inside = (max(0, x0), max(0, y0), min(im.width, x1), min(im.height, y1))
    if inside[2] <= inside[0] or inside[3] <= inside[1]:
        return im
    part = full[inside[1] - y0 : inside[3] - y0, inside[0] - x0 : inside[2] - x0]
    return overlay(im, part, opacity, inside)


def field_view(
    result: Result,
    field: Sequence[Result],
    model: Model | None,
    im: Image.Image,
    stored: tuple[int, int],
    options: PreviewOptions,
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """The picture of a camera field's row and each of ``field``'s boxes in its pixels: every cell outlined, the
    selected one (``result``) thicker and green, the ones the border cuts dashed orange; optionally the selected
    cell's heatmap and the zoom to it. A row with no white cell: the whole field, nothing outlined."""
    sx, sy = im.width / max(1, stored[0]), im.height / max(1, stored[1])
    if result.cell_box is not None and model is not None and options.heat:
        im = _heat(model, im, result.label, _scaled(cell_square(result.cell_box), sx, sy), options.opacity)
    arr = np.array(im.convert("RGB"))
    width = max(2, round(min(im.size) / 300))
    boxes = [_scaled(r.cell_box, sx, sy) if r.cell_box is not None else (0, 0, 0, 0) for r in field]
    chosen = None
    for r, box in zip(field, boxes, strict=True):
        if r.cell_box is None:
            continue
        if r is result:
            chosen = box
        else:
            draw_box(arr, box, EDGE if r.cell_at_edge else OTHER, width, dashed=r.cell_at_edge)
    if result.cell_box is not None:  # on top, even where the field's list left it out
        chosen = chosen or _scaled(result.cell_box, sx, sy)
        draw_box(arr, chosen, SELECTED, 2 * width, dashed=result.cell_at_edge)
    if chosen is None or not options.zoom_to_cell:
        return arr, tuple(boxes)
    x0, y0, x1, y1 = cell_view_box(cell_square(chosen, 3.0), im.size)
    moved = tuple((b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0) for b in boxes)
    return np.ascontiguousarray(arr[y0:y1, x0:x1]), moved
