"""Files the tests make themselves: hostile ones (must give an error row) and odd
but valid ones (must classify). Nothing here is copied from ../shared."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring a huge canvas, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encoded(fmt: str, size=(64, 48), mode="RGB", **kw) -> bytes:
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_bad_files(folder: Path) -> dict[str, Path]:
    """At least 15 kinds of unusable file; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    jpg, png = _encoded("JPEG"), _encoded("PNG")
    bmp, tif, gif = _encoded("BMP"), _encoded("TIFF"), _encoded("GIF", mode="P")
    rng = np.random.default_rng(3)
    files = {
        "empty.jpg": b"",
        "text.jpg": b"patient notes: not an image\n" * 10,
        "page.png": b"<!DOCTYPE html><html><body>404</body></html>",
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png[: len(png) // 2],
        "corrupt_body.jpg": jpg[:200] + bytes(rng.integers(0, 255, 3000, dtype=np.uint8)),
        "corrupt_crc.png": png[:40] + b"\x00\x00\x00\x00" + png[44:],
        "bomb.png": bomb_png(),
        "truncated.bmp": bmp[:100],
        "corrupt.tif": tif[:8] + bytes(rng.integers(0, 255, 500, dtype=np.uint8)),
        "truncated.gif": gif[:30],
        "document.tif": b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n",
        "random.bmp": bytes(rng.integers(0, 255, 2048, dtype=np.uint8)),
        "only_soi.jpg": b"\xff\xd8",
        "fake.webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,
        "archive.png": b"PK\x03\x04" + b"\x00" * 100,
        "json.jpeg": b'{"not": "an image"}',
        "postscript.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    }
    out = {}
    for name, data in files.items():
        p = folder / name
        p.write_bytes(data)
        out[name] = p
    link = folder / "dangling_link.jpg"
    os.symlink(folder / "does-not-exist.jpg", link)
    out["dangling_link.jpg"] = link
    if os.name == "posix":  # kinds that are not regular files (issue 21): each still gets a row
        os.mkfifo(folder / "fifo.jpg")
        os.symlink(folder / "fifo.jpg", folder / "link_to_fifo.jpg")
        os.symlink("/dev/zero", folder / "dev_zero.jpg")
        os.symlink(folder / "self_loop.jpg", folder / "self_loop.jpg")
        for name in ("fifo.jpg", "link_to_fifo.jpg", "dev_zero.jpg", "self_loop.jpg"):
            out[name] = folder / name
    return out


def make_odd_good_files(folder: Path) -> dict[str, Path]:
    """Valid images in every awkward form a lab may produce; all must classify."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out: dict[str, Path] = {}

    def save(name: str, im: Image.Image, **kw) -> None:
        p = folder / name
        im.save(p, **kw)
        out[name] = p

    save("gray.png", rgb.convert("L"))
    save("bilevel.png", rgb.convert("1"))
    save("palette.png", rgb.convert("P"))
    pal = rgb.convert("P")
    pal.info["transparency"] = 0
    save("palette_transparent.png", pal, transparency=0)
    save("la.png", rgb.convert("LA"))
    save("rgba.png", rgb.convert("RGBA"))
    save("cmyk.jpg", rgb.convert("CMYK"))
    save("cmyk.tif", rgb.convert("CMYK"))
    save("gray16.png", Image.fromarray((rng.integers(0, 65535, (48, 64))).astype(np.uint16)))
    save("int32.tif", Image.fromarray(rng.integers(0, 4095, (48, 64)).astype(np.int32), "I"))
    save("float.tif", Image.fromarray(rng.random((48, 64)).astype(np.float32), "F"))
    save("one_pixel.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    save("very_wide.png", Image.new("RGB", (4000, 2), (10, 200, 10)))
    save("very_tall.bmp", Image.new("RGB", (2, 3000), (10, 10, 200)))
    frames = [Image.new("P", (32, 32), i * 40) for i in range(3)]
    p = folder / "animated.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["animated.gif"] = p
    p = folder / "multipage.tif"
    rgb.save(p, save_all=True, append_images=[rgb.rotate(90, expand=True)])
    out["multipage.tif"] = p
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    save("exif_rotated.jpg", rgb, exif=exif.tobytes())
    save("no_extension_jpeg", rgb, format="JPEG")
    save("ünïcødé 細胞 name.jpg", rgb)
    save("spaces in name .png", rgb)
    save("-leading-dash.png", rgb)
    save("=HYPERLINK(1).png", rgb)
    with contextlib.suppress(OSError):  # file systems that refuse newlines in names
        save("new\nline.png", rgb)
    save("webp.webp", rgb)
    return out
