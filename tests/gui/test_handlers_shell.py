"""Issue 29 item 2: the window's handlers work on the workspace and a small shell, not on MainWindow; the window
follows the workspace's changes; the test aliases are gone; no import circle in hv_desktop.gui."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pytestqt.qtbot import QtBot

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from hv_desktop.core.inference.result import Result  # noqa: E402
from hv_desktop.core.workspace import Change, Workspace  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.results_model import ResultsModel  # noqa: E402
from hv_desktop.gui.results_pane import ResultsPane  # noqa: E402
from hv_desktop.gui.review_actions import ReviewActions  # noqa: E402
from hv_desktop.gui.runner import Runner  # noqa: E402

GUI = "hv_desktop.gui"
ALIASES: tuple[str, ...] = ("table", "gallery", "proxy", "tabs", "class_combo", "state_combo", "case_combo")
ALIASES += ("preview_title", "preview_scroll", "heat_box", "heat_opacity", "cell_zoom", "diff_mode")
ALIASES += ("review_progress", "sign_label", "progress", "cancel_button")


class StubShell:
    """A shell that is not a window: what a handler may ask, and nothing more."""

    def __init__(self, tmp: Path) -> None:
        self.widget = QWidget()
        self.settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        self.said: list[str] = []
        self.folder = tmp
        self.recent: list[Path] = []

    def status(self, message: str, ms: int = 5000) -> None:
        self.said.append(message)

    def dialog_parent(self) -> QWidget:
        return self.widget

    def last_dir(self) -> str:
        return str(self.folder)

    def remember_recent(self, folder: Path) -> None:
        self.recent.append(folder)

    def current_result(self) -> Result | None:
        return None

    def data_folder(self) -> Path:
        return self.folder


def _graph() -> Any:
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("hv_desktop")


def test_no_gui_module_but_the_app_imports_the_window() -> None:
    g = _graph()
    importers = g.find_modules_that_directly_import("hv_desktop.gui.main_window")
    assert importers == {"hv_desktop.gui.app"}


def test_no_import_circle_in_gui() -> None:
    g = _graph()
    mods = sorted(m for m in g.modules if m.startswith(GUI))
    circles = [(a, b) for a in mods for b in mods if a < b and g.chain_exists(a, b) and g.chain_exists(b, a)]
    assert circles == []


def test_runner_works_on_a_workspace_and_a_shell_without_a_window(qtbot: QtBot, tmp_path: Path, tiny_model_path: Path) -> None:
    workspace, shell = Workspace(), StubShell(tmp_path)
    qtbot.addWidget(shell.widget)
    told: list[Change] = []
    workspace.subscribe(told.append)
    runner = Runner(workspace, shell)
    assert runner.load_model(tiny_model_path) and workspace.model is not None
    assert [c.kind for c in told] == ["model"] and "tiny" in runner.model_label.text().lower()
    assert not runner.load_model(tmp_path / "missing.onnx", quiet=True)  # refused: said on the shell's status line
    assert workspace.model is not None and shell.said[-1].startswith("No model")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (24, 24), (200, 10 * i, 10)).save(folder / f"c{i}.png")
    with qtbot.waitSignal(runner.runFinished, timeout=30000):
        runner.classify([folder])
    assert len(workspace.results) == 3 and shell.recent == [folder]
    assert "added" in [c.kind for c in told] and workspace.review.current


def test_review_actions_work_on_a_workspace_and_a_shell_without_a_window(qtbot: QtBot, tmp_path: Path) -> None:
    workspace, shell = Workspace(), StubShell(tmp_path)
    results = ResultsModel()
    results.results = workspace.results
    workspace.append_rows = results.append
    pane = ResultsPane(results)
    qtbot.addWidget(pane)
    qtbot.addWidget(shell.widget)
    edited: list[bool] = []
    reviewing = ReviewActions(workspace, shell, pane, lambda: edited.append(True))
    assert reviewing.new_case("S-1", ask=False) == "S-1"
    workspace.add_results([Result(path=Path(f"/x/c{i}.png"), label="neutrophil", confidence=0.9) for i in range(2)])
    pane.select_source_row(0)
    reviewing.assign_current("monocyte")
    assert workspace.results[0].reviewer_label == "monocyte"
    assert reviewing.sign_off("A. Tech", "") and workspace.review.signed is not None
    assert shell.settings.value("operator") == "A. Tech"
    pane.select_source_row(1)
    reviewing.assign_current("eosinophil")  # locked: said on the status line, nothing changes
    assert workspace.results[1].reviewer_label is None and "signed off by A. Tech" in shell.said[-1]
    assert reviewing.edit_cell_types("Blast, B") and edited == [True]


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, tiny_model_path: Path) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=tmp_path / "autosave.json")
    qtbot.addWidget(w)
    w.ask_case = lambda name: "add"  # type: ignore[method-assign]
    yield w


def test_the_window_has_no_test_aliases(window: MainWindow) -> None:
    assert [name for name in ALIASES if hasattr(window, name)] == []


def test_the_window_follows_the_workspace(window: MainWindow, tmp_path: Path) -> None:
    """A change made on the workspace alone (no window call) shows: the table, the differential, the sign-off."""
    ws = window.workspace
    ws.new_case("S-9")
    assert window.results_pane.case_combo.currentData() == "S-9"
    ws.add_results([Result(path=tmp_path / f"c{i}.png", label="neutrophil", confidence=0.9) for i in range(3)])
    assert window.results.rowCount() == 3 and window.commands.export.isEnabled()
    ws.assign(0, "monocyte")
    window.differential_pane.diff_mode.setCurrentIndex(1)  # by review
    assert window.differential_pane.review_progress.text().startswith("Reviewed 1 of 3 cells")
    ws.sign_off("A. Tech", "2026-01-01T10:00")
    assert window.differential_pane.sign_label.isVisibleTo(window) and not window.commands.sign.isEnabled()
