"""Look-alikes: accounts whose ordinary habits resemble abuse and must raise nothing.

A shop's newsletter (over a thousand messages every morning from one rented server, to the
same subscribers), a field worker whose every session comes from another address of one
mobile carrier, a company whose dozen staff share the office's one address, and customers
who only use the webmail (127.0.0.1).  The traveller is made by
:meth:`bench.ordinary.Ordinary.send_abroad`.

Sources of sessions beside the ordinary traffic: a new colleague's first day
(:class:`FirstDay`), an accounting mailbox's monthly invoice run (:class:`InvoiceRun`), a
member writing to a stale address list (:class:`StaleList`), a mailing list manager
posting through ``sendmail`` (:class:`ListServer`), and a mailbox on vacation whose Sieve
script answers what comes in through ``sendmail`` as the mail uid (:class:`Vacation`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from bench.dovecot import imap
from bench.networks import network, networks, platform_client
from bench.ordinary import Ordinary, hour_weights
from bench.population import (
    DAY,
    FIRST_NAMES,
    FREEMAIL_DOMAINS,
    LAST_NAMES,
    Account,
    Device,
    Population,
    endpoint,
    message_id,
    windows_name,
)
from bench.traffic import Action, Endpoint, Outgoing, Server


def newsletter_account(population: Population, rng: random.Random) -> Account:
    """A shop's newsletter: 1,000+ messages a day from one rented server, to its subscribers."""
    domain = population.domains[3]
    host = network("FR", "OVH SAS")
    subscribers = tuple(population.recipient(rng) for _ in range(1500))
    return Account(
        f"newsletter@{domain}",
        "business",
        "DE",
        host,
        None,
        (Device("server", f"news.{domain}", "submission", "LOGIN", "php"),),
        1200.0,
        3.0,
        "morning",
        subscribers,
        server_ip=host.address(rng),
    )


def phone_only_account(population: Population, rng: random.Random) -> Account:
    """A field worker on a phone: every session from another address of one carrier."""
    carrier = network("DE", "Telefonica Germany")
    domain = population.domains[4]
    return Account(
        f"aussendienst@{domain}",
        "person",
        "DE",
        network("DE", "Deutsche Telekom AG"),
        carrier,
        (Device("phone", "smtpclient.apple", "submission", "PLAIN", "apple"),),
        14.0,
        20.0,
        "office",
        tuple(population.recipient(rng) for _ in range(30)),
        mobile_share=1.0,
    )


def office_accounts(population: Population, rng: random.Random, count: int = 12) -> list[Account]:
    """A company whose staff all send from the office's one NAT address."""
    domain = "kanzlei-nat.example"
    office_network = network("DE", "Deutsche Telekom AG")
    office_ip = office_network.address(rng)
    accounts = []
    for index in range(count):
        first, last = FIRST_NAMES[index * 3 % len(FIRST_NAMES)], LAST_NAMES[index]
        helo = windows_name(rng)
        accounts.append(
            Account(
                f"{first}.{last}@{domain}",
                "person",
                "DE",
                office_network,
                None,
                (Device("desktop", helo, "submission", "LOGIN", "outlook", at_office=True),),
                rng.uniform(4, 25),
                rng.uniform(8, 30),
                "office",
                tuple(population.recipient(rng) for _ in range(25)),
                office_ip,
                office_network,
            )
        )
    return accounts


def webmail_accounts(population: Population, rng: random.Random, count: int = 8) -> list[Account]:
    """Customers who only use the webmail: every session comes from 127.0.0.1."""
    accounts = []
    for index in range(count):
        domain = population.domains[1 + index % (len(population.domains) - 1)]
        address = f"{FIRST_NAMES[-1 - index]}.{LAST_NAMES[-1 - index]}@{domain}"
        accounts.append(
            Account(
                address,
                "person",
                "DE",
                network("DE", "Vodafone GmbH"),
                None,
                (Device("webmail", "webmail.example.com", "submission", "PLAIN", "roundcube"),),
                rng.uniform(3, 20),
                rng.uniform(5, 20),
                rng.choice(("office", "evening")),
                tuple(population.recipient(rng) for _ in range(20)),
            )
        )
    return accounts


def new_account(population: Population, rng: random.Random) -> Account:
    """A new colleague's mailbox, opened on day five: no history at all, a busy first day
    (30-60 messages from the office desktop and the phone, to many people for the first
    time)."""
    domain = rng.choice(sorted(population.offices))
    office_ip, office_network = population.offices[domain]
    address = ""
    while not address or address in population.addresses:
        address = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{domain}"
    contacts = [population.recipient(rng) for _ in range(rng.randint(40, 80))]
    contacts += rng.sample(population.addresses, 10)
    return Account(
        address,
        "person",
        "DE",
        network("DE", "Deutsche Telekom AG"),
        network("DE", "Telefonica Germany"),
        (
            Device("desktop", windows_name(rng), "submission", "LOGIN", "outlook", at_office=True),
            Device("phone", "smtpclient.apple", "submission", "PLAIN", "apple"),
        ),
        rng.uniform(30, 60),
        10.0,
        "office",
        tuple(contacts),
        office_ip,
        office_network,
    )


