"""The review rules every face uses (window, report, CSV summary, adaptation): one definition each.

Why here: "still needs review" was written out nine times across the GUI, the report and the export, and the
reason for a flag was shown as a raw number ("typicality 0.42") that means nothing at the bench.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hv_desktop.core.inference.result import Result


def reviewable(r: Result) -> bool:
    """A cell a person can review: classified, and a white cell (a camera field's "no white cell" row has no
    class to confirm: it never awaits review, is never counted and is never listed as unreviewed)."""
    return r.ok and not r.no_cell


def unreviewed(r: Result) -> bool:
    """A cell nobody has reviewed yet (Show ▸ Unreviewed, Review next, Accept unflagged)."""
    return reviewable(r) and not r.reviewer_label


def awaiting_review(r: Result) -> bool:
    """Flagged by the model and not yet reviewed by a person."""
    return unreviewed(r) and r.needs_review


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


def review_classes(model_labels: Sequence[str], extras: Sequence[ReviewClass] | None = None) -> list[ReviewClass]:
    """The model's classes (keys 1..n, and the first letter where it is unique), then the extra cell types
    (``extras``: the lab's list from preferences; default EXTRA_CLASSES) whose key is still free. One definition
    for the window, its buttons and menu, and the help text."""
    firsts = [lab[:1].upper() for lab in model_labels]
    out = []
    for i, lab in enumerate(model_labels):
        letter = lab[:1].upper() if firsts.count(lab[:1].upper()) == 1 else ""
        out.append(ReviewClass(lab, f"{i + 1}" + (f"/{letter}" if letter else "")))
    taken = {k for c in out for k in c.key.split("/")} | {"F"}  # F: next flagged cell
    names = {lab.lower() for lab in model_labels}
    out += [c for c in (EXTRA_CLASSES if extras is None else extras) if c.key not in taken and c.name not in names]
    return out


def key_map(model_labels: Sequence[str], extras: Sequence[ReviewClass] | None = None) -> dict[str, str]:
    """Key (as typed, lower case) -> class name."""
    return {k.lower(): c.name for c in review_classes(model_labels, extras) for k in c.key.split("/")}


def is_per_100(name: str, extras: Sequence[ReviewClass] | None = None) -> bool:
    return any(c.per_100 and c.name == name.lower() for c in (EXTRA_CLASSES if extras is None else extras))


def format_extra_classes(extras: Sequence[ReviewClass]) -> str:
    """The editable text of a list of cell types: one per line, "name, KEY" and ", per 100" where it applies."""
    return "\n".join(f"{c.name}, {c.key}" + (", per 100" if c.per_100 else "") for c in extras)


def parse_extra_classes(text: str, model_labels: Sequence[str] = ()) -> list[ReviewClass]:
    """The lab's list of further cell types, checked: ValueError naming the line that is wrong."""
    taken = {k for c in review_classes(model_labels, []) for k in c.key.split("/")} | {"F"}
    out: list[ReviewClass] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in (2, 3) or not parts[0] or len(parts[0]) > 40:
            raise ValueError(f"line {n}: write 'name, KEY' or 'name, KEY, per 100'")
        name, key = parts[0].lower(), parts[1].upper()
        if len(key) != 1 or not key.isalpha():
            raise ValueError(f"line {n}: the key must be one letter")
        if key in taken or any(c.key == key for c in out):
            raise ValueError(f"line {n}: the key {key} is already used")
        if name in (lab.lower() for lab in model_labels) or any(c.name == name for c in out):
            raise ValueError(f"line {n}: '{name}' is already in the list")
        if len(parts) == 3 and parts[2].lower().replace(" ", "") != "per100":
            raise ValueError(f"line {n}: the third part can only be 'per 100'")
        out.append(ReviewClass(name, key, per_100=len(parts) == 3))
    return out


#: Limits on what a person types, enforced when it enters (dialog, CLI, package) and matched by the loader, so a
#: restore never drops what the app let in (issue 30).
MAX_CASE_ID = 200
MAX_NOTE = 4000
MAX_NAME = 200
MAX_REASON = 2000
MAX_CASES = 10_000


def check_text(what: str, text: str, limit: int) -> str:
    """``text`` stripped, or ValueError naming the limit (the one check dialogs, CLI and packages share)."""
    if len(text) > limit:
        raise ValueError(f"the {what} is {len(text):,} characters long; at most {limit:,} are kept with a case")
    return text.strip()


@dataclass
class SignOff:
    """A case signed off: who, when, and, when flagged cells were left unreviewed, the reason given.

    After sign-off the case is locked (reviews cannot change); unlocking is allowed but recorded in ``audit``."""

    operator: str
    at: str
    override_reason: str = ""
    unreviewed_flagged: int = 0
    #: the lab's further cell types when it was signed (format_extra_classes): its differential stays as signed
    #: when the preferences change later (issue 30)
    cell_types: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: object) -> SignOff | None:
        """A sign-off read back from a session file, type-checked (None when absent or malformed)."""
        if not isinstance(d, dict):
            return None
        try:
            texts = {k: d.get(k, "") for k in ("operator", "at", "override_reason")}
            n = d.get("unreviewed_flagged", 0)
            types = d.get("cell_types", "")
            if (
                not all(isinstance(v, str) for v in texts.values())  # no length cut: see MAX_REASON
                or not texts["operator"]
                or isinstance(n, bool)
                or not isinstance(n, int)
                or n < 0
                or not isinstance(types, str)
            ):
                return None
            return cls(texts["operator"], texts["at"], texts["override_reason"], n, types)
        except (TypeError, ValueError):
            return None


