"""What every abuse episode shares: the ground truth it keeps, a stolen login, its spam.

An episode is a source of sessions (see :class:`bench.traffic.Server.run`) that remembers
which subject (account, IP, uid) was abused, the first abusive line and every abusive
message's queue ID.  :class:`StolenLogin` is an account whose password is in the wrong
hands: it sends :func:`spam` shaped by a :class:`Spam`, at random :func:`arrivals`.
The episodes themselves are in :mod:`bench.abuse` and :mod:`bench.quiet_abuse`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, NamedTuple

from bench.population import FIRST_NAMES, LAST_NAMES, Account, message_id
from bench.traffic import Action, Endpoint, Outgoing, Queued, Server


class Spam(NamedTuple):
    """What an episode's spam looks like.

    One to ``most`` harvested freemail recipients, ``size`` bytes (low, high), a Message-ID as
    ``style``'s mail client writes it (``tool``: a spam tool's random one), submitted on one of
    ``services`` with the SASL mechanism ``method``.
    """

    most: int
    size: tuple[int, int]
    style: str
    services: tuple[str, ...] = ("submission",)
    method: str = "PLAIN"


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


def spam(rng: random.Random, server: Server, sender: str, ts: float, shape: Spam) -> Outgoing:
    """A spam message from ``sender`` in the given shape."""
    domain = sender.partition("@")[2]
    # A single possible recipient count needs no draw from the generator.
    count = rng.randint(1, shape.most) if shape.most > 1 else 1
    recipients = tuple(harvested(rng, server) for _ in range(count))
    length = int(rng.uniform(*shape.size))
    if shape.style == "tool":
        ident = f"{random_helo(rng)[:20].lower()}@{domain}"
    else:
        ident = message_id(rng, shape.style, domain, ts)
    return Outgoing(sender, recipients, length, ident, spam=True)


def arrivals(rng: random.Random, start: float, end: float, rate: float) -> Iterator[float]:
    """Times from ``start`` until ``end`` at random, ``rate`` an hour on average."""
    ts = start
    while ts < end:
        yield ts
        ts += rng.expovariate(rate / 3600)


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
        """Golden entries: one per abused subject; an IP address's entry lists no messages."""
        in_order = sorted(self.queued, key=lambda item: item.received)
        entries = []
        for subject, kind in self.subjects:
            queued = in_order if kind != "ip" else []
            entries.append(
                {
                    "subject": subject,
                    "subject_kind": kind,
                    "first_abuse_ts": self.first_line.get(subject),
                    "first_abuse_queue_id": queued[0].queue_id if queued else None,
                    "abusive_messages": len(queued),
                    "queue_ids": [item.queue_id for item in queued],
                }
            )
        return entries


class StolenLogin(Episode):
    """Spam sent with one account's stolen password, in the shape of the class's ``mail``.

    Timed episodes send for ``hours`` from ``start``: sessions come at random times,
    ``per_session`` messages each on average, ``per_hour`` messages an hour in all.
    """

    mail: ClassVar[Spam]
    per_session = 1.0

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 0.0,
        per_hour: int = 0,
    ) -> None:
        super().__init__(server, rng)
        self.account = account
        self.start = start
        self.end = start + hours * 3600
        self.per_hour = per_hour
        self.subjects = [(account.address, "account")]

    def arrivals(self, start: float) -> Iterator[float]:
        """The sessions' times from ``start`` until the episode ends."""
        return arrivals(self.rng, start, self.end, self.per_hour / self.per_session)

    def spam_message(self, ts: float) -> Outgoing:
        """A spam message from the stolen account's own address."""
        return spam(self.server.rng, self.server, self.account.address, ts, self.mail)

    def send(self, ts: float, client: Endpoint, mails: Sequence[Outgoing]) -> None:
        """Submit ``mails`` with the stolen login and keep them as its abuse."""
        services = self.mail.services
        # A single service needs no draw from the generator.
        service = self.server.rng.choice(services) if len(services) > 1 else services[0]
        login = self.account.address
        queued = self.server.submit(
            ts, client, login, mails, service=service, method=self.mail.method
        )
        self.queued += queued
        self.note(login, queued[0].received)
