"""Quieter abuse episodes: a stolen password used in ways that leave fewer traces.

Each is a :class:`bench.episode.StolenLogin` and keeps its ground truth the same way as the
episodes in :mod:`bench.abuse`.  The habits: a stolen password used through the webmail
(every session from 127.0.0.1: no geography, no HELO worth judging), through a residential
proxy service in the victim's own country with a mail client's HELO, checked over IMAP from
one country before a rented server elsewhere sends the spam, and a login that sends as many
other people's addresses (forged envelope senders).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from bench.dovecot import imap
from bench.episode import Spam, StolenLogin, spam
from bench.networks import WEBMAIL_IP, foreign_networks, networks
from bench.population import (
    FIRST_NAMES,
    LAST_NAMES,
    Account,
    Population,
    endpoint,
    private_literal,
    windows_name,
)
from bench.traffic import Action, Server


class WebmailSpam(StolenLogin):
    """A stolen password used through the webmail: every session comes from 127.0.0.1.

    The spammer's script drives the webmail: each send is an IMAP login and one submission
    over loopback with the webmail's HELO, several hundred an hour to harvested freemail
    addresses.  Nothing about the client can be judged; what the mail does can.
    """

    kind = "webmail_spam"
    mail = Spam(6, (3000, 15000), "roundcube")

    def sessions(self) -> Iterator[tuple[float, Action]]:
        for ts in self.arrivals(self.start):
            yield ts, self._send()

    def _send(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            imap(server, ts, self.account.address, WEBMAIL_IP, rng.uniform(0.2, 1.5))
            mail = self.spam_message(ts)
            client = endpoint(WEBMAIL_IP, None, "webmail.example.com")
            self.send(ts + rng.uniform(0.3, 2.0), client, [mail])

        return act


class HomeProxy(StolenLogin):
    """A stolen password used through a residential proxy service in the victim's country.

    Every session leaves from another home or mobile address of the victim's own country
    (often the victim's own provider), with a mail client's HELO: no new country, often no
    new network operator.  Volume, recipients and the receivers' replies must tell.
    """

    kind = "home_proxy"
    mail = Spam(3, (4000, 16000), "thunderbird")
    per_session = 2.0

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 2.0,
        per_hour: int = 250,
    ) -> None:
        super().__init__(server, rng, account, start, hours, per_hour)
        self.pool = [
            net for net in networks(None, account.country) if net.kind in ("residential", "mobile")
        ]
        self.helo = rng.choice((private_literal(rng), "smtpclient.apple", windows_name(rng)))

    def sessions(self) -> Iterator[tuple[float, Action]]:
        for ts in self.arrivals(self.start):
            yield ts, self._session(self.rng.randint(1, 3))

    def _session(self, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            net = rng.choice(self.pool)
            client = endpoint(net.address(rng), net, self.helo)
            self.send(ts, client, [self.spam_message(ts) for _ in range(count)])

        return act


class ImapThenSmtp(StolenLogin):
    """The stolen password is checked over IMAP from one country; a rented server elsewhere
    sends the spam an hour or so later.

    The checker logs in two or three times within minutes (a residential address abroad);
    the sender is a hosting provider's machine whose HELO is its own reverse name (or its
    address literal), sending a modest hundred or so messages an hour.
    """

    kind = "imap_then_smtp"
    mail = Spam(3, (5000, 20000), "outlook", ("smtps",), "LOGIN")
    per_session = 2.5

    def __init__(
        self,
        server: Server,
        rng: random.Random,
        account: Account,
        start: float,
        hours: float = 1.5,
        per_hour: int = 100,
    ) -> None:
        super().__init__(server, rng, account, start, hours, per_hour)
        checker = rng.choice(foreign_networks("residential"))
        self.checker_ip = checker.address(rng)
        self.sender_net = rng.choice(
            networks("hosting", "US") + networks("hosting", "SG") + networks("hosting", "CN")
        )
        self.sender_ip = self.sender_net.address(rng)
        self.spam_start = start + rng.uniform(1200, 5400)
        self.end = self.spam_start + hours * 3600

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.start
        for _ in range(rng.randint(2, 3)):
            yield ts, self._check()
            ts += rng.uniform(20, 400)
        for ts in self.arrivals(self.spam_start):
            yield ts, self._spam(rng.randint(1, 4))

    def _check(self) -> Action:
        def act(ts: float) -> None:
            imap(self.server, ts, self.account.address, self.checker_ip, self.rng.uniform(1, 8))

        return act

    def _spam(self, count: int) -> Action:
        def act(ts: float) -> None:
            ip = self.sender_ip
            client = endpoint(ip, self.sender_net, self.sender_net.hostname(ip) or f"[{ip}]")
            self.send(ts, client, [self.spam_message(ts) for _ in range(count)])

        return act


class ForgedSenders(StolenLogin):
    """A stolen login that sends as other people: every message with a forged envelope
    sender at someone else's domain (a partner business or a freemail platform).

    It comes from a rented server in the victim's own country with a proper reverse name
    and that name as HELO, a hundred or so messages an hour.
    """

    kind = "forged_senders"
    mail = Spam(3, (4000, 14000), "outlook", method="LOGIN")
    per_session = 2.0

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
        super().__init__(server, rng, account, start, hours, per_hour)
        hosts = networks("hosting", account.country) or networks("hosting", "DE")
        self.net = rng.choice(hosts)
        self.ip = self.net.address(rng)
        self.domains = population.partner_domains + list(server.directory.freemail_domains)

    def sessions(self) -> Iterator[tuple[float, Action]]:
        for ts in self.arrivals(self.start):
            yield ts, self._session(self.rng.randint(1, 3))

    def _session(self, count: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            client = endpoint(self.ip, self.net, self.net.hostname(self.ip) or f"[{self.ip}]")
            mails = []
            for _ in range(count):
                domain = rng.choice(self.domains)
                sender = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{domain}"
                mails.append(spam(rng, self.server, sender, ts, self.mail))
            self.send(ts, client, mails)

        return act