def next_awaiting(shown: Sequence[Result], after: int) -> int | None:
    """Review navigation: the position in ``shown`` (the rows as the view lists them) of the first cell after
    ``after`` that awaits review, wrapping around; None when none is left."""
    n = len(shown)
    for k in range(n):
        row = (after + 1 + k) % n
        if awaiting_review(shown[row]):
            return row
    return None


def sign_off_blockers(results: Iterable[Result]) -> int:
    """Flagged cells still awaiting review: sign-off needs none, or a reason to override."""
    return sum(1 for r in results if awaiting_review(r))


def sign_off(results: Iterable[Result], operator: str, at: str, override_reason: str = "", cell_types: str = "") -> SignOff:
    """Sign a case off, or ValueError with the reason it cannot be (no operator; unreviewed flagged cells and no
    reason given)."""
    if not operator.strip():
        raise ValueError("give the name of the person signing off")
    check_text("name", operator, MAX_NAME)
    check_text("reason", override_reason, MAX_REASON)
    left = sign_off_blockers(results)
    if left and not override_reason.strip():
        raise ValueError(
            f"{left} flagged cell{'s' if left != 1 else ''} not reviewed: review "
            f"{'them' if left != 1 else 'it'}, or give a reason to sign off anyway"
        )
    return SignOff(operator.strip(), at, override_reason.strip() if left else "", left, cell_types)


#: What a model's classification sets on a result (a re-classification replaces these and nothing else).
RECLASSIFIED_FIELDS = (
    "label",
    "confidence",
    "probabilities",
    "needs_review",
    "typicality",
    "error",
    "timestamp",
    "model_name",
    "model_version",
)


class CaseLocked(Exception):
    """A change was asked of a signed-off case."""


@dataclass
class CaseInfo:
    """A sample under review: its ID, who reviews it, a note."""

    case_id: str
    operator: str = ""
    note: str = ""

    @classmethod
    def from_dict(cls, d: object) -> CaseInfo | None:
        if not isinstance(d, dict):
            return None
        vals = [d.get(k, "") for k in ("case_id", "operator", "note")]
        if not all(isinstance(v, str) for v in vals) or not vals[0]:  # no length cut: limits apply on entry
            return None
        return cls(*vals)


