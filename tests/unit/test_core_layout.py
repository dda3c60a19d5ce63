"""The package's shape (issue 29): no import circle between its modules; every module <= 500 lines, every function <= 60.

Why: adapt imported calibrate (its nucleus ruler), which imported adapt back (the site-model file, the image
reader); adapt.py held image reading, ONNX graph edits, fitting and metadata in 927 lines, and review.py and
package.py had grown past 500.
"""

from __future__ import annotations

import ast

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "hv_desktop"


def test_no_import_circle_inside_the_package():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("hv_desktop")
    modules = sorted(m for m in graph.modules if m.startswith("hv_desktop."))
    circles = [
        (a, b)
        for a in modules
        for b in sorted(graph.find_modules_directly_imported_by(a))
        if b.startswith("hv_desktop.") and b != a and graph.find_shortest_chain(b, a)
    ]
    assert circles == []
    assert graph.find_shortest_chain("hv_desktop.core.site.calibrate", "hv_desktop.core.site.adapt") is None
    assert graph.find_shortest_chain("hv_desktop.core.site.adapt", "hv_desktop.core.site.calibrate") is None


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            too_long.append((str(path.relative_to(PACKAGE)), text.count("\n")))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 60:
                    too_long.append((f"{path.relative_to(PACKAGE)}:{node.name}", lines))
    assert too_long == []
