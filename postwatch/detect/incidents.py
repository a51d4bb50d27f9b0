"""Scores and incidents: findings add up per subject; thresholds open incidents.

Each subject has a board of live findings, one per signal, each held ``evidence_hold``
seconds (a stronger finding replaces a weaker one; a weaker one waits for the stronger to
expire).  Signals are grouped in families whose points are capped, so one kind of oddity
(a traveller's new country, new network and odd route) cannot alone reach an alert:

    origin 30   helo 30   recipients 25   delivery 35   senders 30   volume 75
    credentials 50   attempts 30   brute_force 100   relay_probe 100   login_hopping 100

Volume (below the ceilings) and recipient findings of an account sending from a familiar
place (a confirmed network of its own) also share the group ``routine``, capped at 35: a
business's batch from its usual server may grow without alerting; only together with
other evidence (bounces, spam replies, a bogus HELO) does it count.  While a subject's
message counts stay within its floors (and its recipients within ten times theirs), its
volume, recipient and delivery findings share the group ``handful``, capped at 30: a few
messages to a long or stale list are not a spam run, however many of their recipients
bounce.

The score is the sum.  One open incident per subject: the first score at or above the
``notice`` threshold opens it and raises an alert; later evidence updates it silently and
raises a new alert only when the severity rises.  It closes after ``incident_quiet``
seconds without new findings.  Safety rule: an account reaches ``critical`` only when the
points from its own successful sessions and messages alone reach ``warning``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from postwatch.config import Thresholds
from postwatch.detect.alerts import SEVERITY_RANK, Alert, Finding, Reason, Subject
from postwatch.detect.windows import ExpiringMap

FAMILIES = {
    "new_country": "origin",
    "new_asn": "origin",
    "client_diversity": "origin",
    "impossible_travel": "origin",
    "no_rdns": "origin",
    "bogus_helo": "helo",
    "recipient_domains": "recipients",
    "freemail": "recipients",
    "new_recipients": "recipients",
    "delivery_failures": "delivery",
    "spam_replies": "delivery",
    "sender_mismatch": "senders",
    "invalid_sender": "senders",
    "many_senders": "senders",
    "volume": "volume",
    "credential_stuffing": "credentials",
    "shared_login": "credentials",
    "login_attempts": "attempts",
    "brute_force": "brute_force",
    "guessed_login": "brute_force",
    "relay_probe": "relay_probe",
    "login_hopping": "login_hopping",
}
ROUTINE = "routine"  # volume and recipients of an account sending from a familiar place
HANDFUL = "handful"  # volume, recipients and delivery of messages within the floors
CAPS = {
    "origin": 30,
    "helo": 30,
    "recipients": 25,
    "delivery": 35,
    "senders": 30,
    "volume": 75,
    "credentials": 50,
    "attempts": 30,
    "brute_force": 100,
    "relay_probe": 100,
    "login_hopping": 100,
    ROUTINE: 35,
    HANDFUL: 30,
}


class Incident:
    """One subject's trouble, from the first alert until it has been quiet long enough."""

    __slots__ = (
        "closed",
        "evidence",
        "host",
        "id",
        "opened",
        "reasons",
        "score",
        "severity",
        "state",
        "subject",
        "updated",
    )

    def __init__(self, incident_id: str, subject: Subject, host: str, opened: datetime) -> None:
        self.id = incident_id
        self.subject = subject
        self.host = host
        self.opened = opened
        self.updated = opened
        self.closed: datetime | None = None
        self.state = "open"
        self.severity = ""
        self.score = 0
        self.reasons: tuple[Reason, ...] = ()
        self.evidence: dict[str, Any] = {}


def incident_id(subject: Subject, opened: datetime) -> str:
    """A stable id: the same input always yields the same incidents."""
    text = f"{subject.kind}|{subject.scope}|{subject.name}|{opened.isoformat()}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class Board:
    """Live findings of one subject, and its open incident."""

    __slots__ = ("findings", "incident")

    def __init__(self) -> None:
        self.findings: dict[str, tuple[int, str, bool, float, str]] = {}
        self.incident: Incident | None = None