class FirstDay:
    """An account's first day: its messages at office hours and its mail clients' logins."""

    def __init__(self, ordinary: Ordinary, account: Account, day: int, rng: random.Random):
        self.ordinary = ordinary
        self.account = account
        self.day = day
        self.rng = rng

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        start = self.ordinary.server.start + self.day * DAY
        weights = hour_weights(self.account.rhythm, False)
        plan: list[tuple[float, Action]] = []
        for _ in range(int(self.account.daily)):
            ts = start + rng.choices(range(24), weights)[0] * 3600 + rng.uniform(0, 3600)
            plan.append((ts, self._send(rng.choice(self.account.devices))))
        for _ in range(rng.randint(8, 14)):
            ts = start + rng.choices(range(24), weights)[0] * 3600 + rng.uniform(0, 3600)
            plan.append((ts, self._login(rng.choice(self.account.devices))))
        plan.sort(key=lambda item: item[0])
        yield from plan

    def _send(self, device: Device) -> Action:
        def act(ts: float) -> None:
            ordinary, account = self.ordinary, self.account
            server = ordinary.server
            ip, net = ordinary.client_ip(account, device, self.day, server.rng)
            mails = [ordinary.mail(server.rng, account, device, ts)]
            server.submit(
                ts,
                endpoint(ip, net, device.helo),
                account.address,
                mails,
                service=device.service,
                method=device.method,
            )

        return act

    def _login(self, device: Device) -> Action:
        def act(ts: float) -> None:
            ordinary, account = self.ordinary, self.account
            server = ordinary.server
            ip, _ = ordinary.client_ip(account, device, self.day, server.rng)
            imap(server, ts, account.address, ip, server.rng.uniform(0.5, 900))

        return act


def invoicing_account(population: Population, rng: random.Random) -> Account:
    """A company's accounting mailbox: a few messages a day from the office desktop, and
    the invoices to its customers once a month from the accounting software on that PC."""
    domains = [d for d in population.domains[1:] if f"buchhaltung@{d}" not in population.addresses]
    domain = rng.choice(domains)
    office_ip, office_network = population.offices[domain]
    customers = tuple(population.recipient(rng) for _ in range(rng.randint(350, 480)))
    return Account(
        f"buchhaltung@{domain}",
        "role",
        "DE",
        office_network,
        None,
        (Device("desktop", windows_name(rng), "submission", "LOGIN", "outlook", at_office=True),),
        3.0,
        6.0,
        "office",
        customers,
        office_ip,
        office_network,
    )


class InvoiceRun:
    """The monthly run: the accounting software on the office desktop sends 300+ invoices to
    the account's customers within the hour, each in its own message, a few per session."""

    def __init__(
        self, server: Server, account: Account, days: tuple[int, ...], rng: random.Random
    ) -> None:
        self.server = server
        self.account = account
        self.days = days
        self.rng = rng

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        for day in self.days:
            customers = rng.sample(self.account.contacts, int(len(self.account.contacts) * 0.9))
            ts = self.server.start + day * DAY + rng.uniform(8.5, 10.5) * 3600
            duration = rng.uniform(40, 60) * 60
            gap = duration / (len(customers) / 6)
            while customers:
                size = min(len(customers), rng.randint(3, 9))
                batch, customers = customers[:size], customers[size:]
                yield ts, self._session(batch)
                ts += rng.uniform(0.5, 1.5) * gap

    def _session(self, customers: list[str]) -> Action:
        def act(ts: float) -> None:
            server, account = self.server, self.account
            rng = server.rng
            device = account.devices[0]
            domain = account.address.partition("@")[2]
            mails = [
                Outgoing(
                    account.address,
                    (customer,),
                    int(rng.uniform(40000, 120000)),
                    message_id(rng, "php", domain, ts),
                )
                for customer in customers
            ]
            server.submit(
                ts,
                endpoint(account.office_ip, account.office, device.helo),
                account.address,
                mails,
                service=device.service,
                method=device.method,
            )

        return act


