"""Shared login addresses: one address logging in as several accounts that do not know it.

A botnet node or a rented server works through a list of stolen passwords: it logs in as
one account after another, and each sends too little to stand out on its own.  Per address
it does stand out.  A successful login counts here when it comes from a foreign address
whose network operator (its ASN; its /24 or /48 without one) is not a confirmed origin of
an account with a history.  Each address remembers such accounts for 24 h; once
``shared_accounts`` of them, of at least two domains, logged in from it:

- the address (subject ``ip``) gets ``login_hopping``: 40 points; twice as many accounts: 70;
  four times: 100;
- each of those accounts gets ``shared_login`` (family ``credentials``): 25; twice as many
  accounts: 40.

What it leaves alone: an office behind one NAT address (its accounts confirmed it, and they
share one domain), a mobile carrier's addresses (an operator its customers' accounts know),
a provider's rotating ranges (one origin, left out) and addresses without history behind
them.
"""

from __future__ import annotations

from postwatch.detect.alerts import Finding, Subject
from postwatch.detect.state import SubjectState, due
from postwatch.detect.windows import Distinct, ExpiringMap
from postwatch.geo import GeoInfo

SPAN = 86400.0
MEMBERS_CAP = 200  # accounts remembered per address


class Address:
    """Accounts that logged in from one address new to them, over the last day."""

    __slots__ = ("accounts", "emitted")

    def __init__(self) -> None:
        self.accounts = Distinct(SPAN, MEMBERS_CAP)
        self.emitted: dict[str, tuple[int, float]] = {}


class SharedLoginSignal:
    """Counts, per address, the accounts it logged in as without being their usual place."""

    def __init__(self, shared_accounts: int, min_history: float) -> None:
        self.shared_accounts = shared_accounts
        self.min_history = min_history
        self.addresses: ExpiringMap[str, Address] = ExpiringMap(SPAN + 600, 200_000)

    def on_login(self, now: float, state: SubjectState, info: GeoInfo, out: list[Finding]) -> None:
        """A successful login or message of an account from ``info`` (foreign, judged)."""
        profile = state.profile
        if info.provider or not profile.established(now, self.min_history):
            return
        kind, value = ("asn", info.asn) if info.asn else ("net", info.netblock)
        if not value or profile.origin_known(kind, value, now, self.min_history):
            return
        address = self.addresses.touch(info.ip, now, Address)
        accounts = address.accounts
        if not accounts.add(now, state.subject.name):
            return  # the same account again: nothing new
        count = len(accounts)
        if count < self.shared_accounts:
            return
        members = sorted(map(str, accounts.keys()))
        if len({_domain(name) for name in members}) < 2:
            return
        base = self.shared_accounts
        points = 100 if count >= 4 * base else 70 if count >= 2 * base else 40
        if due(address.emitted, "login_hopping", points, now):
            out.append(
                Finding(
                    Subject("ip", info.ip),
                    "login_hopping",
                    points,
                    f"logged in as {count} accounts of other places in 24h",
                )
            )
        points = 40 if count >= 2 * base else 25
        for name in members:
            if due(address.emitted, name, points, now):
                out.append(
                    Finding(
                        Subject("account", name),
                        "shared_login",
                        points,
                        f"logged in from {info.ip}, which logged in as {count - 1} other "
                        "accounts in 24h",
                    )
                )

    def expire(self, now: float) -> None:
        self.addresses.expire(now)


def _domain(name: str) -> str:
    return name.rpartition("@")[2]
