"""Every white cell of a camera field classified (issue 28, step 2): one :class:`Result` per found cell, not one
per file.

A clinic's camera writes fields holding zero, one or several white cells; ``core.imaging.detect`` boxes each of them and
this module classifies each box. Why it is built as it is:

- **The batch runner's path, not a copy of it.** Each field is read, hashed and decoded by
  ``core.inference.batch.decode_file``, in the same thread pool ahead of inference (``core.inference.batch.decoded_chunks``); the
  finder and the cutting of the cells' squares run there too, so inference on one chunk of fields overlaps the
  decoding of the next, and every failure is a row with a plain message, as for single cells.
- **A square a fixed multiple of the cell**, centred on its box (:func:`cell_square`): the finder's box follows
  each field's magnification, so the model sees every lab's cell at one scale. Where the square leaves the field
  it is filled with the field's own background (``preprocess._crop_padded``), so a cell at the border stays
  centred. The multiple was chosen by measurement: docs/research/rules/fields_square.txt.
- **A field with no white cell is one row, not an error and not a class**: ``Result.no_cell``.
- Boxes are reported in the pixels of the file as stored (a field too large to decode whole is found on its
  reduced copy and its boxes scaled back).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.detect import FinderParams, FoundCell, find_cells
from hv_desktop.core.imaging.preprocess import (
    FORMATS,
    REDUCED_PIXELS,
    Box,
    ImageError,
    Preprocessing,
    _read_path,
    normalise,
    open_image,
    resize_for_model,
)
from hv_desktop.core.imaging.scan import ScanItem, scan
from hv_desktop.core.inference.batch import _Decoded, _now, _result, _thumbnail, decode_file, decoded_chunks
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.model import decode_workers as default_decoders
from hv_desktop.core.inference.result import Result

#: A cell's square side / its box's longer side (docs/research/rules/fields_square.txt: tuned on deepbionet/cells).
SQUARE_MULTIPLE = 2.2
#: More white cells than this in one field is no blood-smear field the finder can count (a grid of purple dots
#: finds 1,200): the field gets an error row instead of gigabytes of squares. A dense leukaemic field of a 12 MP
#: camera at 40x holds around a hundred.
MAX_CELLS = 256


@dataclass(frozen=True)
class FieldCells:
    """What the decode of a field found: its cells (boxes in the stored file's pixels) and their previews."""

    cells: list[FoundCell]
    thumbnails: list[np.ndarray | None]


def cell_square(box: Box, multiple: float = SQUARE_MULTIPLE) -> Box:
    """The square, ``multiple`` x the box's longer side, centred on the box (it may leave the image: padded)."""
    x0, y0, x1, y1 = box
    side = max(1, round(multiple * max(x1 - x0, y1 - y0)))
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    return (left, top, left + side, top + side)


def cut_cells(
    im: Image.Image,
    cells: Sequence[FoundCell],
    prep: Preprocessing,
    multiple: float = SQUARE_MULTIPLE,
    thumb: int = 0,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Each cell's square at the model's input size, uint8 RGB (N x height x width x 3; N may be 0), and a
    preview of each of at most ``thumb`` pixels a side (None without).

    Kept as uint8 until the chunk is classified (``preprocess.normalise`` then, on the whole batch, ~0.1 ms a
    cell): a field's squares wait in the decode-ahead queue at a quarter of the memory of float32."""
    size = (prep.width, prep.height)
    out = np.empty((len(cells), prep.height, prep.width, 3), np.uint8)
    thumbs: list[np.ndarray | None] = []
    for i, cell in enumerate(cells):
        out[i] = resize_for_model(im, size, prep, box=cell_square(cell.box, multiple))
        thumbs.append(_thumbnail(Image.fromarray(out[i]), thumb) if thumb else None)
    return out, thumbs


def stored_size(data: bytes, decoded: tuple[int, int]) -> tuple[int, int]:
    """The image's size as stored (after its EXIF orientation), where decoding reduced it (only images above
    ``preprocess.LARGE_PIXELS`` are; they come out with more than a quarter of REDUCED_PIXELS)."""
    if decoded[0] * decoded[1] <= REDUCED_PIXELS // 4:
        return decoded
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # turned a quarter: width and height swap
                w, h = h, w
    except Exception:  # the decode succeeded; a header it cannot re-read leaves the boxes as found
        return decoded
    return (w, h)


def to_stored(cell: FoundCell, decoded: tuple[int, int], stored: tuple[int, int]) -> FoundCell:
    """``cell`` with its box in the stored image's pixels (the same cell when nothing was reduced)."""
    if decoded == stored:
        return cell
    sx, sy = stored[0] / decoded[0], stored[1] / decoded[1]
    x0, y0, x1, y1 = cell.box
    box = (
        min(stored[0], round(x0 * sx)),
        min(stored[1], round(y0 * sy)),
        min(stored[0], round(x1 * sx)),
        min(stored[1], round(y1 * sy)),
    )
    return FoundCell(box, cell.score, cell.at_edge)


def decode_field(
    path: Path,
    prep: Preprocessing,
    multiple: float = SQUARE_MULTIPLE,
    params: FinderParams | None = None,
    thumb: int = 0,
    out: np.ndarray | None = None,
) -> _Decoded:
    """Read and decode one field, find its white cells and cut each one's square (in a decode thread); never
    raises. ``out`` is the batch runner's buffer row, unused: a field's number of cells is not known ahead."""

    def cells_of(im: Image.Image, data: bytes) -> tuple[np.ndarray, FieldCells]:
        found = find_cells(im, params)
        if len(found) > MAX_CELLS:
            raise ImageError(f"{len(found)} stained objects found, more than {MAX_CELLS}: not a blood-smear field")
        pixels, thumbs = cut_cells(im, found, prep, multiple, thumb)
        stored = stored_size(data, im.size)
        return pixels, FieldCells([to_stored(c, im.size, stored) for c in found], thumbs)

    return decode_file(Path(path), cells_of)


def field_results(
    items: Iterable[ScanItem | str | os.PathLike],
    model: Model,
    *,
    multiple: float = SQUARE_MULTIPLE,
    params: FinderParams | None = None,
    batch_size: int = 8,
    decode_workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    thumbnail: int = 0,
) -> Generator[list[Result], None, None]:
    """For every field, in order, streaming: its rows (one per found cell, top to bottom; one "no white cell"
    row; or one error row). ``progress(done)`` counts fields; ``cancel.set()`` stops before the next field;
    ``thumbnail`` > 0 gives each cell a preview of its square."""
    workers = decode_workers or default_decoders()
    lookahead = max(2 * batch_size, 4 * workers)
    decode = partial(decode_field, prep=model.info.preprocessing, multiple=multiple, params=params, thumb=thumbnail)
    done = 0

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    with closing(decoded_chunks(items, decode, batch_size, workers, lookahead, cancelled)) as chunks:
        for _, chunk in chunks:
            scored = _score_fields(model, chunk)
            stamp = _now()
            for d, s in zip(chunk, scored, strict=True):
                if cancelled():
                    break
                done += 1
                yield field_rows(d, s, model, stamp)
                if progress is not None:
                    progress(done)


def classify_fields(items: Iterable[ScanItem | str | os.PathLike], model: Model, **kwargs: Any) -> Iterator[Result]:
    """:func:`field_results`, one row at a time."""
    for rows in field_results(items, model, **kwargs):
        yield from rows


def classify_field_paths(paths: Iterable[str | os.PathLike], model: Model, **kwargs: Any) -> Iterator[Result]:
    """Scan files and folders, then classify every cell of every field."""
    return classify_fields(scan(paths), model, **kwargs)


def _score_fields(model: Model, chunk: list[_Decoded]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per field of the chunk: (probabilities, review values) of its cells, from one inference pass over all the
    chunk's cells; None where it failed or has no cell (when the model fails, each field gets its message)."""
    counts = [0 if d.pixels is None else len(d.pixels) for d in chunk]
    if not sum(counts):
        return [None] * len(chunk)
    tensors = [d.pixels for d, n in zip(chunk, counts, strict=True) if n and d.pixels is not None]
    try:
        batch = normalise(tensors[0] if len(tensors) == 1 else np.concatenate(tensors), model.info.preprocessing)
        p, typical = model.assess(batch)
    except Exception as exc:  # model failure: every field of the chunk with a cell gets the message
        for d, n in zip(chunk, counts, strict=True):
            if n:
                d.error = f"model failed on this image ({str(exc)[:120]})"
        return [None] * len(chunk)
    scored: list[tuple[np.ndarray, np.ndarray] | None] = []
    start = 0
    for n in counts:
        scored.append((p[start : start + n], typical[start : start + n]) if n else None)
        start += n
    return scored


def field_rows(d: _Decoded, scored: tuple[np.ndarray, np.ndarray] | None, model: Model, stamp: str) -> list[Result]:
    """One field's rows: a row per cell (``cell_index`` 1, 2, ... top to bottom, its box in the stored image's
    pixels), one ``no_cell`` row, or one error row."""
    made_by = (model.info.name, model.info.version)
    labels, threshold = model.labels, model.info.review_threshold
    found = d.extra if isinstance(d.extra, FieldCells) else None
    if d.error is not None or d.pixels is None or found is None:
        return [_result(d, None, labels, threshold, stamp, made_by)]
    if not found.cells:
        return [Result(d.path, sha256=d.sha256, timestamp=stamp, no_cell=True, model_name=made_by[0], model_version=made_by[1])]
    if scored is None:  # pragma: no cover - cells without scores only when the model failed (an error above)
        return [_result(d, None, labels, threshold, stamp, made_by)]
    rows = []
    for i, (cell, thumb) in enumerate(zip(found.cells, found.thumbnails, strict=True)):
        r = _result(d, (scored[0][i], float(scored[1][i])), labels, threshold, stamp, made_by)
        r.cell_index, r.cell_box, r.cell_at_edge, r.thumbnail = i + 1, cell.box, cell.at_edge, thumb
        rows.append(r)
    return rows


def same_field(results: Sequence[Result], r: Result) -> list[Result]:
    """The rows of ``r``'s camera field in ``results`` (the same file, bytes and case: its cells, or its one
    no-cell row), in their order; [] for a file classified as one cell."""
    if r.cell_index is None and not r.no_cell:
        return []
    return [
        x
        for x in results
        if (x.cell_index is not None or x.no_cell) and x.path == r.path and x.sha256 == r.sha256 and x.case == r.case
    ]


def cell_name(r: Result, of: int | None = None) -> str:
    """A row's name as the window lists it: the file's, and for a camera field which cell ("field.jpg · cell 2
    of 3") or that it has none ("field.jpg · no white cell")."""
    if r.no_cell:
        return f"{r.path.name} · no white cell"
    if r.cell_index is None:
        return r.path.name
    return f"{r.path.name} · cell {r.cell_index}" + (f" of {of}" if of else "")


def cell_thumbnails(results: Sequence[Result], side: int) -> None:
    """A camera field's cell rows without a thumbnail get their cell's square, as a run makes it (a restored
    session keeps none: the whole field was shown for each of its cells). Each field is decoded once; one that
    cannot be read leaves its rows without (call off the GUI thread)."""
    by_field: dict[Path, list[Result]] = {}
    for r in results:
        if r.ok and r.cell_box is not None and r.thumbnail is None:
            by_field.setdefault(r.path, []).append(r)
    for path, rows in by_field.items():
        try:
            im, scale = open_field(path)
        except ImageError:
            continue
        for r in rows:
            box = scale(cell_square(r.cell_box)) if r.cell_box is not None else (0, 0) + im.size
            r.thumbnail = resize_for_model(im, (side, side), None, box=box)


def open_field(path: Path) -> tuple[Image.Image, Callable[[Box], Box]]:
    """A field decoded as a run decodes it (so a cell's square holds the pixels the model saw) and the map of a
    box in the stored file's pixels (``Result.cell_box``) to the decoded picture's; ImageError when unreadable."""
    data = _read_path(path).getvalue()
    im = open_image(io.BytesIO(data))
    stored = stored_size(data, im.size)
    sx, sy = im.width / stored[0], im.height / stored[1]

    def scale(box: Box) -> Box:
        return (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))

    return im, scale
