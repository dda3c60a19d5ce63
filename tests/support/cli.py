"""Commands run as a user runs them: a fresh interpreter, from the repository root, this tree on PYTHONPATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

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


def serve(
    cmd: list[str], env: dict[str, str], ready: str, until: Callable[[], bool] = lambda: True, timeout: float = 90
) -> tuple[int | None, bytes, bytes]:
    """Run a long-running command (``watch``) as a service manager does: wait until its stderr shows ``ready`` (its
    SIGTERM handler is in place by then), then until ``until()`` holds, then stop it with SIGTERM.

    Returns (exit code, stdout, stderr), both read as they come (a full pipe never stalls the command)."""
    env = dict(env, PYTHONFAULTHANDLER="1")  # a SIGABRT makes it print every thread's stack (a hang's diagnosis)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    out: list[bytes] = []
    err: list[bytes] = []
    started = threading.Event()

    def pump(stream, into: list[bytes], marker: bytes | None) -> None:
        for line in iter(stream.readline, b""):
            into.append(line)
            if marker is not None and marker in line:
                started.set()
        started.set()  # it ended without saying so: nothing to wait for

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, out, None), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err, ready.encode()), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        started.wait(timeout)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(10)
            for t in pumps:
                t.join(10)
            stacks = b"".join(err).decode(errors="replace")[-6000:]
            raise AssertionError(f"still running {timeout:.0f} s after SIGTERM; its threads:\n{stacks}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in pumps:
            t.join(10)
    return proc.returncode, b"".join(out), b"".join(err)
