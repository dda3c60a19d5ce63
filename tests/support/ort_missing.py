"""onnxruntime as a fresh Windows PC without a current Microsoft Visual C++ runtime sees it: importing it fails
with "DLL load failed" (issue 30). In-process (a meta-path finder) and for a subprocess (a stand-in package)."""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

import pytest

#: the message onnxruntime's import gives on such a PC
DLL_LOAD_FAILED = "DLL load failed while importing onnxruntime_pybind11_state: The specified module could not be found."


class _DllLoadFails(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(DLL_LOAD_FAILED)
        return None


def break_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the test ends, ``import onnxruntime`` raises the ImportError of a missing Visual C++ runtime."""
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_DllLoadFails(), *sys.meta_path])


def broken_onnxruntime_package(folder: Path) -> Path:
    """A folder to put first on PYTHONPATH: its ``onnxruntime`` raises that ImportError when imported."""
    package = folder / "onnxruntime"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"raise ImportError({DLL_LOAD_FAILED!r})\n", encoding="utf-8")
    return folder
