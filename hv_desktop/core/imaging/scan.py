"""Turn the files and folders a user picks into a stream of image paths.

Folders are walked lazily, one directory at a time, so a 100,000-file tree
starts classifying at once and memory does not grow with its size. Order is
natural (``cell2`` before ``cell10``) within each folder, depth first, so the
same folder always gives the same row order.

What counts as an image: a file with an image extension (so ``scan.jpg`` that
is really HTML still gets a row and a clear error), or any other file whose
first bytes are an image signature (camera software that writes ``.dat`` or
no extension). Hidden files and folders are skipped; symlink loops are walked
once; unreadable folders are reported, not fatal.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hv_desktop.core.system.files import not_regular_reason, read_regular

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".gif",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".jp2",
        ".j2k",
        ".ico",
    }
)

_SIGNATURES: tuple[bytes, ...] = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",  # TIFF
    b"BM",  # BMP
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
)


@dataclass(frozen=True)
class ScanItem:
    """One path to classify, or a problem met while scanning (``error`` set)."""

    path: Path
    error: str | None = None


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def has_image_signature(path: Path) -> bool:
    """True when the file's first bytes look like an image format we can read."""
    try:
        head = read_regular(path, 15)[:16]
    except OSError:
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return any(head.startswith(sig) for sig in _SIGNATURES)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key: digit runs compare as numbers, text case-insensitively, ties by raw name."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(p), p) if p.isdigit() else (1, 0, p.casefold()) for p in parts if p != "")
    return key + ((2, 0, name),)


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    try:
        attrs = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    except OSError:
        return False
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def _walk(folder: Path, seen: set[tuple[int, int]]) -> Iterator[ScanItem]:
    try:
        st = folder.stat()
    except OSError as exc:
        yield ScanItem(folder, f"folder cannot be read ({_reason(exc)})")
        return
    ident = (st.st_dev, st.st_ino)
    if ident in seen:  # symlink loop or the same folder reached twice
        return
    seen.add(ident)
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        yield ScanItem(folder, f"folder cannot be read ({_reason(exc)})")
        return
    files: list[os.DirEntry] = []
    dirs: list[os.DirEntry] = []
    odd: list[tuple[os.DirEntry, str]] = []
    for entry in entries:
        if _is_hidden(entry):
            continue
        try:
            if entry.is_dir(follow_symlinks=True):
                dirs.append(entry)
            elif entry.is_file(follow_symlinks=True):
                files.append(entry)
            else:
                reason = not_regular_reason(entry.path)
                if reason:  # a pipe, device, socket or symlink loop: a row that says so, never a read
                    odd.append((entry, reason))
                elif entry.is_symlink() and is_image_name(entry.name):
                    files.append(entry)  # dangling link to an image: report it, don't hide it
        except OSError as exc:  # e.g. a link to itself: reported, never silently dropped
            odd.append((entry, not_regular_reason(entry.path) or f"cannot be read ({_reason(exc)})"))
    files.sort(key=lambda e: natural_key(e.name))
    dirs.sort(key=lambda e: natural_key(e.name))
    odd.sort(key=lambda e: natural_key(e[0].name))
    for entry in files:
        path = Path(entry.path)
        if is_image_name(entry.name) or has_image_signature(path):
            yield ScanItem(path)
    for entry, reason in odd:
        yield ScanItem(Path(entry.path), reason)
    for entry in dirs:
        yield from _walk(Path(entry.path), seen)


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    return exc.strerror or exc.__class__.__name__


def scan(paths: Iterable[str | os.PathLike]) -> Iterator[ScanItem]:
    """Yield every image under ``paths`` in a stable order; files named directly always count."""
    seen: set[tuple[int, int]] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk(path, seen)
        elif not_regular_reason(path):
            yield ScanItem(path, not_regular_reason(path))
        elif path.exists() or path.is_symlink():
            yield ScanItem(path)
        else:
            yield ScanItem(path, "file or folder not found")


def count_images(paths: Iterable[str | os.PathLike]) -> int:
    """How many items :func:`scan` will yield (a cheap pre-pass for progress bars)."""
    return sum(1 for _ in scan(paths))


def describe_skipped(paths: Iterable[str | os.PathLike[str]], limit: int = 10_000) -> str:
    """Why a scan found no images, for the one-line message: what it skipped, e.g.
    " (skipped 3 files that are not images, e.g. notes.txt; 2 hidden files)", or " (the folder is empty)"."""
    other: list[str] = []
    hidden = 0
    seen = 0
    for raw in paths:
        if not os.path.isdir(raw):
            continue
        for _root, dirs, names in os.walk(os.fspath(raw)):
            for name in names:
                seen += 1
                if name.startswith("."):
                    hidden += 1
                else:
                    other.append(name)
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if seen >= limit:
                break
    if not seen:
        return " (the folder is empty)"
    parts = []
    if other:
        parts.append(
            f"skipped {len(other)} file{'s' if len(other) != 1 else ''} that "
            f"{'are' if len(other) != 1 else 'is'} not an image, e.g. {other[0]}"
        )
    if hidden:
        parts.append(f"{hidden} hidden file{'s' if hidden != 1 else ''}")
    return " (" + "; ".join(parts) + ")"
