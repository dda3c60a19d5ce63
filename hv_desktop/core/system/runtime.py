"""Process-wide settings the app relies on, applied once at start-up, never on import.

Importing the core changes no process state (a library user keeps Pillow's and glibc's defaults); every entry
point (the CLI, the desktop app, the PyInstaller bundle, which starts through the CLI) calls
:func:`configure_process` first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image, ImageFile


@dataclass(frozen=True)
class ProcessSettings:
    """What :func:`configure_process` did."""

    keeps_freed_buffers: bool


_applied: ProcessSettings | None = None


def keep_freed_buffers() -> bool:
    """Let glibc reuse freed image buffers instead of returning them to the OS.

    glibc serves each ~0.3 MB decode, copy, crop and resize buffer with a fresh
    mmap by default, and every one costs page faults: ~0.4 ms of a ~1.6 ms image
    here (benchmarks/RESULTS.md). Raising the mmap and trim thresholds keeps them
    in the heap. Pillow's own block cache (PILLOW_BLOCKS_MAX) would do the same
    but is not thread-safe (python-pillow/Pillow#9600: it segfaulted a test
    here), and the decoders run in threads. glibc's allocator is thread-safe.
    No effect off glibc, or when MALLOC_MMAP_THRESHOLD_ is set by the user.
    """
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a glibc system (Windows, macOS, musl)
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 64 << 20))
    except (OSError, AttributeError):
        return False


#: onnxruntime (1.2x+ on Linux and macOS) reads this when it is imported: "1" creates no uploader, no device id
#: and no event database under ~/.cache/Microsoft (microsoft/onnxruntime#27379). Its Python switch,
#: ``disable_telemetry_events()`` (called by :class:`hv_desktop.core.inference.model.Model`), comes too late for those.
ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def telemetry_off() -> None:
    """A clinic PC keeps no device id or usage log of onnxruntime's: set before onnxruntime is first imported."""
    os.environ[ORT_TELEMETRY_ENV] = "1"


def configure_process() -> ProcessSettings:
    """Apply the process-wide settings (idempotent; the first call's result is returned after).

    - Pillow's decompression-bomb limit is off: :func:`hv_desktop.core.imaging.preprocess.open_image` enforces its own
      (``MAX_PIXELS``, with a clear message) instead of Pillow's warning or error.
    - Truncated files fail loudly, never silently padded with grey.
    - glibc keeps freed image buffers (:func:`keep_freed_buffers`).
    - Pillow's racy block cache stays off even if PILLOW_BLOCKS_MAX asks for it: the decoders are threads.
    - onnxruntime's telemetry is off before it is imported (:func:`telemetry_off`).
    - Every Pillow image plugin is imported now, on the starting thread: Pillow imports them lazily on the first
      file of a less common format, and one CI run crashed (a segfault inside ``Image.init`` in a decode thread
      while Qt ran; seen once, not reproduced), so no plugin import is left to the decode threads.
    """
    global _applied
    if _applied is None:
        telemetry_off()
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        kept = keep_freed_buffers()
        Image.core.set_blocks_max(0)
        Image.init()
        _applied = ProcessSettings(keeps_freed_buffers=kept)
    return _applied
