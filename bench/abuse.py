"""Abuse episodes, each a source of sessions that keeps its ground truth.

An episode is a source of sessions (see :class:`bench.traffic.Server.run`) that remembers
which subject (account, IP, uid) was abused, the first abusive line and every abusive
message's queue ID.  Shapes follow real incidents: a reported case of a stolen
submission password (foreign IPs without reverse DNS, random 32-character HELOs revealed by a
cleanup header check, hundreds of messages an hour to freemail, a third pushed back), botnet
"low and slow" sending, credential stuffing from a rented server, a PHP form spamming
through ``sendmail`` (pickup, uid 33), and SASL password guessing.

Attacker habits that leave fewer traces: a stolen password used through the webmail (every
session from 127.0.0.1: no geography, no HELO worth judging), through a residential proxy
service in the victim's own country with a mail client's HELO, checked over IMAP from one
country before a rented server elsewhere sends the spam, and a login that sends as many
other people's addresses (forged envelope senders).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from typing import Any

from bench import refusals
from bench.dovecot import imap, imap_failure
from bench.networks import WEBMAIL_IP, Network, foreign_networks, networks
from bench.population import (
    DAY,
    FIRST_NAMES,
    LAST_NAMES,
    ROLES,
    Account,
    Population,
    endpoint,
    message_id,
    private_literal,
    windows_name,
)
from bench.traffic import Action, Endpoint, Outgoing, Queued, Server


def random_helo(rng: random.Random) -> str:
    """A spam tool's HELO: 32 random upper-case letters and digits, as in a reported case."""
    return "".join(rng.choices(string.ascii_uppercase + string.digits, k=32))


