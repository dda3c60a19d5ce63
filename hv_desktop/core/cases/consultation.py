"""The consultation state of a session, Qt-free: the package the session came in (a case sent for a second
opinion, with the sender's reviews) and the requests this session sent (so a reply is merged only into the case it
answers).

Why here: it used to be a string dict on the window's export handler and was kept only in the JSON autosave
(issue 29). Now it is one typed value of the workspace, stored in the case archive, and its JSON form is read
back type-checked. Limits apply when it enters (:meth:`ConsultationState.check`), never by cutting on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hv_desktop.core.cases.review import MAX_CASE_ID

#: at most this many requests sent, or sender's reviews, are kept (a package holds at most 20,000 cells)
MAX_ENTRIES = 100_000
#: longest package or cell ID kept (the app's own are 16 and 32 characters)
MAX_ID = 64
KINDS = ("request", "reply")


@dataclass
class ConsultationState:
    """``kind`` "" when the session did not come in a package; else "request" (a case sent to this lab) or
    "reply", with the package's ID, its case details and the sender's review of each cell (cell ID -> label).
    ``sent``: package ID -> case ID of every request this session sent."""

    kind: str = ""
    package_id: str = ""
    case: dict[str, Any] = field(default_factory=dict)
    sender_labels: dict[str, str | None] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)

    @property
    def received(self) -> bool:
        """The session came in a package (its sender's reviews show in their own column)."""
        return bool(self.kind)

    def check(self) -> None:
        """ValueError when a part is over its limit or of the wrong type: refused as it enters."""
        if self.kind not in ("", *KINDS):
            raise ValueError(f"a consultation is a request or a reply, not {self.kind!r}")
        if len(self.sent) > MAX_ENTRIES or len(self.sender_labels) > MAX_ENTRIES:
            raise ValueError(f"a consultation keeps at most {MAX_ENTRIES:,} requests and reviews")
        ids = [self.package_id, *self.sent, *self.sender_labels]
        if any(not isinstance(i, str) or len(i) > MAX_ID for i in ids):
            raise ValueError(f"a consultation's package or cell ID is not a text of at most {MAX_ID} characters")
        if any(not isinstance(c, str) or len(c) > MAX_CASE_ID for c in self.sent.values()):
            raise ValueError(f"a case ID is not a text of at most {MAX_CASE_ID} characters")
        if any(v is not None and not isinstance(v, str) for v in self.sender_labels.values()):
            raise ValueError("a sender's review is not a text")
        if not isinstance(self.case, dict):
            raise ValueError("a consultation's case details are not an object")

    def to_json(self) -> dict[str, Any]:
        """The JSON form (the one the autosave's ``extra["consultation"]`` had)."""
        out: dict[str, Any] = {"sent": dict(self.sent)} if self.sent else {}
        if self.received:
            out.update(kind=self.kind, package_id=self.package_id, case=dict(self.case), sender_labels=dict(self.sender_labels))
        return out

    @classmethod
    def from_json(cls, data: object) -> ConsultationState | None:
        """The state a JSON form holds, type-checked: entries of the wrong type are left out (they could not have
        entered), nothing else is cut; None when it holds neither a package nor a request."""
        if not isinstance(data, dict):
            return None
        sent_in = data.get("sent")
        sent = (
            {k: v for k, v in sent_in.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(sent_in, dict) else {}
        )
        labels_in = data.get("sender_labels")
        state = cls(sent=sent)
        if isinstance(labels_in, Mapping):  # the mark of a session that came in a package
            state.sender_labels = {str(k): (v if isinstance(v, str) else None) for k, v in labels_in.items()}
            kind = data.get("kind", "request")
            state.kind = kind if kind in KINDS else "request"
            package_id = data.get("package_id", "")
            state.package_id = package_id if isinstance(package_id, str) else ""
            case = data.get("case")
            state.case = case if isinstance(case, dict) else {}
        return state if state.received or state.sent else None

    def without_package(self) -> ConsultationState | None:
        """A new session: the package goes, the requests sent stay (their replies still come back)."""
        return ConsultationState(sent=dict(self.sent)) if self.sent else None
