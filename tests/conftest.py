"""Fixtures every test may use, and the layout rule: tests/unit needs neither Qt nor data, tests/gui needs Qt,
tests/realdata reads ../shared/data (and is marked realdata), tests/robustness is the hostile-input suite (Qt
allowed, no data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.onnx_factory import tiny_model

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TESTS = Path(__file__).resolve().parent
#: folder -> fixtures its tests may not use, and why
LAYOUT = {
    "unit": {"qtbot": "needs Qt: tests/gui", "qapp": "needs Qt: tests/gui", "shared_data": "reads ../shared: tests/realdata"},
    "gui": {"shared_data": "reads ../shared: tests/realdata"},
    "robustness": {"shared_data": "reads ../shared: tests/realdata"},
    "realdata": {},
}


@pytest.fixture(scope="session", autouse=True)
def process_settings():
    """The process-wide settings every entry point applies at start-up (Pillow's limits, glibc's buffers)."""
    from hv_desktop.core.system.runtime import configure_process

    return configure_process()


def shared_root() -> Path:
    return Path(os.environ.get("HV_SHARED", ROOT.parent / "shared"))


@pytest.hookimpl(tryfirst=True)  # before -m selects on the realdata marker
def pytest_collection_modifyitems(items):
    misplaced = []
    for item in items:
        path = Path(item.path).resolve()
        folder = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if folder not in LAYOUT:
            misplaced.append(f"{item.nodeid}: a test module belongs in tests/{{{','.join(LAYOUT)}}}/")
            continue
        if folder == "realdata":
            item.add_marker(pytest.mark.realdata)
        misplaced += [f"{item.nodeid}: {why}" for name, why in LAYOUT[folder].items() if name in item.fixturenames]
    if misplaced:
        raise pytest.UsageError("tests in the wrong folder:\n" + "\n".join(sorted(set(misplaced))))


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
