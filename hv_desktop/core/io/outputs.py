"""Where HematoVision may write: never over an input, never one output over another, never over a non-file.

Why: ``--csv X --summary X`` replaced the CSV with the summary, ``--csv cell.jpg`` overwrote the image, and as
root ``--csv /dev/sda`` (or a symlink) was replaced by a regular file; all with exit 0. Every face (CLI, watch,
adapt, GUI exports) asks :func:`output_problem` before writing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def output_problem(
    target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), others: Iterable[str | os.PathLike] = ()
) -> str | None:
    """Why ``target`` must not be written (None: it may be). ``others``: the run's other outputs."""
    from hv_desktop.core.imaging.scan import has_image_signature, is_image_name

    t = Path(target)
    for o in others:
        if o is not None and _same(t, Path(o)):
            return f"{t} is named for two outputs; give each output its own file"
    for i in inputs:
        if i is not None and _same(t, Path(i)):
            return f"{t} is one of the inputs; choose another file for the output"
    if os.path.lexists(t):
        st = os.lstat(t)
        if stat.S_ISLNK(st.st_mode):
            return f"{t} is a symbolic link; HematoVision will not replace it (give the real path or a new file)"
        if stat.S_ISDIR(st.st_mode):
            return f"{t} is a folder; give a file name"
        if not stat.S_ISREG(st.st_mode):
            return f"{t} is not a regular file (a device, pipe or socket); HematoVision will not replace it"
        if is_image_name(t.name) or has_image_signature(t):
            return f"{t} is an image; HematoVision will not overwrite it"
    return None
