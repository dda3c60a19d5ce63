"""Issue 29 item 2: what the window's handlers ask the workspace instead of the window (Qt-free)."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.inference.result import Result
from hv_desktop.core.workspace import Change, Workspace


def _cells(n: int, prefix: str) -> list[Result]:
    return [Result(path=Path(f"/x/{prefix}{i}.png"), label="neutrophil", confidence=0.9) for i in range(n)]


def test_case_results_are_the_current_cases() -> None:
    ws = Workspace()
    ws.new_case("A")
    ws.add_results(_cells(2, "a"))
    ws.new_case("B")
    ws.add_results(_cells(3, "b"))
    assert [r.path.name for r in ws.case_results()] == ["b0.png", "b1.png", "b2.png"]
    ws.choose_case("A")
    assert [r.path.name for r in ws.case_results()] == ["a0.png", "a1.png"]


def test_choosing_a_case_tells_the_listeners_once_and_only_for_a_case_of_the_session() -> None:
    ws = Workspace()
    ws.new_case("A")
    ws.new_case("B")
    told: list[Change] = []
    ws.subscribe(told.append)
    ws.choose_case("A")
    ws.choose_case("A")  # already current: nothing changes, nobody told
    ws.choose_case("no such case")  # refused quietly: the current case stays
    assert [c.kind for c in told] == ["cases"] and ws.review.current == "A"
