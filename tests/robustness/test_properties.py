"""Property-based: random bytes and random valid images through the core (hypothesis)."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.model import Model

SETTINGS = settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), database=None)
EXTS = [".jpg", ".png", ".bmp", ".tif", ".gif", ".webp", ".dat"]


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model(tiny_model_path)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _one(model, path):
    t = time.monotonic()
    results = list(classify_stream([path], model, decode_workers=1))
    assert time.monotonic() - t < 5.0  # bounded time per file
    assert len(results) == 1  # exactly one result per input
    (r,) = results
    assert (r.error is None) == (r.label is not None)
    return r


@SETTINGS
@given(data=st.binary(max_size=3000), ext=st.sampled_from(EXTS))
def test_random_bytes_never_raise(model, workdir, data, ext):
    p = workdir / f"random{ext}"
    p.write_bytes(data)
    _one(model, p)


@SETTINGS
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    mode=st.sampled_from(["RGB", "L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"]),
    fmt=st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"]),
    seed=st.integers(0, 2**16),
)
def test_random_valid_images_classify(model, workdir, w, h, mode, fmt, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(
        mode if mode in ("RGB", "L", "1", "P", "RGBA", "LA", "CMYK") else "L"
    )
    if mode in ("I;16", "I", "F"):
        im = Image.fromarray(np.asarray(im).astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]) * 3)
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode; nothing to test
    p = workdir / f"valid.{fmt.lower()}"
    p.write_bytes(buf.getvalue())
    r = _one(model, p)
    assert r.ok, (mode, fmt, w, h, r.error)


@SETTINGS
@given(cut=st.floats(0.0, 1.0), fmt=st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "GIF"]))
def test_truncated_images_give_one_row(model, workdir, cut, fmt):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, fmt)
    data = buf.getvalue()
    p = workdir / f"cut.{fmt.lower()}"
    p.write_bytes(data[: int(len(data) * cut)])
    _one(model, p)
