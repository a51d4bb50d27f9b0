"""Abuse episodes, each a source of sessions that keeps its ground truth.

An episode is a source of sessions (see :class:`bench.traffic.Server.run`) that remembers
which subject (account, IP, uid) was abused, the first abusive line and every abusive
message's queue ID.  Shapes follow real incidents: a reported case of a stolen
submission password (foreign IPs without reverse DNS, random 32-character HELOs revealed by a
cleanup header check, hundreds of messages an hour to freemail, a third pushed back), botnet
"low and slow" sending, credential stuffing from a rented server, a PHP form spamming
through ``sendmail`` (pickup, uid 33), and SASL password guessing.

What every episode shares is in :mod:`bench.episode`; here also how a case picks its victim
and its hour.  The quieter habits, which leave fewer traces, are in :mod:`bench.quiet_abuse`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence

from bench import refusals
from bench.dovecot import imap_failure
from bench.episode import Episode, Spam, StolenLogin, arrivals, random_helo, spam
from bench.networks import Network, foreign_networks, networks
from bench.population import (
    DAY,
    ROLES,
    Account,
    Population,
    endpoint,
    windows_name,
)
from bench.traffic import Action, Endpoint, Server


class Burst(StolenLogin):
    """A stolen password used in a burst: foreign IPs, random HELOs, hundreds an hour."""

    kind = "burst"
    mail = Spam(3, (12000, 26000), "tool")
    per_session = 3.0

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 1.5,
        per_hour: int = 600,
        addresses: int = 2,
    ) -> None:
        super().__init__(server, rng, account, start, hours, per_hour)
        pool = (
            networks("hosting", "SG")
            + networks("residential", "BR")
            + networks("residential", "VN")
            + networks("hosting", "US")
        )
        self.ips = [rng.choice(pool).address(rng) for _ in range(addresses)]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        for ts in self.arrivals(self.start):
            yield ts, self._session(self.rng.choice(self.ips), self.rng.randint(1, 5))

    def _session(self, ip: str, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            client = Endpoint(ip, "unknown", "", random_helo(rng))
            self.send(ts, client, [self.spam_message(ts) for _ in range(count)])

        return act


class LowAndSlow(StolenLogin):
    """A stolen password shared by a botnet: many countries, a message or two per address."""

    kind = "low_and_slow"
    mail = Spam(1, (3000, 9000), "outlook", ("submission", "smtps"), "LOGIN")

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        per_hour: int = 20,
        addresses: int = 130,
    ) -> None:
        self.hours = addresses * 1.4 / per_hour  # 1.4 messages per address on average
        super().__init__(server, rng, account, start, self.hours, per_hour)
        pool = foreign_networks()
        self.bots: list[tuple[str, Network]] = []
        for index in range(addresses):
            net = pool[index % len(pool)] if index < len(pool) else rng.choice(pool)
            self.bots.append((net.address(rng), net))
        rng.shuffle(self.bots)

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        times = sorted(self.start + rng.uniform(0, self.hours * 3600) for _ in self.bots)
        for ts, (ip, net) in zip(times, self.bots, strict=True):
            yield ts, self._session(ip, net)

    def _session(self, ip: str, net: Network) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            client = endpoint(
                ip,
                net,
                windows_name(rng) if rng.random() < 0.6 else random_helo(rng)[: rng.randint(6, 12)],
            )
            count = 1 if rng.random() < 0.6 else 2  # 1.4 on average
            self.send(ts, client, [self.spam_message(ts) for _ in range(count)])

        return act


class CredentialStuffing(StolenLogin):
    """One rented server tries leaked passwords on many accounts, gets in, sends spam."""

    kind = "credential_stuffing"
    mail = Spam(4, (4000, 12000), "php", method="LOGIN")

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        population: Population,
        account: Account,
        start: float,
        tries: int = 120,
        messages: int = 60,
    ) -> None:
        super().__init__(server, rng, account, start)
        self.messages = messages
        host = rng.choice(networks("hosting", "US") + networks("hosting", "FR"))
        self.ip = host.address(rng)
        others = [acc.address for acc in population.accounts if acc.address != account.address]
        self.usernames = rng.sample(others, min(len(others), tries))
        self.subjects.append((self.ip, "ip"))

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        names = list(self.usernames)
        while names:
            size = rng.randint(1, 3)
            batch, names = names[:size], names[size:]
            yield ts, self._guesses(batch)
            ts += rng.uniform(5, 40)
        ts += rng.uniform(60, 600)  # the leaked password that works: now it sends
        sent = 0
        while sent < self.messages:
            count = rng.randint(1, 3)
            yield ts, self._spam(count)
            sent += count
            ts += rng.uniform(60, 240)

    def _guesses(self, names: Sequence[str]) -> Action:
        def act(ts: float) -> None:
            refusals.auth_failures(
                self.server,
                ts,
                Endpoint(self.ip, "unknown", "", ""),
                names,
                service="submission",
                method="LOGIN",
            )
            self.note(self.ip, ts)

        return act

    def _spam(self, count: int) -> Action:
        def act(ts: float) -> None:
            client = Endpoint(self.ip, "unknown", "", f"[{self.ip}]")
            self.send(ts, client, [self.spam_message(ts) for _ in range(count)])

        return act


class PhpPickup(Episode):
    """An exploited PHP script on a customer's site spamming through sendmail (uid 33)."""

    kind = "php_pickup"
    mail = Spam(6, (2500, 7000), "php")

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        domain: str,
        start: float,
        hours: float = 1.5,
        per_hour: int = 400,
    ) -> None:
        super().__init__(server, rng)
        self.domain = domain
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        self.subjects = [("33", "uid"), (domain, "sender_domain")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        for ts in arrivals(self.rng, self.start, self.end, self.per_hour):
            yield ts, self._message()

    def _message(self) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            local = "".join(
                rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(5, 12))
            )
            sender = f"{local}@{self.domain}"
            mail = spam(rng, self.server, sender, ts, self.mail)
            queued = self.server.pickup(ts, 33, sender, mail)
            self.queued.append(queued)
            self.note("33", ts)
            self.note(self.domain, ts)

        return act


