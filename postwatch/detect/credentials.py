"""Credential abuse: SASL and Dovecot login failures, per client IP and per account.

Per IP (subject kind ``ip``), over the last hour:

- ``brute_force``: ``brute_failures`` failures (40 points; 3x: 70; 10x: 100) or
  ``brute_usernames`` distinct usernames tried (40; 3x: 70; 10x: 100);
- ``relay_probe``: ``Relay access denied`` rejects: 1: 25, 2: 40, 5: 70, 10: 100.

Per account:

- ``credential_stuffing`` (own): a success from an IP (or its /24, /48) that failed
  ``stuffing_usernames`` other usernames, or failed this account ``stuffing_failures``
  times, in the hour before: 40 (both: 50); the guessing IP gets ``guessed_login`` (30);
- ``login_attempts`` (not own): ``account_fail_ips`` distinct IPs failed this account in
  1 h: 15, twice as many: 30.  Anyone can cause these, so they never make an account
  critical on their own.

Failures for an account from one of its own confirmed places (its home address or network)
are its owner's device with a stale password: the engine leaves them out, and a success
there is no stuffing.  Failures for other usernames from that place still count.

One attempt can be logged twice (Postfix's SASL warning and Dovecot's auth line, or the
auth line and the login process summary); the failure count of an IP is the larger of the
auth-process count and the sum of the other two, so no attempt counts twice.
"""

from __future__ import annotations

from collections import deque

from postwatch.detect.alerts import Finding, Subject
from postwatch.detect.state import SubjectState, due
from postwatch.detect.subjects import folded
from postwatch.detect.windows import Distinct, ExpiringMap, Windows

SPAN = 3600.0
SOURCES = ("smtpd", "login", "auth")  # Postfix SASL warning, Dovecot login process, auth
PER_USER_CAP = 64


class ClientFailures:
    """Failures from one IP (or one network) in the last hour."""

    __slots__ = ("emitted", "per_user", "relay", "sources", "usernames")

    def __init__(self) -> None:
        self.emitted: dict[str, tuple[int, float]] = {}
        self.sources = Windows((SPAN,), len(SOURCES), 5.0)
        self.usernames = Distinct(SPAN, 2000)
        self.per_user: dict[str, deque[float]] = {}
        self.relay = Windows((SPAN,), 1, 5.0)

    def add_failure(self, now: float, user: str, source: int, attempts: int) -> None:
        self.sources.add(
            now, *[attempts if index == source else 0 for index in range(len(SOURCES))]
        )
        if not user:
            return
        self.usernames.add(now, user)
        times = self.per_user.get(user)
        if times is None:
            if len(self.per_user) >= 2 * self.usernames.cap:
                self.per_user = {
                    name: when for name, when in self.per_user.items() if name in self.usernames
                }
            times = self.per_user[user] = deque(maxlen=PER_USER_CAP)
        times.append(now)

    def failures(self, now: float) -> int:
        smtpd, login, auth = self.sources.advance(now)[0]
        return max(auth, smtpd + login)

    def failures_for(self, user: str, now: float) -> int:
        times = self.per_user.get(user)
        if not times:
            return 0
        cutoff = now - SPAN
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)


class AccountFailures:
    """IPs that failed one account in the last hour."""

    __slots__ = ("emitted", "ips")

    def __init__(self) -> None:
        self.emitted: dict[str, tuple[int, float]] = {}
        self.ips = Distinct(SPAN, 1000)


def _level(count: int, base: int) -> int:
    if count >= 10 * base:
        return 100
    if count >= 3 * base:
        return 70
    if count >= base:
        return 40
    return 0


