"""What detection produces: findings (one signal's evidence) and alerts (an incident's news).

A :class:`Finding` is one signal's verdict about one subject: points and a one-line detail.
``own`` says whether it comes from the subject's own successful sessions or messages, as
opposed to what anyone on the internet can cause (failed logins against an account).
An :class:`Alert` is raised when a subject's incident opens or its severity rises.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

SUBJECT_KINDS = ("account", "ip", "uid", "sender_domain")
SEVERITY_RANK = {"": 0, "notice": 1, "warning": 2, "critical": 3}


class Subject(NamedTuple):
    """Who an incident is about: ``scope`` is the host for uids (a uid is per machine)."""

    kind: str  # account | ip | uid | sender_domain
    name: str
    scope: str = ""


class Finding(NamedTuple):
    """One signal's evidence about one subject."""

    subject: Subject
    signal: str  # volume, new_origin, client_diversity, bogus_helo, ...
    points: int
    detail: str
    own: bool = True  # from the subject's own successful activity
    family: str = ""  # overrides the signal's family (see incidents.FAMILIES)


class Reason(NamedTuple):
    """One line of an alert's explanation."""

    signal: str
    detail: str
    points: int

    def to_json(self) -> dict[str, Any]:
        return {"signal": self.signal, "detail": self.detail, "points": self.points}


class Alert(NamedTuple):
    """An incident opened, or its severity rose; ``ts`` is the log time of the cause."""

    ts: datetime
    subject: str
    subject_kind: str
    severity: str
    score: int
    reasons: tuple[Reason, ...]
    evidence: dict[str, Any]
    incident: str
    host: str

    @property
    def lockable(self) -> bool:
        """May this alert lock its subject?  Only a critical one about a login or a script.

        An account only reaches critical with evidence from its own successful sessions or
        messages (failed logins alone stop at warning), so this never locks an account that
        was merely attacked.  IP subjects are banned, never locked.
        """
        return self.severity == "critical" and self.subject_kind != "ip"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "ts": self.ts.isoformat(),
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "severity": self.severity,
            "score": self.score,
            "reasons": [reason.to_json() for reason in self.reasons],
            "evidence": self.evidence,
            "incident": self.incident,
            "host": self.host,
        }