class BruteForce(Episode):
    """SASL password guessing from a few addresses over many user names; never succeeds."""

    kind = "brute_force"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        population: Population,
        start: float,
        hours: float = 2.5,
        addresses: int = 4,
    ) -> None:
        super().__init__(server, rng)
        self.start = start
        self.end = start + hours * 3600
        pool = (
            networks("residential", "CN")
            + networks("residential", "RU")
            + networks("residential", "VN")
            + networks("hosting", "CN")
        )
        self.attackers = [rng.choice(pool).address(rng) for _ in range(addresses)]
        dictionary = [
            f"{role}@{domain}"
            for domain in population.domains[:12]
            for role in (*ROLES, "admin", "test", "sales", "support", "webmaster")
        ]
        dictionary += rng.sample(population.addresses, min(40, len(population.addresses)))
        rng.shuffle(dictionary)
        self.dictionary = dictionary
        self.targets: list[str] = []
        self.subjects = [(ip, "ip") for ip in self.attackers]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        clocks = [self.start + rng.uniform(0, 900) for _ in self.attackers]
        cursor = 0
        while True:
            index = min(range(len(clocks)), key=clocks.__getitem__)
            ts = clocks[index]
            if ts >= self.end:
                return
            names = [
                self.dictionary[(cursor + step) % len(self.dictionary)]
                for step in range(rng.randint(1, 3))
            ]
            cursor += len(names)
            for name in names:
                if name not in self.targets:
                    self.targets.append(name)
            yield ts, self._attempt(self.attackers[index], names, index == 0 and rng.random() < 0.3)
            clocks[index] = ts + rng.uniform(8, 45)

    def _attempt(self, ip: str, names: Sequence[str], imap: bool) -> Action:
        def act(ts: float) -> None:
            if imap:
                imap_failure(self.server, ts, names[0], ip, attempts=len(names))
            else:
                refusals.auth_failures(
                    self.server,
                    ts,
                    Endpoint(ip, "unknown", "", ""),
                    names,
                    service=self.server.rng.choice(("submission", "smtps")),
                    method="LOGIN",
                )
            self.note(ip, ts)

        return act


def pick_victim(population: Population, rng: random.Random) -> Account:
    """An ordinary person who sends a few messages a day: the usual stolen password."""
    people = [
        account
        for account in population.accounts
        if account.kind == "person" and 1.0 <= account.daily <= 8.0
    ]
    return rng.choice(people)


def day_start(server: Server, day: int, hour: float) -> float:
    return server.start + day * DAY + hour * 3600
