"""training.analysis: each research tool is a `python -m` command with main() that does nothing on import."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import training.analysis

TOOLS = sorted(m.name for m in pkgutil.iter_modules(training.analysis.__path__))


def test_the_tools():
    assert {"adapt_benchmark", "adabn_probe", "fit_temperature_on_validation", "magnification_probe"} <= set(TOOLS)
    assert {"multilayer_review", "photo_copies"} <= set(TOOLS)


@pytest.mark.parametrize("name", TOOLS)
def test_a_tool_imports_quietly_and_answers_help(name, capsys):
    """Importing runs nothing (a test may import a tool's functions); the command line is main()."""
    module = importlib.import_module(f"training.analysis.{name}")
    assert capsys.readouterr().out == ""  # no work at import time
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