class IncidentBook:
    """Turns findings into scores, incidents and alerts."""

    def __init__(
        self,
        *,
        hold: float,
        quiet: float,
        thresholds_for: Callable[[Subject], Thresholds],
        evidence_for: Callable[[Subject, float, str], dict[str, Any]],
        on_open: Callable[[Subject, float], None] | None = None,
    ) -> None:
        self.hold = hold
        self.thresholds_for = thresholds_for
        self.evidence_for = evidence_for
        self.on_open = on_open
        self.boards: ExpiringMap[Subject, Board] = ExpiringMap(
            max(quiet, hold), 200_000, on_expire=self._quiet
        )
        self.dirty: dict[str, Incident] = {}  # changed since the store last saw them
        self.alerts: list[Alert] = []  # raised since the store last saw them
        self._last_now = 0.0
        self._last_ts: datetime | None = None

    def apply(self, findings: list[Finding], ts: datetime, now: float, host: str) -> list[Alert]:
        """Record ``findings`` (log time ``ts`` = ``now``); return the alerts they raise."""
        self._last_now, self._last_ts = now, ts
        alerts: list[Alert] = []
        touched: dict[Subject, Board] = {}
        for finding in findings:
            board = self.boards.touch(finding.subject, now, Board)
            current = board.findings.get(finding.signal)
            if current is None or current[3] <= now or finding.points >= current[0]:
                board.findings[finding.signal] = (
                    finding.points,
                    finding.detail,
                    finding.own,
                    now + self.hold,
                    finding.family,
                )
            touched[finding.subject] = board
        for subject, board in touched.items():
            alert = self._judge(subject, board, ts, now, host)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _judge(
        self, subject: Subject, board: Board, ts: datetime, now: float, host: str
    ) -> Alert | None:
        reasons, score, own = self.score(board, now)
        thresholds = self.thresholds_for(subject)
        severity = thresholds.severity(score)
        if severity == "critical" and subject.kind == "account" and own < thresholds.warning:
            severity = "warning"
        incident = board.incident
        if incident is None:
            if not severity:
                return None
            incident = board.incident = Incident(incident_id(subject, ts), subject, host, ts)
            if self.on_open is not None:
                self.on_open(subject, now - self.hold)
        raised = SEVERITY_RANK[severity] > SEVERITY_RANK[incident.severity]
        if raised or score >= incident.score:
            incident.score, incident.reasons = score, reasons
        if raised:
            incident.severity = severity
        incident.updated = ts
        self.dirty[incident.id] = incident
        if not raised:
            return None
        incident.evidence = self.evidence_for(subject, now, host)
        alert = Alert(
            ts,
            subject.name,
            subject.kind,
            severity,
            score,
            reasons,
            incident.evidence,
            incident.id,
            host,
        )
        self.alerts.append(alert)
        return alert

    def score(self, board: Board, now: float) -> tuple[tuple[Reason, ...], int, int]:
        """Live reasons (capped per family, strongest first), the score, the own points."""
        live = sorted(
            (
                (points, signal, detail, own, family)
                for signal, (points, detail, own, expires, family) in board.findings.items()
                if expires > now
            ),
            key=lambda item: (-item[0], item[1]),
        )
        used: dict[str, int] = {}
        reasons: list[Reason] = []
        score = own_score = 0
        for points, signal, detail, own, group in live:
            family = FAMILIES.get(signal, signal)
            room = CAPS.get(family, 100) - used.get(family, 0)
            if group:  # a finding in a group is capped by its family and by the group
                room = min(room, CAPS.get(group, 100) - used.get(group, 0))
            granted = min(points, room)
            if granted <= 0:
                continue
            used[family] = used.get(family, 0) + granted
            if group:
                used[group] = used.get(group, 0) + granted
            reasons.append(Reason(signal, detail, granted))
            score += granted
            if own:
                own_score += granted
        return tuple(reasons), score, own_score

    def expire(self, now: float) -> None:
        self._last_now = now
        self.boards.expire(now)

    def _quiet(self, subject: Subject, board: Board) -> None:
        incident = board.incident
        if incident is None:
            return
        incident.state = "closed"
        incident.closed = self._last_ts or incident.updated
        self.dirty[incident.id] = incident

    def restore(self, incident: Incident, now: float) -> None:
        """Re-open an incident loaded from the store (it keeps its id and severity)."""
        board = self.boards.touch(incident.subject, now, Board)
        board.incident = incident

    def open_incidents(self) -> list[Incident]:
        return [
            board.incident
            for _, board in self.boards.items()
            if board.incident is not None and board.incident.state == "open"
        ]

    def take_dirty(self) -> tuple[list[Incident], list[Alert]]:
        incidents, alerts = list(self.dirty.values()), self.alerts
        self.dirty, self.alerts = {}, []
        return incidents, alerts