class CredentialSignal:
    """Counts login failures and relay probes; judges brute force and stuffing."""

    def __init__(
        self,
        brute_failures: int,
        brute_usernames: int,
        stuffing_usernames: int,
        stuffing_failures: int,
        account_fail_ips: int,
    ) -> None:
        self.brute_failures = brute_failures
        self.brute_usernames = brute_usernames
        self.stuffing_usernames = stuffing_usernames
        self.stuffing_failures = stuffing_failures
        self.account_fail_ips = account_fail_ips
        self.clients: ExpiringMap[str, ClientFailures] = ExpiringMap(SPAN + 600, 1_000_000)
        self.networks: ExpiringMap[str, ClientFailures] = ExpiringMap(SPAN + 600, 1_000_000)
        self.accounts: ExpiringMap[str, AccountFailures] = ExpiringMap(SPAN + 600, 500_000)

    def on_failure(
        self,
        now: float,
        ip: str,
        netblock: str,
        username: str,
        source: int,
        attempts: int,
        foreign: bool,
        account: Subject | None,
        out: list[Finding],
    ) -> None:
        """``attempts`` failed logins from ``ip`` for ``username`` (may be empty) via
        ``source`` (an index into ``SOURCES``)."""
        user = folded(username)
        for table, key in ((self.clients, ip), (self.networks, netblock)):
            state = table.touch(key, now, ClientFailures)
            state.add_failure(now, user, source, attempts)
        if account is not None and ip:
            failing = self.accounts.touch(account.name, now, AccountFailures)
            failing.ips.add(now, ip)
            count = len(failing.ips)
            points = (
                30
                if count >= 2 * self.account_fail_ips
                else 15
                if count >= self.account_fail_ips
                else 0
            )
            if points and due(failing.emitted, "login_attempts", points, now):
                out.append(
                    Finding(
                        account,
                        "login_attempts",
                        points,
                        f"{count} IPs failed to log in as this account in 1h",
                        own=False,
                    )
                )
        if foreign:
            self._judge_ip(now, ip, out)

    def on_relay_denied(self, now: float, ip: str, out: list[Finding]) -> None:
        state = self.clients.touch(ip, now, ClientFailures)
        count = state.relay.add(now, 1)[0][0]
        points = 100 if count >= 10 else 70 if count >= 5 else 40 if count >= 2 else 25
        if due(state.emitted, "relay_probe", points, now):
            out.append(
                Finding(
                    Subject("ip", ip), "relay_probe", points, f"{count} relay attempts denied in 1h"
                )
            )

    def _judge_ip(self, now: float, ip: str, out: list[Finding]) -> None:
        state = self.clients.get(ip)
        if state is None:
            return
        failures = state.failures(now)
        users = len(state.usernames)
        points = max(_level(failures, self.brute_failures), _level(users, self.brute_usernames))
        if points and due(state.emitted, "brute_force", points, now):
            out.append(
                Finding(
                    Subject("ip", ip),
                    "brute_force",
                    points,
                    f"{failures} failed logins for {users} usernames in 1h",
                )
            )

    def on_success(
        self, now: float, ip: str, netblock: str, state: SubjectState, out: list[Finding]
    ) -> None:
        """A successful login: was it preceded by guessing from the same place?"""
        user = state.subject.name
        best_others, best_same, where = 0, 0, ip
        for table, key in ((self.clients, ip), (self.networks, netblock)):
            failures = table.get(key)
            if failures is None:
                continue
            failures.usernames.advance(now)
            others = len(failures.usernames) - (1 if user in failures.usernames else 0)
            same = failures.failures_for(user, now)
            if others > best_others or same > best_same:
                best_others, best_same = max(best_others, others), max(best_same, same)
                where = key
        guessed_many = best_others >= self.stuffing_usernames
        guessed_this = best_same >= self.stuffing_failures
        if not (guessed_many or guessed_this):
            return
        points = 50 if guessed_many and guessed_this else 40
        if state.due("credential_stuffing", points, now):
            out.append(
                Finding(
                    state.subject,
                    "credential_stuffing",
                    points,
                    f"login from {ip} after {where} failed {best_same} times for "
                    f"this account and tried {best_others} other usernames in 1h",
                )
            )
        guesser = self.clients.get(ip)
        if guesser is not None and due(guesser.emitted, "guessed_login", 30, now):
            out.append(
                Finding(
                    Subject("ip", ip),
                    "guessed_login",
                    30,
                    f"failed logins from {ip} were followed by a successful login as {user[:80]!r}",
                )
            )

    def totals(self, ip: str, now: float) -> dict[str, int]:
        state = self.clients.get(ip)
        if state is None:
            return {}
        state.usernames.advance(now)
        return {
            "auth_failures_1h": state.failures(now),
            "usernames_tried_1h": len(state.usernames),
            "relay_denied_1h": state.relay.advance(now)[0][0],
        }

    def account_totals(self, account: str, now: float) -> dict[str, int]:
        failing = self.accounts.get(account)
        if failing is None:
            return {}
        failing.ips.advance(now)
        return {"failing_ips_1h": len(failing.ips)}

    def expire(self, now: float) -> None:
        self.clients.expire(now)
        self.networks.expire(now)
        self.accounts.expire(now)
