"""Classify a stream of files: one :class:`Result` per input, in input order.

Decoding runs in a small thread pool a bounded distance ahead of inference
(Pillow and onnxruntime both release the GIL), so the two overlap while memory
stays flat however large the folder. Every failure becomes a result with a
plain message; nothing a file contains can stop the run. Cancellation is
checked between images.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import ImageError, Preprocessing, normalise, open_image, resize_for_model
from hv_desktop.core.imaging.scan import ScanItem, scan
from hv_desktop.core.inference.metadata import needs_review
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.model import decode_workers as default_decoders
from hv_desktop.core.inference.result import Result
from hv_desktop.core.system.files import NotRegularFile, read_regular

#: Files larger than this are refused unread (no microscope capture is 512 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class _Decoded:
    path: Path
    pixels: np.ndarray | None
    sha256: str | None
    error: str | None
    thumbnail: np.ndarray | None = None
    extra: object = None  # what the decode found besides the pixels (camera fields: the cells)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _thumbnail(im: Image.Image, side: int) -> np.ndarray:
    t = im.copy()
    t.thumbnail((side, side))
    return np.asarray(t, dtype=np.uint8)


def read_and_decode(
    path: Path, size: tuple[int, int], thumb: int = 0, prep: Preprocessing | None = None, out: np.ndarray | None = None
) -> _Decoded:
    """Read the bytes once (hash and decode the same bytes), never raise.

    ``out``: where the normalised pixels go (a row of the runner's batch buffer).
    """

    def pixels(im: Image.Image, data: bytes) -> tuple[np.ndarray, object]:
        arr = resize_for_model(im, size, prep)
        if prep is not None:  # normalise here, in the decode thread, off the inference path
            arr = normalise(arr, prep, out=out)
        return arr, None

    return decode_file(path, pixels, draft=size, thumb=thumb)


def decode_file(
    path: Path,
    convert: Callable[[Image.Image, bytes], tuple[np.ndarray, object]],
    draft: tuple[int, int] | None = None,
    thumb: int = 0,
) -> _Decoded:
    """Read one file, hash and decode the same bytes, and turn the image into model pixels with ``convert(image,
    bytes) -> (pixels, extra)``; never raises: every failure is a :class:`_Decoded` with a plain message. Shared
    by one-cell-per-file classification (:func:`read_and_decode`) and by camera fields (``core.inference.fields``)."""
    try:
        if path.is_dir():
            return _Decoded(path, None, None, "is a folder, not an image")
        n = path.stat().st_size
        if n > MAX_FILE_BYTES:
            return _Decoded(path, None, None, f"file too large ({n / 1e6:.0f} MB)")
        data = read_regular(path, MAX_FILE_BYTES)
        if len(data) > MAX_FILE_BYTES:
            return _Decoded(path, None, None, f"file too large (over {MAX_FILE_BYTES / 1e6:.0f} MB)")
    except NotRegularFile as exc:
        return _Decoded(path, None, None, exc.strerror or "not a regular file")
    except FileNotFoundError:
        return _Decoded(path, None, None, "file not found (moved or deleted?)")
    except PermissionError:
        return _Decoded(path, None, None, "permission denied")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _Decoded(path, None, None, "symlink loop")
        return _Decoded(path, None, None, f"file cannot be read ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return _Decoded(path, None, digest, "empty file (0 bytes)")
    try:
        im = open_image(io.BytesIO(data), draft_size=draft)
        pixels, extra = convert(im, data)
        return _Decoded(path, pixels, digest, None, _thumbnail(im, thumb) if thumb else None, extra)
    except ImageError as exc:
        msg = str(exc)
        if msg.startswith("not an image") and data.lstrip()[:1] in (b"<", b"{", b"%"):
            msg = "not an image (looks like a text, HTML or PDF file)"
        return _Decoded(path, None, digest, msg)
    except Exception as exc:  # a decoder bug must cost one row, not the run
        return _Decoded(path, None, digest, f"image could not be decoded ({exc.__class__.__name__})")


def classify_stream(
    items: Iterable[ScanItem | str | os.PathLike],
    model: Model,
    *,
    batch_size: int = 8,
    decode_workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    thumbnail: int = 0,
) -> Generator[Result, None, None]:
    """Yield a :class:`Result` for every item, in order, streaming.

    ``progress(done)`` is called after each result; ``cancel.set()`` stops the
    run before the next image (results already yielded stand). ``thumbnail``
    > 0 attaches a preview of at most that many pixels a side (for the GUI).
    """
    workers = decode_workers or default_decoders()
    lookahead = max(2 * batch_size, 4 * workers)
    prep = model.info.preprocessing
    buffers = _BatchBuffers(batch_size, lookahead, model.input_size, prep)
    decode = partial(read_and_decode, size=model.input_size, thumb=thumbnail, prep=prep)
    labels, threshold = model.labels, model.info.review_threshold
    made_by = (model.info.name, model.info.version)
    done = 0

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    with closing(decoded_chunks(items, decode, batch_size, workers, lookahead, cancelled, buffers)) as chunks:
        for first, chunk in chunks:
            scored = _score(model, buffers, first, chunk)
            stamp = _now()
            for j, d in enumerate(chunk):
                if cancelled():
                    break
                done += 1
                yield _result(d, scored.get(j), labels, threshold, stamp, made_by)
                if progress is not None:
                    progress(done)


def decoded_chunks(
    items: Iterable[ScanItem | str | os.PathLike],
    decode: Callable[..., _Decoded],
    batch_size: int,
    workers: int,
    lookahead: int,
    cancelled: Callable[[], bool],
    buffers: _BatchBuffers | None = None,
) -> Generator[tuple[int, list[_Decoded]], None, None]:
    """(index of the first item, up to ``batch_size`` decoded items) in input order, while a pool of ``workers``
    decodes at most ``lookahead`` items ahead: inference on one chunk overlaps decoding of the next. ``buffers``:
    where ``decode`` writes each item's pixels (``out=``); without, it is passed ``out=None``. Close it (or run it
    out) to stop the pool."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hv-decode") as pool:
        ahead = _DecodeAhead(items, pool, decode, buffers, lookahead, cancelled)
        try:
            ahead.refill()
            while ahead.pending and not cancelled():
                yield ahead.take(batch_size)
        finally:
            ahead.cancel()


