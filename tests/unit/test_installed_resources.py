"""Issue 29: the shipped model and icon are package data (hv_desktop.core.system.resources), so an install outside a
virtual environment's prefix finds them. Break: with ``pip install --target`` (and ``--user``) the model was looked
up under ``sys.prefix/share`` or beside the source tree, where such an install never puts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hv_desktop.core.system import resources
from tests.support import ROOT

#: What the install needs from the working tree (copied, so the build leaves nothing in the repository).
SOURCES = ("hv_desktop", "assets", "pyproject.toml", "setup.py", "README.md")
PROBE = """
import json, sys
import hv_desktop
from hv_desktop.core.inference.model import Model, bundled_model_path
from hv_desktop.core.system.resources import app_icon_path
path = bundled_model_path()
model = Model(path, threads=1)
print(json.dumps({"package": hv_desktop.__file__, "model": str(path), "labels": list(model.labels),
                  "icon": str(app_icon_path()), "icon_ok": app_icon_path().is_file()}))
"""


#: pip, and setuptools able to build a wheel (its own bdist_wheel from 70.1, else the wheel package's)
NEEDED = {
    "pip": "import pip",
    "setuptools": "import setuptools",
    "bdist_wheel": "import importlib.util as u; assert u.find_spec('wheel') or u.find_spec('setuptools.command.bdist_wheel')",
}


def _pip_can_build() -> str | None:
    """Why this Python cannot install the package without the network, or None."""
    for what, code in NEEDED.items():
        if subprocess.run([sys.executable, "-c", code], capture_output=True).returncode:
            return f"{what} is not available in this Python"
    return None


def _copy_sources(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_pip_install_target_finds_the_shipped_model_and_icon(tmp_path: Path) -> None:
    why = _pip_can_build()
    if why:
        pytest.skip(f"cannot build the package here: {why}")
    source = _copy_sources(tmp_path / "src")
    target = tmp_path / "target"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*pip, "--target", str(target), str(source)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (target / "share").exists(), "the shipped files are package data now, not data files under share/"
    env = {k: v for k, v in os.environ.items() if k not in ("HV_MODEL", "PYTHONPATH")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(target), found  # the installed copy, not this checkout
    assert Path(found["model"]) == target / "hv_desktop" / "assets" / "model" / "hematovision.onnx"
    assert found["labels"] == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert Path(found["icon"]) == target / "hv_desktop" / "assets" / "icons" / "hematovision.png"
    assert found["icon_ok"]
    installed = {p.relative_to(target).as_posix() for p in (target / "hv_desktop").rglob("*.py")}
    checkout = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hv_desktop").rglob("*.py")}
    assert installed == checkout, "every module of the checkout is installed"


def test_a_checkout_reads_the_shipped_files_from_assets() -> None:
    """A source checkout has no build: the same function reads the repository's assets/, which setup.py maps."""
    assert resources.shipped_model_path() == ROOT / "assets" / "model" / "hematovision.onnx"
    assert resources.app_icon_path() == ROOT / "assets" / "icons" / "hematovision.png"
    assert resources.app_icon_path().is_file()


def test_build_spec_puts_the_shipped_files_where_the_package_finds_them() -> None:
    """The PyInstaller bundle carries them under hv_desktop/assets, the folder importlib.resources reads."""
    spec = (ROOT / "build.spec").read_text(encoding="utf-8")
    for dest in ('"hv_desktop/assets/model"', '"hv_desktop/assets/icons"'):
        assert dest in spec
    assert '"assets/model")' not in spec and '"assets/icons")' not in spec
