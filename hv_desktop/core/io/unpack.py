"""Writing what comes out of a package: names a disk holds, a temporary folder beside the destination, members
streamed into it, then one move into place (or nothing left at all).

Why (issue 30): a package's images were read whole into memory and then written one by one into the destination
folder, so a 1.7 MB package of very compressible members cost 1.5 GB of memory and disk, a full disk left half a
folder behind, a long name failed in the middle of the write, and an image's name taken from the package could
land on another image's file (two rows, one picture). Names here are made from the sender's file name, cleaned,
short enough for any file system and unique even where case is ignored; never from the archive's member names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

CHUNK = 1 << 20
#: an unpacked file's name, in UTF-8 bytes (file systems hold 255; room left for a " (12)" and a temporary name)
MAX_NAME_BYTES = 120
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


def disk_names(names: Iterable[str]) -> list[str]:
    """A file name for each name given, in order: the name a person recognises (cleaned of separators and
    characters a file system refuses, cut to :data:`MAX_NAME_BYTES`), ``name (2).png`` where it is taken."""
    taken: set[str] = set()
    out = []
    for name in names:
        stem, suffix = _clean(name)
        candidate, n = _fit(stem, suffix), 2
        while candidate.casefold() in taken:
            candidate, n = _fit(stem, f" ({n}){suffix}"), n + 1
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def _clean(name: str) -> tuple[str, str]:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in base).strip(" .")
    stem, dot, ext = clean.rpartition(".")
    if not dot or not stem.strip(" .") or len(ext) > 10:
        stem, ext = clean, ""
    stem = stem.strip(" .") or "image"
    if stem.split(".")[0].upper() in _RESERVED:  # CON, NUL ... name a device on Windows
        stem = "_" + stem
    return stem, f".{ext}" if ext else ""


def _fit(stem: str, tail: str) -> str:
    """``stem + tail`` with the stem cut so that the whole is at most MAX_NAME_BYTES bytes of UTF-8."""
    room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
    while len(stem.encode("utf-8")) > room:
        stem = stem[: max(1, len(stem) - max(1, (len(stem.encode("utf-8")) - room) // 4))]
    return stem.rstrip(" .") + tail


def temp_folder(dest: Path) -> tuple[Path, list[Path]]:
    """A new, hidden, empty folder beside ``dest``, and the parent folders made for it (removed again when the
    unpacking fails). OSError when it cannot be made."""
    made = []
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        made.append(parent)
        parent = parent.parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:40]}.", suffix=".partial", dir=dest.parent))
    except BaseException:
        discard(None, made)
        raise
    return tmp, made


def copy_stream(src: IO[bytes], target: Path, limit: int) -> tuple[int, str]:
    """Stream at most ``limit`` + 1 bytes of ``src`` into the new file ``target`` (never over an existing file
    or through a link); (bytes copied, their sha256). OSError when the disk refuses."""
    with os.fdopen(os.open(target, _CREATE, 0o644), "wb") as out:
        return _stream(src, limit, out.write)


def hash_stream(src: IO[bytes], limit: int) -> tuple[int, str]:
    """(bytes read, sha256) of at most ``limit`` + 1 bytes of ``src``, written nowhere."""
    return _stream(src, limit, lambda _chunk: None)


def _stream(src: IO[bytes], limit: int, sink: Callable[[bytes], object]) -> tuple[int, str]:
    """Read at most ``limit`` + 1 bytes of ``src`` in chunks, each hashed and passed to ``sink``."""
    digest, n = hashlib.sha256(), 0
    while n <= limit:
        chunk = src.read(min(CHUNK, limit + 1 - n))
        if not chunk:
            break
        n += len(chunk)
        digest.update(chunk)
        sink(chunk)
    return n, digest.hexdigest()


def move_into_place(tmp: Path, dest: Path) -> None:
    """The finished folder becomes ``dest`` (which must be missing or an empty folder)."""
    if dest.is_dir():
        dest.rmdir()
    os.rename(tmp, dest)


def discard(tmp: Path | None, made: list[Path]) -> None:
    """Remove a failed unpacking's temporary folder and the parent folders made for it; never raises."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    for folder in made:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            break
