"""Which cells to review next at a new lab (issue 27): the ones whose labels would teach a site model most, not
file order. A cell near a class boundary (its two likeliest classes close) says more about where the lab's cells
sit than a confident one, and a cell of a class the case holds few of is rarer to come by: site adaptation needs
enough of every class (hv_desktop.core.site.adapt.MIN_PER_CLASS) and a rare class is the one it runs short of."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from hv_desktop.core.cases.review import reviewable, unreviewed
from hv_desktop.core.inference.result import Result


def class_shares(results: Sequence[Result]) -> dict[str, float]:
    """Each class's share of the classified cells (the reviewer's class where given, else the model's)."""
    counts = Counter((r.reviewer_label or r.label) for r in results if reviewable(r))
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items() if k} if total else {}


def teaching_value(r: Result, shares: Mapping[str, float]) -> float:
    """0 to 2, higher first: how close the two likeliest classes are (1 - their margin), plus how rare the
    model's class is in the case (1 - its share)."""
    p = sorted(r.probabilities.values(), reverse=True)
    margin = p[0] - p[1] if len(p) > 1 else 1.0
    return (1.0 - margin) + (1.0 - shares.get(r.label or "", 0.0))


def review_next(results: Sequence[Result]) -> list[int]:
    """The indices of the classified, unreviewed cells, those whose review would teach most first (ties: file order)."""
    shares = class_shares(results)
    todo = [i for i, r in enumerate(results) if unreviewed(r)]
    return sorted(todo, key=lambda i: -teaching_value(results[i], shares))
