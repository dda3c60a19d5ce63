"""The differential: cells counted per class (by the model, or as reviewed), with how many are awaiting review,
flagged, unreadable or at the image edge. One definition, used by the CSV summary, the window and the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hv_desktop.core.cases.review import awaiting_review
from hv_desktop.core.inference.result import Result


@dataclass
class Differential:
    """Counts per class over classified cells, plus flagged and failed files; for camera fields (issue 28) also
    the cells at the edge (left out unless ``edge_counted``), the fields the counted cells came from, the fields
    with no white cell and the files looked at."""

    counts: dict[str, int]
    classified: int
    flagged: int
    failed: int
    reviewed: int
    cells: bool = False  # rows are a field's cells (core.inference.fields), not one cell per file
    edge_cells: int = 0
    edge_counted: bool = False
    fields: int = 0
    no_cell: int = 0
    files: int = 0
    field_cells: int = 0  # of ``classified``, the cells found in camera fields (the rest: single-cell images)

    @property
    def total(self) -> int:
        return self.classified + self.failed

    def percent(self, label: str) -> float:
        return 100.0 * self.counts.get(label, 0) / self.classified if self.classified else 0.0


def counted(r: Result, count_edge: bool = False) -> bool:
    """Whether ``r`` is a cell of the differential: classified, a white cell, and not cut by the field's border
    unless ``count_edge`` (the one rule; :class:`Tally` and the by-review view both ask it)."""
    return r.ok and not r.no_cell and (count_edge or not r.cell_at_edge)


class Tally:
    """Running differential, so a 100,000-file run needs no list of results.

    The counting rule for camera fields lives here, for every face: a cell the field's border cuts is left out
    unless ``count_edge`` (a manual count skips it too); a field with no white cell is no class and no failure.
    """

    def __init__(self, labels: Sequence[str], reviewed: bool = False, count_edge: bool = False) -> None:
        self.labels, self.reviewed, self.count_edge = list(labels), reviewed, count_edge
        self.counts: Counter[str] = Counter()
        self.classified = self.flagged = self.failed = self.n_reviewed = 0
        self.edge_cells = self.no_cell = self.field_cells = 0
        self._fields: set[Path] = set()  # files that gave a cell row or a no-cell row
        self._counted: set[Path] = set()  # files whose cells were counted

    def add(self, r: Result) -> None:
        if r.cell_index is not None or r.no_cell:
            self._fields.add(r.path)
        if not r.ok:
            self.failed += 1
            return
        if r.no_cell:
            self.no_cell += 1
            return
        self.edge_cells += r.cell_at_edge
        if not counted(r, self.count_edge):
            return
        if r.cell_index is not None:
            self._counted.add(r.path)
            self.field_cells += 1
        self.classified += 1
        if r.reviewer_label:
            self.n_reviewed += 1
        label = (r.reviewer_label or r.label) if self.reviewed else r.label
        self.counts[label or ""] += 1
        if awaiting_review(r):
            self.flagged += 1

    def result(self) -> Differential:
        ordered = {lab: self.counts.get(lab, 0) for lab in self.labels}
        for lab, n in self.counts.items():  # reviewer labels outside the model's classes
            if lab not in ordered:
                ordered[lab] = n
        cells = bool(self._fields)
        return Differential(
            ordered,
            self.classified,
            self.flagged,
            self.failed,
            self.n_reviewed,
            cells,
            self.edge_cells,
            self.count_edge,
            len(self._counted),
            self.no_cell,
            len(self._fields) + self.failed if cells else self.classified + self.failed,
            self.field_cells,
        )


def differential(
    results: Iterable[Result], labels: Sequence[str], reviewed: bool = False, count_edge: bool = False
) -> Differential:
    """The white-cell differential; ``reviewed=True`` counts the reviewer's label where set; ``count_edge``
    counts the cells a field's border cuts too."""
    tally = Tally(labels, reviewed, count_edge)
    for r in results:
        tally.add(r)
    return tally.result()
