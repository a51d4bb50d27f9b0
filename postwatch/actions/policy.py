"""The policy: which actions an alert deserves, and which it must never get.

The input is an :class:`ActionRequest`, a small record made from the detector's alert
(:meth:`ActionRequest.from_alert`).  The config maps each severity to a list of actions
(``notify``, ``lock``, ``hold``, ``ban``); :meth:`Policy.decide` turns that list into
:class:`Step`\\ s and says why anything was left out:

- failed logins alone never lock an account: only an alert with ``lockable`` set (evidence
  from the account's own successful sessions or messages) locks it or holds its mail;
- an allowlisted account is never locked, an IP in a trusted network never banned;
- a subject that fails :mod:`postwatch.actions.subject` is never locked;
- at most ``max_locks_per_hour`` automatic locks: past that, a detection bug could lock
  everybody, so the policy notifies instead and says which command would lock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from postwatch.actions import subject as subjects
from postwatch.configfile import IPNetwork
from postwatch.errors import UnsafeSubjectError

ACTIONS = ("notify", "lock", "hold", "ban")
DEFAULT_SEVERITIES: dict[str, tuple[str, ...]] = {
    "notice": (),
    "warning": ("notify",),
    "critical": ("notify", "lock", "hold", "ban"),
}
MAX_LIST = 50  # evidence items kept per kind


class ActionRequest(NamedTuple):
    """What the policy decides on: one alert, in the terms actions need."""

    subject: str
    subject_kind: str  # account | ip | uid | sender_domain
    severity: str
    incident: str
    lockable: bool = False  # evidence from the subject's own successful sessions/messages
    score: int = 0
    rule: str = ""  # the strongest signal; the ban reason
    reasons: tuple[tuple[str, str, int], ...] = ()  # (signal, detail, points)
    ips: tuple[str, ...] = ()  # client IPs behind the incident
    known_ips: tuple[str, ...] = ()  # of those, the account's confirmed own origins
    countries: tuple[str, ...] = ()
    helos: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()  # envelope senders the account used
    queue_ids: tuple[str, ...] = ()  # queued messages attributed to the subject
    counts: tuple[tuple[str, int], ...] = ()  # ("messages", 450), ("recipients", 3000) ...
    host: str = ""
    ts: datetime | None = None

    @classmethod
    def from_alert(cls, alert: Any) -> ActionRequest:
        """Read a detector alert (``postwatch.detect.alerts.Alert`` or alike).

        Evidence keys understood: ``ips``/``client_ips``, ``countries``, ``helos``,
        ``senders``, ``queue_ids``/``sample_queue_ids``; other numeric values are counts.
        A missing ``lockable`` reads as False: nothing is locked on doubt.
        """
        evidence = getattr(alert, "evidence", None) or {}
        reasons = tuple(
            (
                str(getattr(r, "signal", "")),
                str(getattr(r, "detail", "")),
                _int(getattr(r, "points", 0)),
            )
            for r in getattr(alert, "reasons", ()) or ()
        )
        strongest = max(reasons, key=lambda r: r[2])[0] if reasons else ""
        counts = tuple(
            (str(key), _int(value))
            for key, value in evidence.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        )
        return cls(
            subject=str(getattr(alert, "subject", "")),
            subject_kind=str(getattr(alert, "subject_kind", "account")),
            severity=str(getattr(alert, "severity", "")),
            incident=str(getattr(alert, "incident", "")),
            lockable=getattr(alert, "lockable", False) is True,
            score=_int(getattr(alert, "score", 0)),
            rule=str(getattr(alert, "rule", "") or strongest),
            reasons=reasons,
            ips=_strings(evidence, "ips", "client_ips"),
            known_ips=_strings(evidence, "known_ips"),
            countries=_strings(evidence, "countries"),
            helos=_strings(evidence, "helos"),
            senders=_strings(evidence, "senders"),
            queue_ids=_strings(evidence, "queue_ids", "sample_queue_ids"),
            counts=counts,
            host=str(getattr(alert, "host", "")),
            ts=getattr(alert, "ts", None),
        )


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _strings(evidence: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    out: list[str] = []
    for key in keys:
        value = evidence.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, Mapping):
            value = list(value)  # {"203.0.113.5": 12, ...}: the keys
        if isinstance(value, list | tuple | set | frozenset):
            out += [str(item) for item in value]
    return tuple(dict.fromkeys(out))[:MAX_LIST]


class Step(NamedTuple):
    """One action to run: ``action`` names it in the journal, ``detail`` holds its input."""

    action: str  # notify | lock:<backend> | hold | ban
    subject: str
    detail: dict[str, Any]


class Outcome(NamedTuple):
    """How a step ended: its journal entry, state (done, failed, dry-run, skipped) and result."""

    action: str
    subject: str
    state: str
    result: str
    entry_id: int = 0


class Decision(NamedTuple):
    """The steps to run, and the actions left out with the reason for each."""

    steps: tuple[Step, ...]
    refused: tuple[tuple[str, str], ...]  # (action, why)
    wants_notify: bool


class Policy:
    """Severity -> actions, within the safety rules."""

    def __init__(
        self,
        *,
        severities: Mapping[str, Sequence[str]] | None = None,
        allow: Iterable[str] = (),
        trusted_networks: Iterable[IPNetwork] = (),
        max_locks_per_hour: int = 5,
        lock_backends: Sequence[str] = (),
        can_hold: bool = False,
        can_ban: bool = False,
    ) -> None:
        self.severities = {k: tuple(v) for k, v in (severities or DEFAULT_SEVERITIES).items()}
        self.allow = tuple(pattern.lower() for pattern in allow)
        self.trusted_networks = tuple(trusted_networks)
        self.max_locks_per_hour = max_locks_per_hour
        self.lock_backends = tuple(lock_backends)
        self.can_hold = can_hold
        self.can_ban = can_ban

    def allowlisted(self, account: str) -> bool:
        """Whether ``account`` matches an allowlist entry (``user@dom``, ``@dom`` or ``user``)."""
        name = account.lower()
        domain = name.rpartition("@")[2] if "@" in name else ""
        return any(
            pattern == name or (pattern.startswith("@") and pattern[1:] == domain)
            for pattern in self.allow
        )

    def trusted(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in network for network in self.trusted_networks)

    def decide(self, request: ActionRequest, *, locks_last_hour: int) -> Decision:
        wanted = self.severities.get(request.severity, ())
        steps: list[Step] = []
        refused: list[tuple[str, str]] = []
        if "lock" in wanted or "hold" in wanted:
            why_not = self._why_not_lock(request, locks_last_hour)
            account = request.subject.lower()
            if why_not:
                refused += [(action, why_not) for action in ("lock", "hold") if action in wanted]
            else:
                if "lock" in wanted:
                    if not self.lock_backends:
                        refused.append(("lock", "no lock backend is configured"))
                    steps += [Step(f"lock:{name}", account, {}) for name in self.lock_backends]
                if "hold" in wanted:
                    steps += self._hold(request, account, refused)
        elif request.subject_kind == "uid" and "hold" in wanted:
            steps += self._hold(request, request.subject, refused)
        if "ban" in wanted:
            steps += self._bans(request, refused)
        return Decision(tuple(steps), tuple(refused), "notify" in wanted)

    def _why_not_lock(self, request: ActionRequest, locks_last_hour: int) -> str:
        if request.subject_kind != "account":
            return f"a subject of kind {request.subject_kind!r} is not an account"
        if not request.lockable:
            return (
                "no evidence from the account's own successful sessions or messages "
                "(failed logins alone never lock an account)"
            )
        try:
            account = subjects.account(request.subject)
        except UnsafeSubjectError as exc:
            return str(exc)
        if self.allowlisted(account):
            return "the account is allowlisted"
        if locks_last_hour >= self.max_locks_per_hour:
            return (
                f"the cap of {self.max_locks_per_hour} automatic locks per hour is reached; "
                f"to lock by hand: postwatch lock {account}"
            )
        return ""

    def _hold(
        self, request: ActionRequest, owner: str, refused: list[tuple[str, str]]
    ) -> list[Step]:
        if not self.can_hold:
            refused.append(("hold", "no queue hold is configured"))
            return []
        queue_ids = [qid for qid in request.queue_ids if _is_queue_id(qid)]
        senders = list(
            dict.fromkeys(
                [s.lower() for s in request.senders if _is_account(s)]
                + ([owner] if "@" in owner and request.subject_kind == "account" else [])
            )
        )
        if not senders and not queue_ids:
            refused.append(("hold", "no sender address or queue ID to find its mail by"))
            return []
        return [Step("hold", owner, {"senders": senders, "queue_ids": queue_ids})]

    def _bans(self, request: ActionRequest, refused: list[tuple[str, str]]) -> list[Step]:
        if not self.can_ban:
            refused.append(("ban", "no ban log is configured"))
            return []
        owner = set(request.known_ips)  # the account owner's own addresses: never banned
        candidates = [ip for ip in request.ips if ip not in owner]
        if request.subject_kind == "ip":
            candidates.insert(0, request.subject)
        steps = []
        for text in dict.fromkeys(candidates):
            try:
                address = subjects.ip(text)
            except UnsafeSubjectError:
                refused.append(("ban", f"not an IP address: {subjects.shown(text)}"))
                continue
            if self.trusted(address):
                refused.append(("ban", f"{address} is in a trusted network"))
                continue
            steps.append(
                Step(
                    "ban", address, {"reason": subjects.slug(request.rule), "for": request.subject}
                )
            )
        return steps


def _is_queue_id(text: str) -> bool:
    try:
        subjects.queue_id(text)
    except UnsafeSubjectError:
        return False
    return True


def _is_account(text: str) -> bool:
    try:
        subjects.account(text)
    except UnsafeSubjectError:
        return False
    return True
