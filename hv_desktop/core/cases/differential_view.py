"""The live differential as the window's table shows it, Qt-free: its columns, rows of (name, cells…), how many
leading rows must always be visible, and the review-progress line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hv_desktop.core.cases.differential import Differential, counted, differential
from hv_desktop.core.cases.review import ReviewClass
from hv_desktop.core.cases.reviewed_differential import reviewed_differential
from hv_desktop.core.inference.result import Result

BY_MODEL_COLUMNS = ("Count", "%")
#: by review, an unreviewed cell counts under the model's class: the third column says how many of a count those are
BY_REVIEW_COLUMNS = ("Count", "%", "Unreviewed")
#: the same in words, where the window explains the column
UNREVIEWED_NOTE = "Of each count, the cells nobody has reviewed yet: by review they are counted as the model's class."
WBC_TOTAL = "White cells (WBC)"


@dataclass(frozen=True)
class DifferentialView:
    rows: list[tuple[str, ...]]  # (row name, one text per column)
    progress: str  # "Reviewed 3 of 8 cells · 2 still need review"
    total: int  # every result of the case, failed ones included
    columns: tuple[str, ...] = BY_MODEL_COLUMNS
    #: the leading rows a reader needs whole (every class, the total, the per-100 types): never scrolled away
    essential: int = 0
    note: str = ""  # by review with cells not yet reviewed: how those are counted
    source: str = ""  # camera fields: how many cells from how many fields, and the edge cells left out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def source_line(d: Differential) -> str:
    """Where the counted cells came from, for camera fields (issue 28): "12 cells from 5 fields · 2 edge cells
    left out · 1 field with no white cell"; "" for single-cell images only."""
    if not d.cells:
        return ""
    parts = [f"{_plural(d.field_cells, 'cell')} from {_plural(d.fields, 'field')}"]
    if d.classified > d.field_cells:
        parts[0] += f" + {_plural(d.classified - d.field_cells, 'single-cell image')}"
    if d.edge_cells:
        parts.append(f"{_plural(d.edge_cells, 'edge cell')} {'counted' if d.edge_counted else 'left out'}")
    if d.no_cell:
        parts.append(f"{_plural(d.no_cell, 'field')} with no white cell")
    return " · ".join(parts)


def differential_view(
    results: Sequence[Result],
    labels: Sequence[str],
    extras: Sequence[ReviewClass],
    reviewed: bool,
    count_edge: bool = False,
) -> DifferentialView:
    """By model: the model's classes and the cells classified (their total). By review: white cells as % of white
    cells in clinical order with how many of each are still the model's call, the white-cell total, and the types
    counted per 100 white cells (NRBC, smudge…) after them. Then the flagged and failed counts. A camera field's
    cells at its border are left out unless ``count_edge``, and its rows with no white cell are no class."""
    d = differential(results, list(labels), reviewed=reviewed, count_edge=count_edge)
    rows: list[tuple[str, ...]]
    columns: tuple[str, ...]
    if reviewed:
        rd = reviewed_differential([r for r in results if counted(r, count_edge)], labels, extras)
        left = rd.unreviewed
        rows = [(n.capitalize(), str(c), f"{p:.1f}", str(left.get(n, 0))) for n, c, p in rd.white]
        rows.append((WBC_TOTAL, str(rd.white_total), "100.0" if rd.white_total else "", str(rd.unreviewed_white)))
        rows += [(f"{n.capitalize()} /100 WBC", str(c), f"{p:.1f}", str(left.get(n, 0))) for n, c, p in rd.per_100]
        columns = BY_REVIEW_COLUMNS
    else:
        rows = [(lab.capitalize(), str(n), f"{d.percent(lab):.1f}") for lab, n in d.counts.items()]
        rows.append(("Classified", str(d.classified), ""))
        columns = BY_MODEL_COLUMNS
    essential = len(rows)
    pad = ("",) * (len(columns) - 2)
    rows.append(("⚑ Needs review", str(d.flagged), f"{100 * d.flagged / d.classified:.1f}" if d.classified else "", *pad))
    rows.append(("✕ Failed", str(d.failed), "", *pad))
    progress = f"Reviewed {d.reviewed} of {d.classified} cells" + (f" · {d.flagged} still need review" if d.flagged else "")
    note = "unreviewed cells count as the model's class" if reviewed and d.classified > d.reviewed else ""
    return DifferentialView(rows, progress, d.total, columns, essential, note, source_line(d))
