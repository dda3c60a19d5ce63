"""Where the app keeps its own files (the case archive, site models, logs), Qt-free so the command line and the
window agree on one folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: the case archive's file name in the data folder (hv_desktop.core.storage.archive)
ARCHIVE_NAME = "cases.sqlite"


def data_dir() -> Path:
    """The one per-user folder ($HV_DATA_DIR overrides): Linux $XDG_DATA_HOME or ~/.local/share/HematoVision,
    Windows %LOCALAPPDATA%\\HematoVision, macOS ~/Library/Application Support/HematoVision (what Qt's
    GenericDataLocation gives the window)."""
    env = os.environ.get("HV_DATA_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return Path(base) / "HematoVision" if base else Path.home() / ".hematovision"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "HematoVision"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "HematoVision"


def archive_path() -> Path:
    """The case archive the app and the command line share."""
    return data_dir() / ARCHIVE_NAME
