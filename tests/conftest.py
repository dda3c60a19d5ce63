from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from onnx_factory import tiny_model  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def process_settings():
    """The process-wide settings every entry point applies at start-up (Pillow's limits, glibc's buffers)."""
    from hv_desktop.core.runtime import configure_process

    return configure_process()


def shared_root() -> Path:
    return Path(os.environ.get("HV_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; missing data fails under CI=true instead of silently skipping."""
    data = shared_root() / "data"
    if not data.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data not found at {data} (CI must have ../shared beside the repo)")
        pytest.skip(f"real data not found at {data}")
    return data


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    path = ROOT / "assets" / "model" / "hematovision.onnx"
    assert path.is_file(), "the shipped model assets/model/hematovision.onnx is missing"
    return path


def solid(path: Path, color, size=(40, 30), fmt=None, mode="RGB") -> Path:
    Image.new(mode, size, color).save(path, fmt)
    return path


def noise_image(path: Path, seed: int = 0, size=(64, 48)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path
