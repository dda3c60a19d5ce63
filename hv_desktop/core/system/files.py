"""Reading files the user points at without ever blocking or reading a device.

Why: ``open()`` on a FIFO named ``cell.jpg`` waits forever for a writer (the run, and the GUI's Cancel, hung); a
``.jpg`` link to ``/dev/zero`` was read for 512 MB before it was refused. Every file HematoVision reads on a
user's behalf (images, models, CSVs, sessions) goes through :func:`read_regular`: it opens without blocking,
checks that what it opened is a regular file, and reads at most ``limit`` bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFile(OSError):
    """The path is a pipe, device, socket or symlink loop: nothing to read."""


def kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def not_regular_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (None: it is a regular file, or missing, which callers report)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    kind = kind_of(st.st_mode)
    return kind if kind == "a folder" else f"not a regular file ({kind})"


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes of a regular file (so a caller can tell "too large"); never blocks.

    Raises FileNotFoundError, PermissionError, IsADirectoryError, :class:`NotRegularFile` or other OSError.
    """
    fd = _regular_fd(path)
    try:
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """A regular file opened for reading in binary, never blocking (the errors of :func:`read_regular`); for a file
    read in pieces, such as a consultation package, instead of whole into memory."""
    return open(_regular_fd(path), "rb")


def _regular_fd(path: str | os.PathLike) -> int:
    """A blocking read descriptor of ``path``, opened without blocking and checked to be a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "symlink loop") from None
        if exc.errno == errno.ENXIO:  # a FIFO or socket with no peer
            raise NotRegularFile(errno.ENXIO, "not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({kind_of(st.st_mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def regular_path(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file; else the error :func:`read_regular` would raise."""
    reason = not_regular_reason(path)
    if reason:
        if reason == "a folder":
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        raise NotRegularFile(errno.EINVAL, reason)
    return Path(path)
