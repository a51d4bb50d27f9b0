"""Bogus HELO names: what mail clients never say but spam software does.

The HELO is attacker text.  It is only compared, measured and echoed (truncated) as
evidence, never parsed for anything else.  Verdicts, strongest first:

- a known ratware name (``ylmf-pc``, ``localhost`` from outside ...): 30 points;
- our own host name: 30;
- random-looking (``EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI``): 30;
- an address literal of a public address that is not the client's: 20 (a private
  literal such as ``[192.168.1.20]`` is a client behind NAT and fine);
- not a fully qualified name (``DESKTOP-7F3K2LP`` from Outlook is common): 5;
- the loopback literal ``[127.0.0.1]`` from outside: 5 (K-9 Mail, Thunderbird for Android
  before mid-2025 and Delta Chat say it from every phone).

Those last two verdicts are *weak*: a desktop's or a phone's own name is its habit, so the
detector excuses a weak HELO the account has used for ``min_history`` (see ``profiles``)
or that comes from one of its confirmed networks.  The others are never a mail client's
habit.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections.abc import Iterable
from typing import NamedTuple

from postwatch.detect.alerts import Finding
from postwatch.detect.state import SubjectState

MAX_EVIDENCE = 80
WEAK = 5  # the points of a verdict a real mail client may earn every day
_VOWELS = frozenset("aeiouy")
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


class HeloVerdict(NamedTuple):
    points: int
    detail: str


def looks_random(label: str) -> bool:
    """Whether one name label looks machine-generated (long, mixed, unpronounceable)."""
    text = label.lower()
    if len(text) < 10 or not set(text) <= _ASCII_ALNUM:
        return False
    digits = sum(ch.isdigit() for ch in text)
    transitions = sum(1 for a, b in itertools.pairwise(text) if a.isdigit() != b.isdigit())
    if digits >= 2 and transitions >= 4:
        return True
    run = longest = 0
    for ch in text:
        run = run + 1 if ch.isalpha() and ch not in _VOWELS else 0
        longest = max(longest, run)
    return longest >= 6


class HeloJudge:
    """Judge HELO names against our host names and a list of ratware names."""

    def __init__(
        self, hostnames: Iterable[str], ratware: Iterable[str], min_history: float = 86400.0
    ) -> None:
        self._hostnames = frozenset(name.lower().rstrip(".") for name in hostnames)
        self._ratware = frozenset(name.lower() for name in ratware)
        self.min_history = min_history
        self.judge = functools.lru_cache(maxsize=8192)(self._judge)

    def on_success(
        self,
        now: float,
        state: SubjectState,
        helo: str,
        client_ip: str,
        log_host: str,
        learning: bool,
        out: list[Finding],
    ) -> bool:
        """The HELO of an account's successful session or message; True when it changed
        the account's profile (a weak HELO learned or seen)."""
        verdict = self.judge(helo, client_ip, log_host)
        shown = helo[:MAX_EVIDENCE]
        habit = verdict is not None and verdict.points <= WEAK
        if habit:
            # a desktop's own name: no news when the account has used it for long, or when
            # it comes from one of the account's confirmed networks
            profile = state.profile
            if learning:
                profile.see_origin("helo", shown, now, True)
            elif profile.visit_origin("helo", shown, now, self.min_history) or state.familiar:
                verdict = None
        if learning:
            return habit
        if shown not in state.helos:
            state.helos.append(shown)
        if verdict is not None and state.due("bogus_helo", verdict.points, now):
            out.append(Finding(state.subject, "bogus_helo", verdict.points, verdict.detail))
        return habit

    def _judge(self, helo: str, client_ip: str, log_host: str) -> HeloVerdict | None:
        name = helo.strip().lower().rstrip(".")
        if not name:
            return None
        shown = helo[:MAX_EVIDENCE]
        if name in self._ratware:
            return HeloVerdict(30, f"HELO {shown!r} is a known spam-software name")
        if name in self._hostnames or (log_host and name == log_host.lower()):
            return HeloVerdict(30, f"HELO {shown!r} claims to be this mail server")
        literal = _address_literal(name)
        if literal is not None:
            if literal.is_loopback:
                return HeloVerdict(WEAK, f"HELO {shown!r} is a loopback address from outside")
            if literal.is_private or str(literal) == _normal(client_ip):
                return None
            return HeloVerdict(20, f"HELO {shown!r} is not the client's address {client_ip}")
        labels = name.split(".")
        if looks_random(labels[0]) and (len(labels) == 1 or len(labels[0]) >= 12):
            return HeloVerdict(30, f"HELO {shown!r} looks randomly generated")
        if len(labels) == 1:
            return HeloVerdict(WEAK, f"HELO {shown!r} is not a fully qualified name")
        return None


def _address_literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if text.startswith("ipv6:"):
        text = text[5:]
    if not text or not (text[0].isdigit() or ":" in text):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normal(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
