"""The files the app ships with (the model, the icon), found one way: as package data of ``hv_desktop``, read with
importlib.resources, so every install finds them where the package is: a wheel, ``pip install --user`` or
``--target``, the PyInstaller bundle (build.spec puts them under ``hv_desktop/assets``). No lookup by
``sys.prefix`` (wrong for --user and --target) or by the bundle's ``_MEIPASS``.

setup.py maps the repository's ``assets/`` onto the package folder ``hv_desktop/assets`` when it builds, so the
files stay where training writes the model; a source checkout (no build) is the one case that reads them there.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ASSETS = "assets"


def shipped_file(*parts: str) -> Path:
    """The shipped file ``assets/<parts>`` (it may be missing: the caller says so, e.g. as a model error)."""
    package = Path(str(files("hv_desktop")))
    packaged = package.joinpath(ASSETS, *parts)
    return packaged if packaged.exists() else package.parent.joinpath(ASSETS, *parts)


def app_icon_path() -> Path:
    """The app's icon (the window, the bundle's executable and the desktop entry use the same PNG)."""
    return shipped_file("icons", "hematovision.png")


def shipped_model_path() -> Path:
    """The shipped model file (:func:`hv_desktop.core.inference.model.bundled_model_path` adds the $HV_MODEL override)."""
    return shipped_file("model", "hematovision.onnx")
