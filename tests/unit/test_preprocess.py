from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.imaging.preprocess import ImageError, Preprocessing, load_for_model, normalise, open_image, resize_for_model
from tests.support.badfiles import bomb_png, make_odd_good_files


def test_every_odd_mode_becomes_8bit_rgb(tmp_path):
    files = make_odd_good_files(tmp_path)
    assert len(files) >= 20
    for name, path in files.items():
        im = open_image(path)
        assert im.mode == "RGB", name
        arr = load_for_model(path, (32, 24))
        assert arr.shape == (24, 32, 3) and arr.dtype == np.uint8, name


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    buf = io.BytesIO()
    im.save(buf, "PNG")
    buf.seek(0)
    assert open_image(buf).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_keeps_its_range(tmp_path):
    arr = np.full((10, 10), 65535, np.uint16)
    arr[:5] = 0
    p = tmp_path / "g16.png"
    Image.fromarray(arr).save(p)
    out = np.asarray(open_image(p))
    assert out[0, 0, 0] == 0 and out[9, 9, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    out = open_image(p)
    assert out.size == (20, 60)
    arr = np.asarray(out).mean(axis=2)
    assert arr[:10].mean() > 200 and arr[-10:].mean() < 50  # the band is now on top


def test_resize_policy_is_whole_image_no_crop():
    im = Image.new("RGB", (400, 100), (0, 0, 0))
    im.paste((255, 0, 0), (0, 0, 20, 100))  # a red strip at the far left edge
    arr = resize_for_model(im, (50, 50))
    assert arr.shape == (50, 50, 3)
    assert arr[:, 0, 0].mean() > 150  # nothing at the edge was cropped away


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(ImageError, match="too large"):
        open_image(io.BytesIO(bomb_png()))


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"", "empty|not an image"),
        (b"hello", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "corrupt|truncated|not an image"),
    ],
)
def test_bad_bytes_raise_image_error(data, needle):
    with pytest.raises(ImageError, match=needle):
        open_image(io.BytesIO(data))


def test_missing_file_message(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "gone.jpg")


def test_normalise_follows_metadata():
    batch = np.zeros((2, 4, 4, 3), np.uint8)
    batch[..., 0] = 255
    x = normalise(batch, Preprocessing(4, 4))
    assert x.dtype == np.float32 and np.allclose(x[..., 0], 1.0) and np.allclose(x[..., 1], -1.0)
    x = normalise(batch, Preprocessing(4, 4, mean=(0, 0, 0), std=(1, 1, 1), channel_order="BGR", layout="NCHW"))
    assert x.shape == (2, 3, 4, 4) and np.allclose(x[:, 2], 255) and np.allclose(x[:, 0], 0)


@pytest.mark.parametrize("shape", [(224, 224, 3), (3, 17, 5, 3), (1, 1, 3)])
def test_normalise_per_channel_equals_the_plain_formula(shape):
    """The fast row-tiled arithmetic must give exactly (x - mean) / std per channel, also for odd shapes."""
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, shape, dtype=np.uint8)
    prep = Preprocessing(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    mean, std = np.float32(prep.mean), np.float32(prep.std)
    expected = u8.astype(np.float32) * (np.float32(1) / std) + (-mean / std)
    got = normalise(u8, prep)
    assert got.shape == shape and got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(normalise(u8[..., ::-1], prep), normalise(u8[..., ::-1].copy(), prep))  # strided input


def test_large_jpeg_draft_path_stays_close_to_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((1600, 1200), Image.Resampling.BICUBIC)
    p = tmp_path / "big.jpg"
    big.save(p, quality=95)
    fast = load_for_model(p, (64, 64)).astype(int)
    full = resize_for_model(open_image(p), (64, 64)).astype(int)
    assert np.abs(fast - full).mean() < 3.0


def test_pillow_block_cache_stays_off_and_glibc_keeps_buffers():
    """Pillow's block cache races between threads (python-pillow/Pillow#9600; it segfaulted a GUI test here):
    the app must leave it off and get buffer reuse from glibc instead."""
    import os

    from PIL import Image

    from hv_desktop.core.system.runtime import configure_process

    settings = configure_process()
    assert Image.core.get_blocks_max() == 0
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        glibc = False
    if glibc and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        assert settings.keeps_freed_buffers


def test_importing_the_core_changes_no_process_state():
    """Pillow's limits and glibc's allocator are set by configure_process() at start-up, never by an import."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from PIL import Image; default = Image.MAX_IMAGE_PIXELS; import hv_desktop.core.imaging.preprocess, hv_desktop.core; "
        "assert Image.MAX_IMAGE_PIXELS == default and default is not None, Image.MAX_IMAGE_PIXELS; "
        "from hv_desktop.core.system.runtime import configure_process; configure_process(); "
        "assert Image.MAX_IMAGE_PIXELS is None; print('ok')"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
