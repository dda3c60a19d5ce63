"""When a site model may leave cells unflagged: only when the lab's own reviewed cells show, with confidence, that
the cells it would leave unflagged are right (issue 27).

Why: adapted from 10 reviewed cells per class, site models at two labs the project had never seen left a third of
their unflagged cells wrong (66 and 73 % right) while lowering the flags to 33-40 %; a busy technologist skims
what is not flagged. The rule: the cells the site model leaves unflagged, each scored by a fit that did not see
it (cross-validated), must be right with a lower 95 % confidence bound (Wilson) of at least :data:`UNFLAG_BOUND`.
Where they are not, the site model flags every cell (review threshold :data:`~hv_desktop.core.inference.metadata.FLAG_ALL`)
and says how many more reviewed cells would be needed. The arithmetic is strict on purpose: even 40 of 40 right
gives a bound of 91 %, so about 125 unflagged cells, all right, are needed before anything is unflagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hv_desktop.core.inference.metadata import FLAG_ALL

#: the lower confidence bound the unflagged cells' accuracy must reach
UNFLAG_BOUND = 0.97
#: 95 % two-sided (the lower bound is then 97.5 % one-sided)
WILSON_Z = 1.96


def wilson_lower(correct: int, n: int, z: float = WILSON_Z) -> float:
    """The Wilson score interval's lower end for ``correct`` of ``n`` (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def wilson_interval(correct: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson 95 % interval of an accuracy of ``correct`` of ``n`` ((0, 1) when n is 0): how uncertain an
    estimate from a few dozen reviewed cells is, said beside it."""
    if n <= 0:
        return 0.0, 1.0
    low = wilson_lower(correct, n, z)
    high = 1.0 - wilson_lower(n - correct, n, z)
    return low, high


def cells_needed(accuracy: float, bound: float = UNFLAG_BOUND, most: int = 100_000) -> int | None:
    """How many unflagged cells at ``accuracy`` would put the lower bound at ``bound`` (None: none would, the
    accuracy itself is too low)."""
    if accuracy <= bound:
        return None
    lo, hi = 1, most
    if wilson_lower(round(accuracy * hi), hi) < bound:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if wilson_lower(round(accuracy * mid), mid) >= bound:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class UnflagCheck:
    """What the reviewed cells show about the cells a site model would leave unflagged."""

    verified: bool
    unflagged: int  # reviewed cells the site model would leave unflagged (cross-validated)
    correct: int  # of those, right
    lower: float  # the Wilson lower bound of their accuracy
    message: str
    threshold: float = float("nan")  # the site model's review threshold where verified (chosen); else the base one

    def as_dict(self) -> dict:
        return {
            "verified": self.verified,
            "unflagged": self.unflagged,
            "correct": self.correct,
            "lower_bound": round(self.lower, 4),
            "bound_needed": UNFLAG_BOUND,
            "threshold": round(self.threshold, 6),
        }


def choose_threshold(y: np.ndarray, pred: np.ndarray, review_values: np.ndarray, threshold: float) -> float | None:
    """The lowest review threshold, not below ``threshold``, at which the reviewed cells it would leave unflagged
    are right with a Wilson lower bound of at least :data:`UNFLAG_BOUND`; None where none is
    (docs/research/rules/adapt_choose_threshold.txt).

    Why: checking only the base model's threshold kept every cell flagged at a lab whose reviewed cells were 95 %
    right overall, however many were reviewed, though its most typical cells were right far more often. Raising
    the threshold only ever flags more, so what the base rule flags (unusual cells included) stays flagged.
    """
    if not 0.0 <= threshold < FLAG_ALL:
        return None  # NaN, or a base that flags every cell: nothing to raise from
    at_base = review_values >= threshold  # as needs_review leaves them (a value that is not a number compares false)
    if wilson_lower(int((pred[at_base] == y[at_base]).sum()), int(at_base.sum())) >= UNFLAG_BOUND:
        return threshold
    order = np.argsort(-review_values, kind="stable")  # most typical first, values that are not numbers last
    values = review_values[order]
    right = np.cumsum(pred[order] == y[order])
    for i in range(len(values) - 1, -1, -1):  # from the most cells unflagged to the fewest
        if not threshold <= values[i] < FLAG_ALL or (i + 1 < len(values) and values[i + 1] == values[i]):
            continue  # below the base rule, at FLAG_ALL (flags every cell), not a number, or inside a tie
        if wilson_lower(int(right[i]), i + 1) >= UNFLAG_BOUND:
            return float(values[i])
    return None


def unflag_check(
    y: np.ndarray, pred: np.ndarray, review_values: np.ndarray, threshold: float, labels: Sequence[str]
) -> UnflagCheck:
    """The rule above, on the lab's reviewed cells of the model's classes: ``y`` their classes, ``pred`` and
    ``review_values`` from fits that did not see them, ``threshold`` the site model's (base) review threshold.
    Where the cells it leaves unflagged miss the bound, a stricter threshold is chosen (:func:`choose_threshold`)."""
    chosen = choose_threshold(y, pred, review_values, threshold)
    unflagged = review_values >= (threshold if chosen is None else chosen)  # as needs_review leaves them
    n = int(unflagged.sum())
    correct = int((pred[unflagged] == y[unflagged]).sum())
    lower = wilson_lower(correct, n)
    if chosen is not None:
        at_base = int((review_values >= threshold).sum())
        raised = (
            f"; {at_base - n} more reviewed cells stay flagged than the model's own rule would flag: those least like "
            f"the cells here that were right (review threshold {threshold:.4g} -> {chosen:.4g})"
            if n < at_base
            else ""
        )
        message = f"unflagged cells verified: {correct} of {n} right (at least {lower:.0%}){raised}"
        return UnflagCheck(True, n, correct, lower, message, chosen)
    return UnflagCheck(False, n, correct, lower, _advice(y, pred, unflagged, n, correct, labels), threshold)


def _advice(y: np.ndarray, pred: np.ndarray, unflagged: np.ndarray, n: int, correct: int, labels: Sequence[str]) -> str:
    """Why every cell stays flagged, and what to review next, in a technologist's words."""
    head = "not enough reviewed cells to trust unflagged results yet, so every cell stays flagged"
    if len(y) == 0:
        return head
    recall = {c: float(np.mean(pred[y == c] == c)) for c in np.unique(y)}
    count = {c: int(np.sum(y == c)) for c in np.unique(y)}
    weakest = min(recall, key=lambda c: (recall[c], count[c]))
    mainly = f"mainly {labels[weakest]}s" if 0 <= weakest < len(labels) else "of every class"
    accuracy = correct / n if n else float(np.mean(pred == y)) if len(y) else 0.0
    needed = cells_needed(max(accuracy, 1e-9))
    if needed is None:
        return (
            f"{head}: of the cells it would leave unflagged, {correct} of {n} were right ({accuracy:.0%}); "
            f"the site model is not yet reliable enough here: review more cells, {mainly}, and adapt again"
        )
    more = max(needed - n, 1)
    share = max(n / max(len(y), 1), 0.05)
    return f"{head} ({correct} of {n} right so far): review about {math.ceil(more / share)} more cells, {mainly}, and adapt again"
