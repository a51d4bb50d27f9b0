"""What a report holds: small frozen records, built by ``build`` and drawn by ``text``/``html``.

::

    Report
     +-- accounts   AccountRow per SASL login (messages, recipients, IPs, countries,
     |              deferred/bounced share, Baseline, messages per hour)
     +-- incidents  IncidentRow per incident open during the window
     +-- locks      LockRow per account locked now (from the action journal)
     +-- attackers  AttackerRow per IP that failed logins or probed relaying
     +-- pickups    PickupRow per local (sendmail/pickup) uid
     +-- notes      what the source could not say (the store keeps no message counts ...)

A count is ``None`` when the source does not know it (shown as ``-``), never a made-up 0.
Every string from a log line (logins, HELOs, senders, reason details) is attacker text: the
renderers escape it; the records keep it as logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from postwatch.report.window import Window

SEVERITY_ORDER = {"": 0, "notice": 1, "warning": 2, "critical": 3}


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole``, or None when either is unknown or ``whole`` is 0."""
    if part is None or not whole:
        return None
    return part / whole


class Baseline(NamedTuple):
    """What is usual for an account: its log history before the window, its learned peak."""

    days: float = 0.0  # days of history behind the averages
    messages_per_day: float | None = None
    deferred_share: float | None = None
    bounced_share: float | None = None
    peak_messages_24h: float | None = None  # the detector's learned busiest day

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


class AccountRow(NamedTuple):
    """One SASL login's mail in the window."""

    account: str
    messages: int | None
    recipients: int | None
    unique_recipients: int | None
    ips: tuple[str, ...]  # busiest first
    ip_count: int
    countries: tuple[str, ...]  # busiest first
    outcomes: int | None  # recipients whose delivery ended (or was last tried)
    deferred: int | None
    bounced: int | None
    baseline: Baseline
    hourly: tuple[int, ...] = ()  # messages per bin from Report.bins_start
    severity: str = ""  # worst incident severity in the window
    locked: bool = False

    @property
    def deferred_share(self) -> float | None:
        return share(self.deferred, self.outcomes)

    @property
    def bounced_share(self) -> float | None:
        return share(self.bounced, self.outcomes)

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["ips"] = list(self.ips)
        data["countries"] = list(self.countries)
        data["hourly"] = list(self.hourly)
        data["baseline"] = self.baseline.to_json()
        data["deferred_share"] = self.deferred_share
        data["bounced_share"] = self.bounced_share
        return data


class IncidentRow(NamedTuple):
    """One incident that was open at some time during the window."""

    id: str
    subject_kind: str
    subject: str
    scope: str
    host: str
    state: str  # open | closed
    severity: str
    score: int
    opened: datetime
    updated: datetime
    closed: datetime | None
    reasons: tuple[tuple[str, str, int], ...]  # (signal, detail, points)
    ips: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    helos: tuple[str, ...] = ()
    queue_ids: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # the evidence's counters at the last update

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["counts"] = dict(self.counts)
        data["opened"] = self.opened.isoformat()
        data["updated"] = self.updated.isoformat()
        data["closed"] = self.closed.isoformat() if self.closed else None
        data["reasons"] = [
            {"signal": signal, "detail": detail, "points": points}
            for signal, detail, points in self.reasons
        ]
        for key in ("ips", "countries", "helos", "queue_ids"):
            data[key] = list(data[key])
        return data


class LockRow(NamedTuple):
    """An account postwatch holds locked now."""

    account: str
    backends: tuple[str, ...]
    since: datetime
    actor: str
    reason: str
    incident: str

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["backends"] = list(self.backends)
        data["since"] = self.since.isoformat()
        return data


class AttackerRow(NamedTuple):
    """An address that failed logins or was refused relaying."""

    ip: str
    country: str
    asn: str
    failures: int | None
    usernames: int | None  # distinct usernames tried
    sample_usernames: tuple[str, ...]
    relay_denied: int | None
    severity: str = ""

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["sample_usernames"] = list(self.sample_usernames)
        return data


class PickupRow(NamedTuple):
    """Mail a local user (a web server's PHP scripts, say) sent through sendmail/pickup."""

    host: str
    uid: int
    messages: int | None
    recipients: int | None
    senders: int | None  # distinct envelope senders
    top_senders: tuple[str, ...]
    outcomes: int | None
    deferred: int | None
    bounced: int | None
    severity: str = ""

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["top_senders"] = list(self.top_senders)
        data["deferred_share"] = share(self.deferred, self.outcomes)
        data["bounced_share"] = share(self.bounced, self.outcomes)
        return data


class Report(NamedTuple):
    """Everything ``postwatch report`` shows."""

    generated: datetime
    source: str  # "logs" or "store"
    window: Window
    first_seen: datetime | None  # first and last log time read (logs) or stored (store)
    last_seen: datetime | None
    hosts: tuple[str, ...]
    lines: int | None
    accounts: tuple[AccountRow, ...]
    accounts_total: int  # accounts with mail in the window, before the top-N cut
    incidents: tuple[IncidentRow, ...]
    locks: tuple[LockRow, ...]
    attackers: tuple[AttackerRow, ...]
    pickups: tuple[PickupRow, ...]
    bins_start: datetime | None = None  # the first bin of AccountRow.hourly
    bin_hours: int = 1
    notes: tuple[str, ...] = ()

    def period(self) -> str:
        """What the report covers: the window, its open sides filled with the log's span."""
        start = self.window.start or self.first_seen
        end = self.window.end or self.last_seen
        if start is None or end is None:
            return self.window.label()
        return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"

    @property
    def span_name(self) -> str:
        """What first_seen..last_seen measure: the log read, or the stored activity."""
        return "log time" if self.source == "logs" else "stored activity"

    @property
    def accounts_name(self) -> str:
        """Which logins the accounts table counts."""
        return "with mail" if self.source == "logs" else "active"

    @property
    def worst_severity(self) -> str:
        worst = ""
        for incident in self.incidents:
            if SEVERITY_ORDER.get(incident.severity, 0) > SEVERITY_ORDER[worst]:
                worst = incident.severity
        return worst

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "report",
            "generated": self.generated.isoformat(),
            "source": self.source,
            "window": self.window.to_json(),
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "hosts": list(self.hosts),
            "lines": self.lines,
            "accounts_total": self.accounts_total,
            "accounts": [row.to_json() for row in self.accounts],
            "incidents": [row.to_json() for row in self.incidents],
            "locks": [row.to_json() for row in self.locks],
            "attackers": [row.to_json() for row in self.attackers],
            "pickups": [row.to_json() for row in self.pickups],
            "bins_start": self.bins_start.isoformat() if self.bins_start else None,
            "bin_hours": self.bin_hours,
            "notes": list(self.notes),
        }
