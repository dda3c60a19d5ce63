"""The live differential as the window's table shows it, Qt-free: rows of (name, count, percent) and the
review-progress line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hv_desktop.core.result import Result
from hv_desktop.core.export import differential
from hv_desktop.core.review import ReviewClass, reviewed_differential


@dataclass(frozen=True)
class DifferentialView:
    rows: list[tuple[str, str, str]]  # (row name, count, percent or "")
    progress: str  # "Reviewed 3 of 8 cells · 2 still need review"
    total: int  # every result of the case, failed ones included


def differential_view(
    results: Sequence[Result], labels: Sequence[str], extras: Sequence[ReviewClass], reviewed: bool
) -> DifferentialView:
    """By model: the model's classes; by review: white cells as % of white cells in clinical order, and the
    types counted per 100 white cells (NRBC, smudge…) after them."""
    d = differential(results, list(labels), reviewed=reviewed)
    if reviewed:
        rd = reviewed_differential(results, labels, extras)
        rows = [(n.capitalize(), str(c), f"{p:.1f}") for n, c, p in rd.white]
        rows += [(f"{n.capitalize()} /100 WBC", str(c), f"{p:.1f}") for n, c, p in rd.per_100]
    else:
        rows = [(lab.capitalize(), str(n), f"{d.percent(lab):.1f}") for lab, n in d.counts.items()]
    rows.append(("Classified", str(d.classified), ""))
    rows.append(("⚑ Needs review", str(d.flagged), f"{100 * d.flagged / d.classified:.1f}" if d.classified else ""))
    rows.append(("✕ Failed", str(d.failed), ""))
    progress = f"Reviewed {d.reviewed} of {d.classified} cells" + (f" · {d.flagged} still need review" if d.flagged else "")
    return DifferentialView(rows, progress, d.total)