class StaleList:
    """A member writes to an old address list (a club's, a class reunion's): one or two
    messages to 40-80 people never written to before, half of whom no longer exist (most
    platforms answer "user unknown", some accept everything)."""

    def __init__(self, ordinary: Ordinary, account: Account, day: int, rng: random.Random) -> None:
        self.ordinary = ordinary
        self.account = account
        self.day = day
        self.rng = rng
        population = ordinary.population
        self.recipients = [population.recipient(rng) for _ in range(rng.randint(40, 80))]
        # mailboxes closed long ago: their servers answer "user unknown" from the send on
        self.gone = rng.sample(self.recipients, int(len(self.recipients) * rng.uniform(0.4, 0.6)))

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        ts = self.ordinary.server.start + self.day * DAY + rng.uniform(17.5, 20.5) * 3600
        parts = 1 if rng.random() < 0.5 else 2
        size = -(-len(self.recipients) // parts)
        for index in range(parts):
            yield ts, self._send(tuple(self.recipients[index * size : (index + 1) * size]))
            ts += rng.uniform(60, 400)

    def _send(self, recipients: tuple[str, ...]) -> Action:
        def act(ts: float) -> None:
            ordinary, account = self.ordinary, self.account
            server = ordinary.server
            rng = server.rng
            device = account.devices[0]
            ip, net = ordinary.client_ip(account, device, self.day, rng)
            domain = account.address.partition("@")[2]
            server.queue.missing.update(self.gone)
            mail = Outgoing(
                account.address,
                recipients,
                int(rng.lognormvariate(9.3, 1.1)) + 800,
                message_id(rng, device.message_ids, domain, ts),
            )
            server.submit(
                ts,
                endpoint(ip, net, device.helo),
                account.address,
                [mail],
                service=device.service,
                method=device.method,
            )

        return act


LIST_NAMES = ("mitglieder", "aktuell", "termine", "vorstand", "jugend", "presse", "info")


class ListServer:
    """A mailing list manager on the server that posts through ``sendmail`` as its own uid:
    a few lists, each post sent as one message per subscriber with the list's owner
    address as envelope sender, 1,000+ messages a day, every day."""

    def __init__(
        self, server: Server, population: Population, rng: random.Random, uid: int = 110
    ) -> None:
        self.server = server
        self.rng = rng
        self.uid = uid
        self.domain = f"lists.{population.domains[2]}"
        names = rng.sample(LIST_NAMES, rng.randint(3, 5))
        self.lists = {
            name: tuple(population.recipient(rng) for _ in range(rng.randint(120, 420)))
            for name in names
        }

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        day = 0
        while True:
            start = self.server.start + day * DAY
            posts = []
            for name, members in self.lists.items():
                for _ in range(2 if rng.random() < 0.4 else 1):
                    posts.append((start + rng.uniform(7, 22) * 3600, name, members))
            posts.sort()
            yield from ((ts, self._post(name, members)) for ts, name, members in posts)
            day += 1

    def _post(self, name: str, members: tuple[str, ...]) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            sender = f"{name}-owner@{self.domain}"
            msgid = message_id(rng, "thunderbird", self.domain, ts)
            at = ts
            for member in members:
                mail = Outgoing(sender, (member,), int(rng.uniform(4000, 30000)), msgid)
                server.pickup(at, self.uid, sender, mail)
                at += rng.uniform(0.05, 0.4)

        return act


class Vacation:
    """A busy mailbox on vacation: its Sieve script answers each sender once, from ``<>``,
    through ``sendmail`` as the mail uid, while the message is delivered.  300-600 messages
    come in over the day, about 40% spam with forged senders, half of which do not exist:
    those notices bounce.  The uid never sent mail before."""

    def __init__(
        self, server: Server, account: Account, day: int, rng: random.Random, uid: int = 5000
    ) -> None:
        self.server = server
        self.account = account
        self.day = day
        self.rng = rng
        self.uid = uid

    def sessions(self) -> Iterator[tuple[float, Action]]:
        rng = self.rng
        start = self.server.start + self.day * DAY
        count = rng.randint(300, 600)
        for ts in sorted(start + rng.uniform(0, DAY) for _ in range(count)):
            yield ts, self._receive(spam=rng.random() < 0.4)

    def _receive(self, *, spam: bool) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            if spam:
                ip = rng.choice(networks("residential")).address(rng)
                client = Endpoint(ip, "unknown", "", f"[{ip}]")
                sender = f"{first}{rng.randint(10, 9999)}@{rng.choice(FREEMAIL_DOMAINS)}"
                if rng.random() < 0.5:
                    server.queue.missing.add(sender)  # forged: the notice bounces
            else:
                name, ip = platform_client(rng)
                client = Endpoint(ip, name, "", name)
                sender = f"{first}.{last}{rng.randint(1, 99)}@gmail.com".lower()
            domain = sender.partition("@")[2]
            mail = Outgoing(
                sender,
                (self.account.address,),
                int(rng.lognormvariate(9.5, 1.2)) + 1500,
                message_id(rng, "roundcube", domain, ts),
                spam=spam,
            )
            (queued,) = server.receive(ts, client, [mail], tls=rng.random() < 0.8)
            notice = Outgoing(
                "",
                (sender,),
                int(rng.uniform(1200, 2500)),
                message_id(rng, "thunderbird", self.account.address.partition("@")[2], ts),
            )
            server.pickup(queued.active + rng.uniform(0.2, 1.5), self.uid, "", notice)

        return act
