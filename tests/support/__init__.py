"""Helpers the tests share (not tests): imported as ``tests.support.X``; pytest puts the repository root on the
import path (``pythonpath`` in pyproject.toml), so no test edits ``sys.path``."""

from __future__ import annotations

from pathlib import Path

#: The repository root: subprocesses run from here with it on PYTHONPATH, so they import this tree's packages.
ROOT = Path(__file__).resolve().parents[2]


def import_tensorflow():
    """TensorFlow, or skip the calling module when the train extra is missing (under CI=true it must be there)."""
    import os

    import pytest

    if os.environ.get("CI") == "true":
        import tensorflow

        return tensorflow
    return pytest.importorskip("tensorflow", reason="the train extra is not installed")
