"""The review rules every face uses (window, report, CSV summary, adaptation): one definition each.

Why here: "still needs review" was written out nine times across the GUI, the report and the export, and the
reason for a flag was shown as a raw number ("typicality 0.42") that means nothing at the bench.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from hv_desktop.core.batch import Result

#: Below this calibrated confidence a flag is called "low confidence"; above it the cell was flagged because it
#: lies far from the training cells in the model's feature space.
LOW_CONFIDENCE = 0.9


def awaiting_review(r: Result) -> bool:
    """Flagged by the model and not yet reviewed by a person."""
    return r.ok and r.needs_review and not r.reviewer_label


def flag_reason(r: Result) -> tuple[str, str]:
    """(a few words a technologist uses, a sentence for the tooltip) for a flagged cell."""
    if (r.confidence or 0.0) < LOW_CONFIDENCE:
        return ("Low confidence",
                f"The model is not sure which class this is (its best guess has {100 * (r.confidence or 0):.0f} %).")
    return ("Unlike the cells the model was trained on",
            "The model names a class, but the cell looks unlike its training cells: possibly a cell of another "
            "type (a basophil, a blast, an erythroblast), an artefact, or another lab's stain or magnification.")


@dataclass(frozen=True)
class ReviewClass:
    """A cell type a reviewer can assign. ``per_100``: counted per 100 white cells, outside the differential's
    total (nucleated red cells, smudge cells, artefacts, platelet clumps), as morphology workstations do."""

    name: str
    key: str
    per_100: bool = False


#: Cell types a reviewer meets beyond the model's classes (stored by name, never by index).
EXTRA_CLASSES = (
    ReviewClass("band neutrophil", "D"),
    ReviewClass("basophil", "B"),
    ReviewClass("immature granulocyte", "G"),
    ReviewClass("blast", "X"),
    ReviewClass("variant lymphocyte", "V"),
    ReviewClass("plasma cell", "P"),
    ReviewClass("unidentified", "U"),
    ReviewClass("nucleated red cell", "R", per_100=True),
    ReviewClass("smudge cell", "S", per_100=True),
    ReviewClass("artefact", "A", per_100=True),
    ReviewClass("platelet clump", "T", per_100=True),
)
#: The order a haematology differential is read in (classes not listed follow, then the per-100 counts).
CLINICAL_ORDER = ("neutrophil", "band neutrophil", "lymphocyte", "variant lymphocyte", "monocyte", "eosinophil",
                  "basophil", "immature granulocyte", "blast", "plasma cell", "unidentified")


def review_classes(model_labels: Sequence[str]) -> list[ReviewClass]:
    """The model's classes (keys 1..n, and the first letter where it is unique), then the extra cell types whose
    key is still free. One definition for the window, its buttons and menu, and the help text."""
    firsts = [lab[:1].upper() for lab in model_labels]
    out = []
    for i, lab in enumerate(model_labels):
        letter = lab[:1].upper() if firsts.count(lab[:1].upper()) == 1 else ""
        out.append(ReviewClass(lab, f"{i + 1}" + (f"/{letter}" if letter else "")))
    taken = {k for c in out for k in c.key.split("/")} | {"F"}  # F: next flagged cell
    names = {lab.lower() for lab in model_labels}
    out += [c for c in EXTRA_CLASSES if c.key not in taken and c.name not in names]
    return out


def key_map(model_labels: Sequence[str]) -> dict[str, str]:
    """Key (as typed, lower case) -> class name."""
    return {k.lower(): c.name for c in review_classes(model_labels) for k in c.key.split("/")}


def is_per_100(name: str) -> bool:
    return any(c.per_100 and c.name == name.lower() for c in EXTRA_CLASSES)


@dataclass
class ReviewedDifferential:
    """By review: white cells as count and % of white cells, in clinical order; the per-100 types apart."""

    white: list[tuple[str, int, float]]  # (class, count, % of white cells)
    per_100: list[tuple[str, int, float]]  # (type, count, per 100 white cells)
    white_total: int
    reviewed: int


def reviewed_differential(results: Iterable[Result], model_labels: Sequence[str]) -> ReviewedDifferential:
    counts: Counter[str] = Counter()
    reviewed = 0
    for r in results:
        if not r.ok:
            continue
        reviewed += bool(r.reviewer_label)
        counts[(r.reviewer_label or r.label or "").strip()] += 1
    white_names = [n for n in counts if n and not is_per_100(n)]
    order = {n: i for i, n in enumerate(CLINICAL_ORDER)}
    white_names = sorted(set(white_names) | set(model_labels), key=lambda n: (order.get(n.lower(), 99), n))
    total = sum(counts[n] for n in white_names)
    white = [(n, counts[n], 100.0 * counts[n] / total if total else 0.0) for n in white_names]
    extra = [c.name for c in EXTRA_CLASSES if c.per_100 and counts[c.name]]
    per = [(n, counts[n], 100.0 * counts[n] / total if total else 0.0) for n in extra]
    return ReviewedDifferential(white, per, total, reviewed)


@dataclass
class SignOff:
    """A case signed off: who, when, and, when flagged cells were left unreviewed, the reason given.

    After sign-off the case is locked (reviews cannot change); unlocking is allowed but recorded in ``audit``."""

    operator: str
    at: str
    override_reason: str = ""
    unreviewed_flagged: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d) -> SignOff | None:
        """A sign-off read back from a session file, type-checked (None when absent or malformed)."""
        if not isinstance(d, dict):
            return None
        try:
            texts = {k: d.get(k, "") for k in ("operator", "at", "override_reason")}
            n = d.get("unreviewed_flagged", 0)
            if not all(isinstance(v, str) and len(v) <= 2000 for v in texts.values()) or not texts["operator"] \
                    or isinstance(n, bool) or not isinstance(n, int) or n < 0:
                return None
            return cls(texts["operator"], texts["at"], texts["override_reason"], n)
        except (TypeError, ValueError):
            return None


def sign_off_blockers(results: Iterable[Result]) -> int:
    """Flagged cells still awaiting review: sign-off needs none, or a reason to override."""
    return sum(1 for r in results if awaiting_review(r))


def sign_off(results: Iterable[Result], operator: str, at: str, override_reason: str = "") -> SignOff:
    """Sign a case off, or ValueError with the reason it cannot be (no operator; unreviewed flagged cells and no
    reason given)."""
    if not operator.strip():
        raise ValueError("give the name of the person signing off")
    left = sign_off_blockers(results)
    if left and not override_reason.strip():
        raise ValueError(f"{left} flagged cell{'s' if left != 1 else ''} not reviewed: review "
                         f"{'them' if left != 1 else 'it'}, or give a reason to sign off anyway")
    return SignOff(operator.strip(), at, override_reason.strip() if left else "", left)


class CaseLocked(Exception):
    """A change was asked of a signed-off case."""


class ReviewSession:
    """The state of a review, Qt-free: results, the reviewer's labels (with undo), sign-off and its audit trail.

    Why: the window used to own this logic; here the GUI, autosave and tests share one implementation. The
    window's table model shows ``results`` (the same list object) and is told which rows changed.
    """

    UNDO_DEPTH = 200

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.signed: SignOff | None = None
        self.audit: list[dict] = []
        self._undo: list[list[tuple[int, str | None]]] = []

    @property
    def locked(self) -> bool:
        return self.signed is not None

    def _check(self) -> None:
        if self.signed is not None:
            raise CaseLocked(f"signed off by {self.signed.operator} at {self.signed.at}")

    def assign(self, index: int, label: str | None) -> None:
        """Set (None: clear) the reviewer's label of results[index]; undoable."""
        self._check()
        r = self.results[index]
        if not r.ok or r.reviewer_label == label:
            return
        self._push([(index, r.reviewer_label)])
        r.reviewer_label = label

    def accept_unflagged(self) -> list[int]:
        """Confirm the model's class for every unflagged, unreviewed cell (one undo step); the indices changed."""
        self._check()
        rows = [i for i, r in enumerate(self.results) if r.ok and not r.needs_review and not r.reviewer_label]
        if rows:
            self._push([(i, None) for i in rows])
            for i in rows:
                self.results[i].reviewer_label = self.results[i].label
        return rows

    def undo(self) -> list[int]:
        """Take back the last review step; the indices it touched ([] when there is nothing to undo)."""
        self._check()
        if not self._undo:
            return []
        step = self._undo.pop()
        for i, previous in step:
            if i < len(self.results):
                self.results[i].reviewer_label = previous
        return [i for i, _ in step]

    def _push(self, step: list[tuple[int, str | None]]) -> None:
        self._undo.append(step)
        del self._undo[:-self.UNDO_DEPTH]

    def awaiting(self) -> int:
        return sign_off_blockers(self.results)

    def sign_off(self, operator: str, at: str, reason: str = "") -> SignOff:
        self._check()
        self.signed = sign_off(self.results, operator, at, reason)
        self.audit.append({"event": "signed off", **self.signed.as_dict()})
        self._undo.clear()  # a signed case's history is the audit, not an undo stack
        return self.signed

    def unlock(self, reason: str, at: str) -> None:
        if self.signed is None:
            return
        if not reason.strip():
            raise ValueError("give a reason: it is kept with the case")
        self.audit.append({"event": "unlocked", "at": at, "reason": reason.strip(),
                           "was_signed_by": self.signed.operator})
        self.signed = None

    def clear(self) -> None:
        self.results.clear()
        self.signed, self.audit = None, []
        self._undo.clear()

    def to_extra(self) -> dict:
        """What the session file keeps besides the results."""
        return {"sign_off": self.signed.as_dict() if self.signed else None, "audit": list(self.audit)}

    def load_extra(self, extra) -> None:
        """The sign-off and audit read back from a session file, type-checked."""
        extra = extra if isinstance(extra, dict) else {}
        self.signed = SignOff.from_dict(extra.get("sign_off"))
        audit = extra.get("audit")
        self.audit = [a for a in audit if isinstance(a, dict)][:1000] if isinstance(audit, list) else []