def harvested(rng: random.Random, server: Server) -> str:
    """A spam target: a random-looking address at a freemail platform."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = rng.choice(
        (
            f"{first}{last}{rng.randrange(1, 9999)}",
            f"{last}.{first}",
            f"{first[0]}{last}{rng.randrange(10, 99)}",
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 11))),
        )
    )
    return f"{local}@{server.directory.freemail_domain(rng)}"


class Episode:
    """A source of abusive sessions that remembers what it did."""

    kind = "episode"

    def __init__(self, server: Server, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.queued: list[Queued] = []
        self.first_line: dict[str, float] = {}  # subject -> first abusive line's time
        self.subjects: list[tuple[str, str]] = []  # (subject, kind)

    def sessions(self) -> Iterator[tuple[float, Action]]:
        raise NotImplementedError

    def note(self, subject: str, ts: float) -> None:
        if subject not in self.first_line or ts < self.first_line[subject]:
            self.first_line[subject] = ts

    def truth(self) -> list[dict[str, Any]]:
        """Golden entries: one per abused subject."""
        entries = []
        for subject, kind in self.subjects:
            first = (
                min(self.queued, key=lambda item: item.received)
                if self.queued and kind != "ip"
                else None
            )
            entries.append(
                {
                    "subject": subject,
                    "subject_kind": kind,
                    "first_abuse_ts": self.first_line.get(subject),
                    "first_abuse_queue_id": first.queue_id if first else None,
                    "abusive_messages": len(self.queued) if kind != "ip" else 0,
                    "queue_ids": [
                        item.queue_id for item in sorted(self.queued, key=lambda q: q.received)
                    ]
                    if kind != "ip"
                    else [],
                }
            )
        return entries


class Burst(Episode):
    """A stolen password used in a burst: foreign IPs, random HELOs, hundreds an hour."""

    kind = "burst"

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
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        pool = (
            networks("hosting", "SG")
            + networks("residential", "BR")
            + networks("residential", "VN")
            + networks("hosting", "US")
        )
        self.ips = [rng.choice(pool).address(rng) for _ in range(addresses)]
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        per_session = 3.0
        while ts < self.end:
            yield ts, self._session(rng.choice(self.ips), rng.randint(1, 5))
            ts += rng.expovariate(self.per_hour / per_session / 3600)

    def _session(self, ip: str, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            domain = self.account.address.partition("@")[2]
            client = Endpoint(ip, "unknown", "", random_helo(rng))
            mails = [
                Outgoing(
                    self.account.address,
                    tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 3))),
                    int(rng.uniform(12000, 26000)),
                    f"{random_helo(rng)[:20].lower()}@{domain}",
                    spam=True,
                )
                for _ in range(count)
            ]
            queued = self.server.submit(
                ts, client, self.account.address, mails, service="submission", method="PLAIN"
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class LowAndSlow(Episode):
    """A stolen password shared by a botnet: many countries, a message or two per address."""

    kind = "low_and_slow"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        per_hour: int = 20,
        addresses: int = 130,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.hours = addresses * 1.4 / per_hour  # 1.4 messages per address on average
        self.per_hour = per_hour
        pool = foreign_networks()
        self.bots: list[tuple[str, Network]] = []
        for index in range(addresses):
            net = pool[index % len(pool)] if index < len(pool) else rng.choice(pool)
            self.bots.append((net.address(rng), net))
        rng.shuffle(self.bots)
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        times = sorted(self.start + rng.uniform(0, self.hours * 3600) for _ in self.bots)
        for ts, (ip, net) in zip(times, self.bots, strict=True):
            yield ts, self._session(ip, net)

    def _session(self, ip: str, net: Network) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            domain = self.account.address.partition("@")[2]
            client = endpoint(
                ip,
                net,
                windows_name(rng) if rng.random() < 0.6 else random_helo(rng)[: rng.randint(6, 12)],
            )
            count = 1 if rng.random() < 0.6 else 2  # 1.4 on average
            mails = [
                Outgoing(
                    self.account.address,
                    (harvested(rng, self.server),),
                    int(rng.uniform(3000, 9000)),
                    message_id(rng, "outlook", domain, ts),
                    spam=True,
                )
                for _ in range(count)
            ]
            queued = self.server.submit(
                ts,
                client,
                self.account.address,
                mails,
                service=rng.choice(("submission", "smtps")),
                method="LOGIN",
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class CredentialStuffing(Episode):
    """One rented server tries leaked passwords on many accounts, gets in, sends spam."""

    kind = "credential_stuffing"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        population: Population,
        account: Account,
        start: float,
        tries: int = 120,
        spam: int = 60,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.tries = tries
        self.spam = spam
        host = rng.choice(networks("hosting", "US") + networks("hosting", "FR"))
        self.ip = host.address(rng)
        self.network = host
        others = [acc.address for acc in population.accounts if acc.address != account.address]
        self.usernames = rng.sample(others, min(len(others), tries))
        self.subjects = [(account.address, "account"), (self.ip, "ip")]

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
        while sent < self.spam:
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
            rng = self.server.rng
            domain = self.account.address.partition("@")[2]
            client = Endpoint(self.ip, "unknown", "", f"[{self.ip}]")
            mails = [
                Outgoing(
                    self.account.address,
                    tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 4))),
                    int(rng.uniform(4000, 12000)),
                    message_id(rng, "php", domain, ts),
                    spam=True,
                )
                for _ in range(count)
            ]
            queued = self.server.submit(
                ts, client, self.account.address, mails, service="submission", method="LOGIN"
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class PhpPickup(Episode):
    """An exploited PHP script on a customer's site spamming through sendmail (uid 33)."""

    kind = "php_pickup"

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
        rng = self.rng
        ts = self.start
        while ts < self.end:
            yield ts, self._message()
            ts += rng.expovariate(self.per_hour / 3600)

    def _message(self) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            local = "".join(
                rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(5, 12))
            )
            sender = f"{local}@{self.domain}"
            mail = Outgoing(
                sender,
                tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 6))),
                int(rng.uniform(2500, 7000)),
                message_id(rng, "php", self.domain, ts),
                spam=True,
            )
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


