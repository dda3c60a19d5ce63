"""File names as text, for CSV, JSON and the screen, whatever bytes the file system allows.

Why: a name written by another system (``caf\\xe9.jpg`` in Latin-1 on a USB stick or a share) is not valid UTF-8.
Python holds its undecodable bytes as lone surrogates, which no UTF-8 writer accepts: the CSV export crashed,
and the autosave failed for good. One rule, used by every writer and reader:

- a name that is valid text is written as it is (every ordinary file: the CSV bytes do not change);
- any other is written as a ``file:`` URI of its bytes, percent-encoded (RFC 8089 / RFC 3986), e.g.
  ``file:/data/caf%E9.jpg``; :func:`text_to_path` turns it back into the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

PREFIX = "file:"


def path_to_text(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return PREFIX + quote_from_bytes(os.fsencode(path), safe="/\\:")


def text_to_path(text: str) -> Path:
    """The path :func:`path_to_text` wrote (a real path that happens to begin with ``file:`` stays as it is)."""
    if text.startswith(PREFIX) and "%" in text and not os.path.lexists(text):
        return Path(os.fsdecode(unquote_to_bytes(text[len(PREFIX) :])))
    return Path(text)


def display_name(path: str | os.PathLike) -> str:
    """For people (a terminal line, a message, a summary; also any text that holds a name): valid text as it is,
    each undecodable byte shown as U+FFFD, never an error, whatever the locale's encodings."""
    if not isinstance(path, (str, os.PathLike)):
        return str(path)
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:
        pass
    try:
        data = raw.encode("utf-8", "surrogateescape")  # a POSIX name's undecodable bytes, as Python holds them
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "surrogatepass")  # a Windows name's unpaired UTF-16 surrogates
    return data.decode("utf-8", "replace")
