"""What the app writes, written so that nothing is lost: atomically (a temporary file beside the target, flushed,
then renamed, so a kill leaves the old file or the new one whole) and spreadsheet-safe (a cell that starts like a
formula is neutralised)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: object) -> str:
    """Text a spreadsheet will show, not execute (OWASP CSV-injection rule)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def make_temp_beside(target: Path) -> tuple[int, str]:
    """A temporary file in the target's folder (so the final rename is atomic), with
    ordinary permissions rather than mkstemp's owner-only ones."""
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    with contextlib.suppress(OSError):
        os.chmod(tmp, _FILE_MODE)
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, nothing between."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = make_temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
