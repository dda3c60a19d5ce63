"""The differential by review: each white cell counted under the reviewer's class (the model's where nobody has
reviewed it yet, and said so), in the order a haematology differential is read, the per-100 types apart.

Why its own module: the window's differential table, the report and the CSV summary read the same counts; the
rules of review themselves (:mod:`hv_desktop.core.cases.review`) need none of this.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hv_desktop.core.cases.review import EXTRA_CLASSES, ReviewClass, is_per_100
from hv_desktop.core.inference.result import Result

#: The order a haematology differential is read in (classes not listed follow, then the per-100 counts).
CLINICAL_ORDER = (
    "neutrophil",
    "band neutrophil",
    "lymphocyte",
    "variant lymphocyte",
    "monocyte",
    "eosinophil",
    "basophil",
    "immature granulocyte",
    "blast",
    "plasma cell",
    "unidentified",
)


@dataclass
class ReviewedDifferential:
    """By review: white cells as count and % of white cells, in clinical order; the per-100 types apart."""

    white: list[tuple[str, int, float]]  # (class, count, % of white cells)
    per_100: list[tuple[str, int, float]]  # (type, count, per 100 white cells)
    white_total: int
    reviewed: int
    #: per class, the cells counted under the model's class because nobody has reviewed them yet: by review, a
    #: count is only the reviewer's where this is 0, and the table has to say so (issue 30)
    unreviewed: dict[str, int] = field(default_factory=dict)

    @property
    def unreviewed_white(self) -> int:
        """Of ``white_total``, the cells that still carry only the model's class."""
        return sum(self.unreviewed.get(n, 0) for n, _, _ in self.white)


def reviewed_differential(
    results: Iterable[Result], model_labels: Sequence[str], extras: Sequence[ReviewClass] | None = None
) -> ReviewedDifferential:
    counts: Counter[str] = Counter()
    unreviewed: Counter[str] = Counter()
    reviewed = 0
    for r in results:
        if not r.ok:
            continue
        reviewed += bool(r.reviewer_label)
        counts[(r.reviewer_label or r.label or "").strip()] += 1
        if not r.reviewer_label:
            unreviewed[(r.label or "").strip()] += 1
    white_names = [n for n in counts if n and not is_per_100(n, extras)]
    order = {n: i for i, n in enumerate(CLINICAL_ORDER)}
    white_names = sorted(set(white_names) | set(model_labels), key=lambda n: (order.get(n.lower(), 99), n))
    total = sum(counts[n] for n in white_names)
    white = [(n, counts[n], 100.0 * counts[n] / total if total else 0.0) for n in white_names]
    extra = [c.name for c in (EXTRA_CLASSES if extras is None else extras) if c.per_100 and counts[c.name]]
    per = [(n, counts[n], 100.0 * counts[n] / total if total else 0.0) for n in extra]
    return ReviewedDifferential(white, per, total, reviewed, {n: k for n, k in unreviewed.items() if n})