class _BatchBuffers:
    """The float32 batches images are decoded into, reused in turn.

    Item i is decoded straight into row i % batch_size of buffer (i // batch_size) % count, so a batch is never
    assembled by copying (np.stack of 8 images cost the inference thread ~0.05 ms an image). Chunks are
    consecutive, aligned runs of batch_size items; with ``lookahead`` items in flight a buffer is reused only
    after its batch has been through the model.
    """

    def __init__(self, batch_size: int, lookahead: int, size: tuple[int, int], prep: Preprocessing) -> None:
        self.batch_size = batch_size
        self.row_shape = (3, size[1], size[0]) if prep.layout.upper() == "NCHW" else (size[1], size[0], 3)
        self.arrays: list[np.ndarray | None] = [None] * (lookahead // batch_size + 2)

    def _array(self, index: int) -> np.ndarray:
        k = (index // self.batch_size) % len(self.arrays)
        array = self.arrays[k]
        if array is None:  # allocated on first use: a run of a few files needs one buffer
            array = self.arrays[k] = np.zeros((self.batch_size,) + self.row_shape, np.float32)
        return array

    def row(self, index: int) -> np.ndarray:
        """Where item ``index``'s normalised pixels go."""
        return self._array(index)[index % self.batch_size]

    def batch(self, first: int, n: int) -> np.ndarray:
        """The n rows of the chunk that starts at item ``first`` (a multiple of batch_size), as one tensor."""
        return self._array(first)[:n]


class _DecodeAhead:
    """Items submitted to the decode pool at most ``lookahead`` ahead of inference, handed back in input order.

    A scan's error becomes a decoded failure at once (nothing to read); cancelling stops new submissions.
    """

    def __init__(
        self,
        items: Iterable[ScanItem | str | os.PathLike],
        pool: ThreadPoolExecutor,
        decode: Callable[..., _Decoded],
        buffers: _BatchBuffers | None,
        lookahead: int,
        cancelled: Callable[[], bool],
    ) -> None:
        self.source, self.pool, self.decode, self.buffers = iter(items), pool, decode, buffers
        self.lookahead, self.cancelled = lookahead, cancelled
        self.pending: deque[Future[_Decoded] | _Decoded] = deque()
        self.submitted = self.taken = 0
        self.exhausted = False

    def refill(self) -> None:
        while not self.exhausted and len(self.pending) < self.lookahead and not self.cancelled():
            try:
                item = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
            if not isinstance(item, ScanItem):
                item = ScanItem(Path(item))
            if item.error:
                self.pending.append(_Decoded(item.path, None, None, item.error))
            else:
                out = None if self.buffers is None else self.buffers.row(self.submitted)
                self.pending.append(self.pool.submit(self.decode, item.path, out=out))
            self.submitted += 1

    def take(self, n: int) -> tuple[int, list[_Decoded]]:
        """(index of the first item, up to n decoded items: one buffer's rows), keeping the decoders fed."""
        first = self.taken
        chunk: list[_Decoded] = []
        while self.pending and len(chunk) < n:
            head = self.pending.popleft()
            chunk.append(head.result() if isinstance(head, Future) else head)
            self.refill()
        self.taken += len(chunk)
        return first, chunk

    def cancel(self) -> None:
        """Drop the decodes not started yet (the run is over or was stopped)."""
        for f in self.pending:
            if isinstance(f, Future):
                f.cancel()


def _score(model: Model, buffers: _BatchBuffers, first: int, chunk: list[_Decoded]) -> dict[int, tuple[np.ndarray, float]]:
    """{chunk index: (probabilities, review value)} for the chunk's items that decoded (the chunk starts at item
    ``first``); if the model fails, each of them gets its message instead."""
    good = [j for j, d in enumerate(chunk) if d.pixels is not None]
    scored: dict[int, tuple[np.ndarray, float]] = {}
    if good:
        # Rows of failed files hold stale pixels; they are classified and ignored.
        batch = buffers.batch(first, len(chunk))
        try:
            p, typical = model.assess(batch)
            for j in good:
                scored[j] = (p[j], float(typical[j]))
        except Exception as exc:  # model failure: every image of the batch gets the message
            for j in good:
                chunk[j].error = f"model failed on this image ({str(exc)[:120]})"
    return scored


def _result(
    d: _Decoded,
    scored: tuple[np.ndarray, float] | None,
    labels: Sequence[str],
    threshold: float,
    stamp: str,
    made_by: tuple[str, str] = ("", ""),
) -> Result:
    """One file's row: its prediction when it was scored (with the model's name and version), else its error."""
    if scored is None:
        return Result(d.path, error=d.error or "not classified", sha256=d.sha256, timestamp=stamp)
    probs, typical = scored
    k = int(np.argmax(probs))
    return Result(
        d.path,
        labels[k],
        float(probs[k]),
        {lab: float(v) for lab, v in zip(labels, probs, strict=True)},
        needs_review=needs_review(typical, threshold),
        typicality=typical,
        sha256=d.sha256,
        timestamp=stamp,
        thumbnail=d.thumbnail,
        model_name=made_by[0],
        model_version=made_by[1],
    )


def classify_paths(paths: Iterable[str | os.PathLike], model: Model, **kwargs: Any) -> Iterator[Result]:
    """Scan files and folders, then classify: the one call the CLI and GUI make."""
    return classify_stream(scan(paths), model, **kwargs)
