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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from hv_desktop.core.files import NotRegularFile, read_regular
from hv_desktop.core.model import Model
from hv_desktop.core.model import decode_workers as default_decoders
from hv_desktop.core.preprocess import ImageError, normalise, open_image, resize_for_model
from hv_desktop.core.scan import ScanItem, scan

#: Files larger than this are refused unread (no microscope capture is 512 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class Result:
    """The outcome for one file: a prediction, or an error with a plain message."""

    path: Path
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    needs_review: bool = False
    #: the value the needs-review threshold was applied to (model typicality, or confidence)
    typicality: float | None = None
    error: str | None = None
    sha256: str | None = None
    timestamp: str = ""
    reviewer_label: str | None = None
    #: the case (sample) this cell belongs to in a review session ("" before cases are used)
    case: str = ""
    #: small RGB uint8 preview (only when asked for; never exported)
    thumbnail: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: ((reviewer_label, case), JSON text) cached by hv_desktop.core.session.result_json
    _json: tuple[tuple[str | None, str], str] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Decoded:
    path: Path
    pixels: np.ndarray | None
    sha256: str | None
    error: str | None
    thumbnail: np.ndarray | None = None


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _thumbnail(im, side: int) -> np.ndarray:
    t = im.copy()
    t.thumbnail((side, side))
    return np.asarray(t, dtype=np.uint8)


def read_and_decode(path: Path, size: tuple[int, int], thumb: int = 0, prep=None, out: np.ndarray | None = None) -> _Decoded:
    """Read the bytes once (hash and decode the same bytes), never raise.

    ``out``: where the normalised pixels go (a row of the runner's batch buffer).
    """
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
        im = open_image(io.BytesIO(data), draft_size=size)
        pixels = resize_for_model(im, size, prep)
        if prep is not None:  # normalise here, in the decode thread, off the inference path
            pixels = normalise(pixels, prep, out=out)
        return _Decoded(path, pixels, digest, None, _thumbnail(im, thumb) if thumb else None)
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
) -> Iterator[Result]:
    """Yield a :class:`Result` for every item, in order, streaming.

    ``progress(done)`` is called after each result; ``cancel.set()`` stops the
    run before the next image (results already yielded stand). ``thumbnail``
    > 0 attaches a preview of at most that many pixels a side (for the GUI).
    """
    size = model.input_size
    workers = decode_workers or default_decoders()
    lookahead = max(2 * batch_size, 4 * workers)
    labels = model.labels
    prep = model.info.preprocessing
    threshold = model.info.review_threshold
    done = 0
    # Item i is decoded straight into row i % batch_size of buffer (i // batch_size) % len(buffers), so a
    # batch is never assembled by copying (np.stack of 8 images cost the inference thread ~0.05 ms an
    # image). Chunks are consecutive, aligned runs of batch_size items; with lookahead items in flight a
    # buffer is reused only after its batch has been through the model.
    row_shape = (3, size[1], size[0]) if prep.layout.upper() == "NCHW" else (size[1], size[0], 3)
    buffers: list[np.ndarray | None] = [None] * (lookahead // batch_size + 2)
    submitted = 0

    def row(index: int) -> np.ndarray:
        k = (index // batch_size) % len(buffers)
        if buffers[k] is None:
            buffers[k] = np.zeros((batch_size,) + row_shape, np.float32)
        return buffers[k][index % batch_size]

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hv-decode") as pool:
        pending: deque[Future[_Decoded] | _Decoded] = deque()
        source = iter(items)
        exhausted = False

        def refill() -> None:
            nonlocal exhausted, submitted
            while not exhausted and len(pending) < lookahead and not cancelled():
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    return
                if not isinstance(item, ScanItem):
                    item = ScanItem(Path(item))
                if item.error:
                    pending.append(_Decoded(item.path, None, None, item.error))
                else:
                    pending.append(pool.submit(read_and_decode, item.path, size, thumbnail, prep, row(submitted)))
                submitted += 1

        try:
            refill()
            while pending and not cancelled():
                # Take up to batch_size decoded items (one buffer's rows), keep the decoders fed.
                first = done
                chunk: list[_Decoded] = []
                while pending and len(chunk) < batch_size:
                    head = pending.popleft()
                    chunk.append(head.result() if isinstance(head, Future) else head)
                    refill()
                good = [j for j, d in enumerate(chunk) if d.pixels is not None]
                scored: dict[int, tuple[np.ndarray, float]] = {}
                if good:
                    # Rows of failed files hold stale pixels; they are classified and ignored.
                    batch = buffers[(first // batch_size) % len(buffers)][: len(chunk)]
                    try:
                        p, typical = model.assess(batch)
                        for j in good:
                            scored[j] = (p[j], float(typical[j]))
                    except Exception as exc:  # model failure: every image of the batch gets the message
                        for j in good:
                            chunk[j].error = f"model failed on this image ({str(exc)[:120]})"
                stamp = _now()
                for j, d in enumerate(chunk):
                    if cancelled():
                        break
                    got = scored.get(j)
                    if got is not None:
                        row_p, typical = got
                        k = int(np.argmax(row_p))
                        result = Result(
                            d.path,
                            labels[k],
                            float(row_p[k]),
                            {lab: float(v) for lab, v in zip(labels, row_p)},
                            needs_review=typical < threshold,
                            typicality=typical,
                            sha256=d.sha256,
                            timestamp=stamp,
                            thumbnail=d.thumbnail,
                        )
                    else:
                        result = Result(d.path, error=d.error or "not classified", sha256=d.sha256, timestamp=stamp)
                    done += 1
                    yield result
                    if progress is not None:
                        progress(done)
        finally:
            for f in pending:
                if isinstance(f, Future):
                    f.cancel()


def classify_paths(paths: Iterable[str | os.PathLike], model: Model, **kwargs) -> Iterator[Result]:
    """Scan files and folders, then classify: the one call the CLI and GUI make."""
    return classify_stream(scan(paths), model, **kwargs)