class WebmailSpam(Episode):
    """A stolen password used through the webmail: every session comes from 127.0.0.1.

    The spammer's script drives the webmail: each send is an IMAP login and one submission
    over loopback with the webmail's HELO, several hundred an hour to harvested freemail
    addresses.  Nothing about the client can be judged; what the mail does can.
    """

    kind = "webmail_spam"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 1.5,
        per_hour: int = 400,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        while ts < self.end:
            yield ts, self._send()
            ts += rng.expovariate(self.per_hour / 3600)

    def _send(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            imap(server, ts, self.account.address, WEBMAIL_IP, rng.uniform(0.2, 1.5))
            domain = self.account.address.partition("@")[2]
            mail = Outgoing(
                self.account.address,
                tuple(harvested(rng, server) for _ in range(rng.randint(1, 6))),
                int(rng.uniform(3000, 15000)),
                message_id(rng, "roundcube", domain, ts),
                spam=True,
            )
            queued = server.submit(
                ts + rng.uniform(0.3, 2.0),
                endpoint(WEBMAIL_IP, None, "webmail.example.com"),
                self.account.address,
                [mail],
                service="submission",
                method="PLAIN",
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class HomeProxy(Episode):
    """A stolen password used through a residential proxy service in the victim's country.

    Every session leaves from another home or mobile address of the victim's own country
    (often the victim's own provider), with a mail client's HELO: no new country, often no
    new network operator.  Volume, recipients and the receivers' replies must tell.
    """

    kind = "home_proxy"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 2.0,
        per_hour: int = 250,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        self.pool = [
            net for net in networks(None, account.country) if net.kind in ("residential", "mobile")
        ]
        self.helo = rng.choice((private_literal(rng), "smtpclient.apple", windows_name(rng)))
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        per_session = 2.0
        while ts < self.end:
            yield ts, self._session(rng.randint(1, 3))
            ts += rng.expovariate(self.per_hour / per_session / 3600)

    def _session(self, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            net = rng.choice(self.pool)
            client = endpoint(net.address(rng), net, self.helo)
            domain = self.account.address.partition("@")[2]
            mails = [
                Outgoing(
                    self.account.address,
                    tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 3))),
                    int(rng.uniform(4000, 16000)),
                    message_id(rng, "thunderbird", domain, ts),
                    spam=True,
                )
                for _ in range(count)
            ]
            queued = self.server.submit(
                ts, client, self.account.address, mails, service="submission", method="PLAIN"
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class ImapThenSmtp(Episode):
    """The stolen password is checked over IMAP from one country; a rented server elsewhere
    sends the spam an hour or so later.

    The checker logs in two or three times within minutes (a residential address abroad);
    the sender is a hosting provider's machine whose HELO is its own reverse name (or its
    address literal), sending a modest hundred or so messages an hour.
    """

    kind = "imap_then_smtp"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 1.5,
        per_hour: int = 100,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.per_hour = per_hour
        checker = rng.choice(foreign_networks("residential"))
        self.checker_ip = checker.address(rng)
        self.sender_net = rng.choice(
            networks("hosting", "US") + networks("hosting", "SG") + networks("hosting", "CN")
        )
        self.sender_ip = self.sender_net.address(rng)
        self.spam_start = start + rng.uniform(1200, 5400)
        self.end = self.spam_start + hours * 3600
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        for _ in range(rng.randint(2, 3)):
            yield ts, self._check()
            ts += rng.uniform(20, 400)
        ts = self.spam_start
        per_session = 2.5
        while ts < self.end:
            yield ts, self._spam(rng.randint(1, 4))
            ts += rng.expovariate(self.per_hour / per_session / 3600)

    def _check(self) -> Action:
        def act(ts: float) -> None:
            imap(self.server, ts, self.account.address, self.checker_ip, self.rng.uniform(1, 8))

        return act

    def _spam(self, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            ip = self.sender_ip
            client = endpoint(ip, self.sender_net, self.sender_net.hostname(ip) or f"[{ip}]")
            domain = self.account.address.partition("@")[2]
            mails = [
                Outgoing(
                    self.account.address,
                    tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 3))),
                    int(rng.uniform(5000, 20000)),
                    message_id(rng, "outlook", domain, ts),
                    spam=True,
                )
                for _ in range(count)
            ]
            queued = self.server.submit(
                ts, client, self.account.address, mails, service="smtps", method="LOGIN"
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

        return act


class ForgedSenders(Episode):
    """A stolen login that sends as other people: every message with a forged envelope
    sender at someone else's domain (a partner business or a freemail platform).

    It comes from a rented server in the victim's own country with a proper reverse name
    and that name as HELO, a hundred or so messages an hour.
    """

    kind = "forged_senders"

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        population: Population,
        account: Account,
        start: float,
        hours: float = 1.5,
        per_hour: int = 120,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        hosts = networks("hosting", account.country) or networks("hosting", "DE")
        self.net = rng.choice(hosts)
        self.ip = self.net.address(rng)
        self.domains = population.partner_domains + list(server.directory.freemail_domains)
        self.subjects = [(account.address, "account")]

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        per_session = 2.0
        while ts < self.end:
            yield ts, self._session(rng.randint(1, 3))
            ts += rng.expovariate(self.per_hour / per_session / 3600)

    def _session(self, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            client = endpoint(self.ip, self.net, self.net.hostname(self.ip) or f"[{self.ip}]")
            mails = []
            for _ in range(count):
                domain = rng.choice(self.domains)
                sender = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{domain}"
                mails.append(
                    Outgoing(
                        sender,
                        tuple(harvested(rng, self.server) for _ in range(rng.randint(1, 3))),
                        int(rng.uniform(4000, 14000)),
                        message_id(rng, "outlook", domain, ts),
                        spam=True,
                    )
                )
            queued = self.server.submit(
                ts, client, self.account.address, mails, service="submission", method="LOGIN"
            )
            self.queued += queued
            self.note(self.account.address, queued[0].received)

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
