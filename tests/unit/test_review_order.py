"""Issue 27: "review these next": near class boundaries and rare classes first, not file order."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.cases.review_order import review_next
from hv_desktop.core.inference.result import Result


def _cell(i: int, probs: dict[str, float], reviewed: str | None = None) -> Result:
    label = max(probs, key=lambda k: probs[k])
    return Result(Path(f"/c/{i}.png"), label, probs[label], probs, reviewer_label=reviewed)


def test_uncertain_and_rare_cells_come_first_and_reviewed_ones_not_at_all():
    sure_neut = {"eosinophil": 0.01, "lymphocyte": 0.01, "monocyte": 0.01, "neutrophil": 0.97}
    torn = {"eosinophil": 0.02, "lymphocyte": 0.45, "monocyte": 0.50, "neutrophil": 0.03}
    rare_sure = {"eosinophil": 0.97, "lymphocyte": 0.01, "monocyte": 0.01, "neutrophil": 0.01}
    cells = [_cell(i, sure_neut) for i in range(6)]
    cells += [_cell(6, rare_sure), _cell(7, torn), _cell(8, sure_neut, reviewed="neutrophil")]
    cells.append(Result(Path("/c/bad.png"), error="unreadable"))
    order = review_next(cells)
    assert order[:2] == [7, 6]  # the torn monocyte/lymphocyte, then the one eosinophil
    assert set(order) == set(range(8))  # every classified, unreviewed cell; no reviewed or failed one
