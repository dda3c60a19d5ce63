"""A lab's reviewed cells as site adaptation reads them: the labelled CSV, the cells chosen within the limit, and
their images (each read once, a picture used twice counted once, large captures reduced).

Why its own module: reading is bounded in memory and time before any fit starts (:data:`MAX_CELLS`, taken by class
in turn), and calibration reads a lab's unlabelled images the same way (:func:`read_image`).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import ImageError, open_image
from hv_desktop.core.site.site_model import AdaptError
from hv_desktop.core.system.files import read_regular, regular_path
from hv_desktop.core.system.paths import text_to_path

#: Most labelled cells used (taken by class in turn, before any image is read): the published recipe needs
#: <= 100 per class, and this keeps time and memory bounded on any PC.
MAX_CELLS = 400
#: Images are kept at most this large (short side) between the magnifications tried: ~0.8 MB each.
KEEP_SHORT_SIDE = 640
#: The largest image file read.
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class LabelledCell:
    path: Path
    label: str


def read_labelled_csv(paths: Sequence[str | os.PathLike]) -> list[LabelledCell]:
    """Cells from the app's results CSV (or any CSV with ``path`` and ``reviewer_label`` columns).

    Relative paths resolve against the CSV's folder; rows without a reviewer label are skipped. Every row is
    read, streamed (a CSV over 64 MB was once cut there, silently: "no reviewed cells"); memory stays bounded
    because only the cells :func:`adapt` could choose are kept (:class:`_Choosable`).
    """
    kept = _Choosable()
    for p in paths:
        src = Path(p)
        try:
            with open(regular_path(src), "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
                _read_rows(src, csv.reader(fh), kept)
        except FileNotFoundError:
            raise AdaptError(f"CSV not found: {src}") from None
        except UnicodeDecodeError:
            raise AdaptError(f"{src.name} is not a CSV file (not UTF-8 text)") from None
        except csv.Error as exc:
            raise AdaptError(f"{src.name} is not a readable CSV file ({exc})") from None
        except OSError as exc:
            raise AdaptError(f"CSV cannot be read: {src} ({exc.strerror or exc})") from None
    return kept.cells()


def _read_rows(src: Path, rows: Iterator[list[str]], kept: _Choosable) -> None:
    header = [h.strip().lower() for h in next(rows, [])]
    if not header:
        raise AdaptError(f"{src.name} is empty")
    if "path" not in header or "reviewer_label" not in header:
        raise AdaptError(f"{src.name} needs 'path' and 'reviewer_label' columns (found: {', '.join(header[:8]) or 'none'})")
    ip, il = header.index("path"), header.index("reviewer_label")
    for row in rows:
        if len(row) <= max(ip, il):
            continue
        label, path = _uncell(row[il]).strip(), _uncell(row[ip]).strip()
        if label and path:
            q = text_to_path(path)
            kept.add(LabelledCell(q if q.is_absolute() else src.parent / q, label))


class _Choosable:
    """The cells :func:`within_limit` can choose among those added, in the order added: the first
    :data:`MAX_CELLS` of each label, of the :data:`MAX_CELLS` labels first in sorted order (it takes the labels in
    sorted order, one cell each in turn, the first of each first). Its choice from these is its choice from all."""

    def __init__(self) -> None:
        self.by_label: dict[str, list[tuple[int, LabelledCell]]] = {}
        self.names: list[str] = []  # the kept labels, sorted
        self.added = 0

    def add(self, cell: LabelledCell) -> None:
        key, n = cell.label.strip().lower(), self.added
        self.added += 1
        kept = self.by_label.get(key)
        if kept is None:
            if len(self.names) >= MAX_CELLS:
                if key > self.names[-1]:
                    return
                del self.by_label[self.names.pop()]
            bisect.insort(self.names, key)
            kept = self.by_label[key] = []
        if len(kept) < MAX_CELLS:
            kept.append((n, cell))

    def cells(self) -> list[LabelledCell]:
        return [cell for _, cell in sorted((pair for kept in self.by_label.values() for pair in kept), key=lambda p: p[0])]


def _uncell(text: str) -> str:
    """Undo the export's spreadsheet guard (a leading ' before = + - @)."""
    return text[1:] if text.startswith("'") and text[1:2] in ("=", "+", "-", "@") else text


def read_image(path: Path, seen: set[str]) -> tuple[Image.Image, str] | None:
    """(the image, its sha256), or None when a picture with that digest was read already; ImageError or OSError
    when it cannot be. Large captures are reduced (memory stays bounded whatever the camera's resolution)."""
    if not path.exists():
        raise ImageError("not found")
    data = read_regular(path, MAX_FILE_BYTES)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError("file too large")
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        return None
    im = open_image(io.BytesIO(data))
    if min(im.size) > KEEP_SHORT_SIDE:
        im.thumbnail(
            (im.size[0] * KEEP_SHORT_SIDE // min(im.size) + 1, im.size[1] * KEEP_SHORT_SIDE // min(im.size) + 1),
            reducing_gap=2.0,
        )
    return im, digest


def load_images(
    cells: Sequence[LabelledCell], labels: Sequence[str], cancel: Callable[[], bool] | None
) -> tuple[list[Image.Image], np.ndarray, list[str], dict[str, int], list[tuple[Path, str]], dict[str, int]]:
    """(images, label index or -1, sha256, outside counts, skipped, duplicates per label); each image read once."""
    index = {lab.lower(): i for i, lab in enumerate(labels)}
    ims: list[Image.Image] = []
    ys: list[int] = []
    shas: list[str] = []
    skipped: list[tuple[Path, str]] = []
    duplicates: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    seen: set[str] = set()
    for cell in cells:
        if cancel and cancel():
            raise AdaptError("cancelled")
        try:
            read = read_image(cell.path, seen)
        except (ImageError, OSError) as exc:
            skipped.append((cell.path, str(exc) if isinstance(exc, ImageError) else (exc.strerror or str(exc))))
            continue
        if read is None:  # the same picture twice must not count twice (nor leak into its own CV fold): said
            duplicates[cell.label.strip()] += 1
            continue
        im, digest = read
        seen.add(digest)
        y = index.get(cell.label.strip().lower(), -1)
        if y < 0:
            outside[cell.label.strip()] += 1
        ims.append(im)
        ys.append(y)
        shas.append(digest)
    return ims, np.asarray(ys, int), shas, dict(outside), skipped, dict(duplicates)


def limit_by_class(y: np.ndarray, most: int) -> np.ndarray:
    """Indices of at most ``most`` cells, taking the classes in turn (deterministic)."""
    if len(y) <= most:
        return np.arange(len(y))
    queues = [np.flatnonzero(y == c).tolist() for c in np.unique(y)]
    keep: list[int] = []
    while len(keep) < most:
        for q in queues:
            if q and len(keep) < most:
                keep.append(q.pop(0))
    return np.asarray(sorted(keep))


def within_limit(cells: Sequence[LabelledCell]) -> Sequence[LabelledCell]:
    """The cells, or a class-balanced subset of :data:`MAX_CELLS` of them, chosen before anything is read."""
    if not cells:
        raise AdaptError("no reviewed cells: give cells with a reviewer label (review some cells first)")
    if len(cells) <= MAX_CELLS:
        return cells
    names = sorted({c.label.strip().lower() for c in cells})
    order = np.asarray([names.index(c.label.strip().lower()) for c in cells])
    return [cells[i] for i in limit_by_class(order, MAX_CELLS)]
