"""Which subjects a record concerns, and what the config says about each of them.

Subjects: an account (the SASL or Dovecot login, lower-cased), a client IP, a pickup uid
(per host) and the sender domain of local submissions.  Config patterns match them:
``user@dom`` and ``@dom`` (accounts and sender domains), ``uid:33`` or ``uid:33@host``,
an IP address or network (clients).  Allowlisted subjects are never scored; trusted
networks are never foreign and never banned.
"""

from __future__ import annotations

import functools
import ipaddress

from postwatch.config import DetectSettings, IPNetwork, Override, Thresholds
from postwatch.detect.alerts import Subject
from postwatch.detect.profiles import Profile
from postwatch.detect.state import SubjectState
from postwatch.records import Message

MAX_ADDRESS = 320  # characters: an address or login (attacker text) is kept to this


def folded(address: str) -> str:
    """An address or login name as the engine compares and keeps it: lower-cased, bounded."""
    return address.lower()[:MAX_ADDRESS]


@functools.lru_cache(maxsize=65536)
def account(name: str) -> Subject:
    """The subject of a login name (trimmed, lower-cased, bounded; attacker text)."""
    return Subject("account", folded(name.strip()))


@functools.lru_cache(maxsize=4096)
def pickup_subjects(uid: int, host: str, domain: str) -> tuple[Subject, ...]:
    """A local submission's subjects: its uid on its host, and its sender domain."""
    subject = Subject("uid", str(uid), host)
    domain = domain.lower()[:255]
    return (subject, Subject("sender_domain", domain)) if domain else (subject,)


def is_network(pattern: str) -> bool:
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return True


class SubjectRules:
    """Overrides, allowlists and trusted networks, matched once per subject (cached)."""

    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        self._overrides = {item.pattern: item for item in settings.overrides}
        self._override_nets = [
            (ipaddress.ip_network(item.pattern, strict=False), item)
            for item in settings.overrides
            if is_network(item.pattern)
        ]
        self._allow = {pattern for pattern in settings.allow if not is_network(pattern)}
        self._allow.update(
            item.pattern
            for item in settings.overrides
            if item.allow and not is_network(item.pattern)
        )
        self._allow_nets = [
            ipaddress.ip_network(p, strict=False) for p in settings.allow if is_network(p)
        ]
        self._allow_nets += [net for net, item in self._override_nets if item.allow]
        self._allow_nets += list(settings.trusted_networks)  # never foreign, never banned
        self.ip_allowed = functools.lru_cache(maxsize=65536)(self._ip_allowed)
        self.allowed = functools.lru_cache(maxsize=65536)(self._allowed)

    def subjects(self, message: Message) -> tuple[Subject, ...]:
        """The sending subjects of a message: its account, or its uid and sender domain."""
        if message.sasl_username:
            return (account(message.sasl_username),)
        uid = message.pickup_uid
        if uid is not None and uid not in self.settings.trusted_uids:
            domain = (message.sender or "").rpartition("@")[2]
            return pickup_subjects(uid, message.host, domain)
        return ()

    def new_state(self, subject: Subject, profile: Profile) -> SubjectState:
        """A fresh in-memory state for ``subject``, with its settings resolved."""
        override = self.override(subject)
        settings = self.settings
        pickup = subject.kind in ("uid", "sender_domain")
        floor = settings.pickup_floor if pickup else settings.floor
        ceiling = settings.pickup_ceiling if pickup else settings.ceiling
        thresholds = settings.thresholds
        trusted: tuple[IPNetwork, ...] = ()
        if override is not None:
            floor = override.floor or floor
            ceiling = override.ceiling or ceiling
            thresholds = override.thresholds or thresholds
            trusted = override.trusted_networks
        state = SubjectState(
            subject,
            profile,
            allowed=self.allowed(subject),
            thresholds=thresholds,
            floor=floor,
            ceiling=ceiling,
            trusted=trusted,
        )
        state.floor_override = override is not None and override.floor is not None
        return state

    def thresholds(self, subject: Subject) -> Thresholds:
        override = self.override(subject)
        if override is not None and override.thresholds is not None:
            return override.thresholds
        return self.settings.thresholds

    @staticmethod
    def patterns(subject: Subject) -> tuple[str, ...]:
        """The config patterns that may name ``subject``, most specific first."""
        if subject.kind == "account":
            domain = subject.name.rpartition("@")[2]
            return (subject.name, "@" + domain) if "@" in subject.name else (subject.name,)
        if subject.kind == "uid":
            return (f"uid:{subject.name}@{subject.scope}", f"uid:{subject.name}")
        if subject.kind == "sender_domain":
            return ("@" + subject.name,)
        return (subject.name,)

    def override(self, subject: Subject) -> Override | None:
        for pattern in self.patterns(subject):
            found = self._overrides.get(pattern)
            if found is not None:
                return found
        if subject.kind == "ip" and self._override_nets:
            address = ipaddress.ip_address(subject.name)
            for network, override in self._override_nets:
                if address in network:
                    return override
        return None

    def _allowed(self, subject: Subject) -> bool:
        if subject.kind == "ip":
            return bool(self.ip_allowed(subject.name))
        return any(pattern in self._allow for pattern in self.patterns(subject))

    def _ip_allowed(self, ip: str) -> bool:
        if ip in self._allow:
            return True
        if not self._allow_nets:
            return False
        address = ipaddress.ip_address(ip)
        return any(address in network for network in self._allow_nets)
