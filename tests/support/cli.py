"""Commands run as a user runs them: a fresh interpreter, from the repository root, this tree on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def run_module(module: str, *args, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (``env``: variables added to this process's); text output captured."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=timeout
    )


def run_hematovision(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The ``hematovision`` command (``python -m hv_desktop ARGS``)."""
    return run_module("hv_desktop", *args, timeout=timeout)
