"""Reading a JSON autosave (a review session before the case archive) into what the archive stores, once.

Why apart from the archive: this is read-only planning (no database), so it is tested and reasoned about on its
own; :meth:`hv_desktop.core.storage.archive.CaseArchive.import_session_json` writes the plan in one transaction.
Nothing is cut: texts longer than today's entry limits (a session from before the limits) are kept whole and
named in the report.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from hv_desktop.core.cases.consultation import ConsultationState
from hv_desktop.core.cases.review import MAX_CASE_ID, MAX_NAME, MAX_NOTE, MAX_REASON, CaseInfo, ReviewSession, SignOff
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.storage.session import SessionError, load_session
from hv_desktop.core.system.paths import display_name

#: The case that holds a session's results saved before sessions had cases.
LEGACY_CASE = "Imported session"
#: What ReviewSession.load_extra reads from a session file's "extra"; any other key is named in the report.
_KNOWN_EXTRA = {"cases", "current_case", "sign_offs", "sign_off", "audit"}


@dataclass
class ImportReport:
    """What an import did, for the user and the log."""

    path: str
    already_imported: bool = False
    cases: int = 0
    cells: int = 0
    sign_offs: int = 0
    audit_events: int = 0
    #: results the session loader could not read (a damaged entry)
    skipped: int = 0
    #: parts of the session's cases, sign-offs and audit that could not be read back
    problems: list[str] = field(default_factory=list)
    #: case ID in the file -> ID in the archive, where the archive already had a case of that ID
    renamed: dict[str, str] = field(default_factory=dict)
    #: texts longer than today's entry limits, kept whole
    over_limit: list[str] = field(default_factory=list)
    #: parts of the session file the archive does not hold
    ignored: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlannedCase:
    info: CaseInfo
    created_at: str
    sign_off: SignOff | None
    results: list[Result]


@dataclass
class ImportPlan:
    fingerprint: str
    cases: list[PlannedCase]
    #: (archive case ID or None, event) in the session's order
    audit: list[tuple[str | None, dict]]
    report: ImportReport


@dataclass
class SessionFile:
    """A session file read whole, before anything is written."""

    fingerprint: str
    results: list[Result]
    session: ReviewSession
    made_at: str
    report: ImportReport
    #: the consultation's JSON form (type-checked), or None
    consultation: dict | None = None


def read_session_file(path: str | os.PathLike) -> SessionFile:
    """The session at ``path``, read and type-checked by the session loader; ArchiveError with its message."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        made_at = datetime.fromtimestamp(Path(path).stat().st_mtime).astimezone().isoformat(timespec="seconds")
        results, header = load_session(path)
    except (OSError, SessionError) as exc:
        raise ArchiveError(f"the session {display_name(path)} cannot be imported: {exc}") from exc
    session = ReviewSession()
    extra = header["extra"] if isinstance(header.get("extra"), dict) else {}
    report = ImportReport(display_name(path), skipped=int(header.get("skipped") or 0))
    report.problems = session.load_extra(extra)
    report.ignored = sorted(f"extra.{k}" for k in extra if k not in _KNOWN_EXTRA)
    consultation = ConsultationState.from_json(extra.get("consultation"))
    json_form = consultation.to_json() if consultation is not None else None
    return SessionFile(digest.hexdigest(), results, session, made_at, report, json_form)


def free_id(case_id: str, taken: set[str]) -> str:
    """``case_id``, or "ID (imported)", "ID (imported 2)" ... when the archive already holds it."""
    cid, n = case_id, 1
    while cid in taken:
        cid = f"{case_id} (imported{'' if n == 1 else f' {n}'})"
        n += 1
    return cid


def plan_import(file: SessionFile, taken: set[str]) -> ImportPlan:
    """Every case of the session (those its results or sign-offs name too), under an ID free in the archive
    (``taken``: the IDs it holds), with its results in the session's order, its sign-off and the audit trail."""
    s, report = file.session, file.report
    groups: dict[str, list[Result]] = {}
    for r in file.results:
        groups.setdefault(r.case, []).append(r)
    infos = dict(s.cases)
    for cid in [*groups, *s.signoffs]:
        if cid not in infos:
            infos[cid] = CaseInfo(cid or LEGACY_CASE)
    mapping: dict[str, str] = {}
    cases = []
    for file_id, info in infos.items():
        new = free_id(info.case_id, taken)
        taken.add(new)
        mapping[file_id] = new
        if file_id and new != file_id:
            report.renamed[file_id] = new
        members = groups.get(file_id, [])
        stamps = [r.timestamp for r in members if r.timestamp]
        signed = s.signoffs.get(file_id)
        cases.append(PlannedCase(CaseInfo(new, info.operator, info.note), min(stamps, default=file.made_at), signed, members))
        report.over_limit += _over_limit(new, info, signed)
    audit = []
    for event in s.audit:
        old = event.get("case")
        new_id = mapping.get(old) if isinstance(old, str) else None
        if new_id is not None and new_id != old:
            event = {**event, "case": new_id, "case_in_file": old}
        audit.append((new_id, event))
    report.cases, report.cells = len(cases), len(file.results)
    report.sign_offs, report.audit_events = sum(c.sign_off is not None for c in cases), len(audit)
    return ImportPlan(file.fingerprint, cases, audit, report)


def _over_limit(case_id: str, info: CaseInfo, signed: SignOff | None) -> list[str]:
    texts = [("ID", info.case_id, MAX_CASE_ID), ("operator", info.operator, MAX_NAME), ("note", info.note, MAX_NOTE)]
    if signed is not None:
        texts += [("sign-off name", signed.operator, MAX_NAME), ("sign-off reason", signed.override_reason, MAX_REASON)]
    return [f"the {what} of case {case_id!r} ({len(t):,} characters, kept whole)" for what, t, limit in texts if len(t) > limit]