class ReviewSession:
    """The state of a review, Qt-free: cases, results, the reviewer's labels (with undo), each case's sign-off and
    the audit trail.

    Why: the window used to own this logic; here the GUI, autosave and tests share one implementation. The
    window's table model shows ``results`` (the same list object) and is told which rows changed. A session
    holds cases (samples): each result belongs to one; sign-off, the differential and exports are per case.
    """

    UNDO_DEPTH = 200

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.cases: dict[str, CaseInfo] = {}
        self.current = ""  # the case new images join and the window shows ("" before any case exists)
        self.signoffs: dict[str, SignOff] = {}
        self.audit: list[dict] = []
        self._undo: list[list[tuple[int, str | None]]] = []

    # --- cases
    def new_case(self, case_id: str, operator: str = "", note: str = "") -> str:
        """Open a case (an ID already used gets a suffix) and make it the current one; its ID. ValueError when a
        text is over its limit or the session holds :data:`MAX_CASES` cases."""
        if len(self.cases) >= MAX_CASES:
            raise ValueError(f"this session holds {MAX_CASES:,} cases: export them and start a new session (File ▸ New Session)")
        base = check_text("case ID", case_id, MAX_CASE_ID - 10) or f"Case {len(self.cases) + 1}"
        operator, note = check_text("name", operator, MAX_NAME), check_text("note", note, MAX_NOTE)
        cid, n = base, 2
        while cid in self.cases:
            cid, n = f"{base} ({n})", n + 1
        self.cases[cid] = CaseInfo(cid, operator, note)
        self.current = cid
        return cid

    def set_case_details(self, operator: str, note: str) -> None:
        """Change the current case's operator and note (what its report prints); refused once it is signed off."""
        self._check()
        c = self.cases.get(self.current)
        if c is None:
            raise ValueError("there is no case to describe: classify some images first")
        c.operator, c.note = check_text("name", operator, MAX_NAME), check_text("note", note, MAX_NOTE)

    def unlocked_indices(self) -> list[int]:
        """The results that a model change may re-classify: every one outside a signed-off case."""
        return [i for i, r in enumerate(self.results) if r.case not in self.signoffs]

    def apply_reclassified(self, fresh: Sequence[Result]) -> list[int]:
        """A model change: each fresh result's classification goes into every row of the same file (path and
        bytes) outside a signed-off case; the row keeps its identity, case and review. The indices changed.

        Why in place: a signed-off case must not change without a trace (issue 30), and a row's identity must
        survive a model change."""
        # a camera field's cells are matched cell by cell (issue 28: every cell took its field's last cell's class)
        by_file = {(str(r.path), r.sha256, r.cell_index): r for r in fresh}
        changed = []
        for i in self.unlocked_indices():
            old = self.results[i]
            new = by_file.get((str(old.path), old.sha256, old.cell_index))
            if new is None:
                continue
            for name in RECLASSIFIED_FIELDS:
                setattr(old, name, getattr(new, name))
            if old.thumbnail is None:
                old.thumbnail = new.thumbnail
            old._json = None  # its saved form changed
            changed.append(i)
        return changed

    def replace_grown(self, fresh: Result, old_sha256: str) -> int | None:
        """A watched file's row whose file grew after it was classified (it was caught mid-write) takes ``fresh``'s
        classification and bytes; its identity and review stay. The row's index, or None (no such row, or its
        case is signed off: then ``fresh`` is a row of its own)."""
        for i, r in enumerate(self.results):
            if r.path == fresh.path and r.sha256 == old_sha256 and r.case not in self.signoffs:
                for name in (*RECLASSIFIED_FIELDS, "sha256"):
                    setattr(r, name, getattr(fresh, name))
                r.thumbnail = fresh.thumbnail if fresh.thumbnail is not None else r.thumbnail
                r._json = None
                return i
        return None

    def case_results(self, case_id: str | None = None) -> list[Result]:
        """The results of a case (the current one by default; all results when there are no cases)."""
        cid = self.current if case_id is None else case_id
        return [r for r in self.results if r.case == cid] if cid else list(self.results)

    # --- sign-off, per case
    @property
    def signed(self) -> SignOff | None:
        return self.signoffs.get(self.current)

    def locked(self, index: int | None = None) -> bool:
        cid = self.results[index].case if index is not None else self.current
        return cid in self.signoffs

    def _check(self, index: int | None = None) -> None:
        cid = self.results[index].case if index is not None else self.current
        if cid in self.signoffs:
            s = self.signoffs[cid]
            raise CaseLocked(f"signed off by {s.operator} at {s.at}")

    def assign(self, index: int, label: str | None) -> None:
        """Set (None: clear) the reviewer's label of results[index]; undoable."""
        self._check(index)
        r = self.results[index]
        if not r.ok or r.reviewer_label == label:
            return
        self._push([(index, r.reviewer_label)])
        r.reviewer_label = label

    def unflagged_rows(self) -> list[int]:
        """The indices of the current case's cells that accept-all would confirm: classified, not flagged,
        not yet reviewed (the one definition; the window asks with its count)."""
        return [
            i
            for i, r in enumerate(self.results)
            if unreviewed(r)
            and not r.needs_review
            and (not self.current or r.case == self.current)
            and r.case not in self.signoffs  # never a signed-off case's cell, whatever is current
        ]

    def accept_unflagged(self) -> list[int]:
        """Confirm the model's class for every unflagged, unreviewed cell of the current case (one undo step)."""
        self._check()
        rows = self.unflagged_rows()
        if rows:
            self._push([(i, None) for i in rows])
            for i in rows:
                self.results[i].reviewer_label = self.results[i].label
        return rows

    def undo(self) -> list[int]:
        """Take back the last review step; the indices it touched ([] when there is nothing to undo)."""
        if not self._undo:
            return []
        for i, _ in self._undo[-1]:
            if i < len(self.results):
                self._check(i)
        step = self._undo.pop()
        for i, previous in step:
            if i < len(self.results):
                self.results[i].reviewer_label = previous
        return [i for i, _ in step]

    def _push(self, step: list[tuple[int, str | None]]) -> None:
        self._undo.append(step)
        del self._undo[: -self.UNDO_DEPTH]

    def awaiting(self) -> int:
        return sign_off_blockers(self.case_results())

    def sign_off(self, operator: str, at: str, reason: str = "", cell_types: str = "") -> SignOff:
        """Sign the current case off (see :func:`sign_off`); it is then locked."""
        self._check()
        signed = sign_off(self.case_results(), operator, at, reason, cell_types)
        self.signoffs[self.current] = signed
        self.audit.append({"event": "signed off", "case": self.current, **signed.as_dict()})
        self._undo = [step for step in self._undo if all(self.results[i].case != self.current for i, _ in step)]
        return signed

    def unlock(self, reason: str, at: str) -> None:
        signed = self.signoffs.get(self.current)
        if signed is None:
            return
        if not reason.strip():
            raise ValueError("give a reason: it is kept with the case")
        reason = check_text("reason", reason, MAX_REASON)
        self.audit.append(
            {"event": "unlocked", "case": self.current, "at": at, "reason": reason.strip(), "was_signed_by": signed.operator}
        )
        del self.signoffs[self.current]

    def clear(self) -> None:
        self.results.clear()
        self.cases.clear()
        self.current = ""
        self.signoffs.clear()
        self.audit = []
        self._undo.clear()

    def to_extra(self) -> dict:
        """What the session file keeps besides the results."""
        return {
            "cases": [c.__dict__ for c in self.cases.values()],
            "current_case": self.current,
            "sign_offs": {k: v.as_dict() for k, v in self.signoffs.items()},
            "sign_off": self.signed.as_dict() if self.signed else None,
            "audit": list(self.audit),
        }

    def load_extra(self, extra: object) -> list[str]:
        """Cases, sign-offs and audit read back from a session file, type-checked; what could not be read back
        (empty when the session is whole). Nothing the app let in is cut here: limits are enforced on entry."""
        problems: list[str] = []
        extra = extra if isinstance(extra, dict) else {}
        cases = extra.get("cases")
        self.cases = {}
        for d in cases if isinstance(cases, list) else []:
            c = CaseInfo.from_dict(d)
            if c is not None:
                self.cases[c.case_id] = c
            else:
                problems.append("a case")
        current = extra.get("current_case")
        self.current = current if isinstance(current, str) and current in self.cases else ""
        self.signoffs = {}
        signoffs = extra.get("sign_offs")
        for k, v in signoffs.items() if isinstance(signoffs, dict) else []:
            s = SignOff.from_dict(v)
            if s is not None and isinstance(k, str):
                self.signoffs[k] = s
            else:
                problems.append(f"the sign-off of case {k!r}")
        legacy = SignOff.from_dict(extra.get("sign_off"))  # a session saved before cases: one case, ""
        if legacy is not None and not self.signoffs:
            self.signoffs[self.current] = legacy
        audit = extra.get("audit")
        self.audit = [a for a in audit if isinstance(a, dict)] if isinstance(audit, list) else []
        if isinstance(audit, list) and len(self.audit) < len(audit):
            problems.append(f"{len(audit) - len(self.audit)} audit events")
        return problems
