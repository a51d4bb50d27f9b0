"""Ordinary traffic: what a population's mailboxes and the internet do all day.

:class:`Ordinary` turns a :class:`~bench.population.Population` into a day-by-day stream of
sessions (see :meth:`bench.traffic.Server.run`): submissions from each account's devices at
its usual hours (office, evening or all day; quieter at weekends), business batches, inbound
mail from sending platforms and partners' servers, IMAP logins, and the internet's background:
postscreen and smtpd rejects, scans, a few password guesses per address, cron mail to root,
and customers' contact forms through PHP's ``mail()`` (pickup, uid 33).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from bench import refusals
from bench.dovecot import imap, imap_failure
from bench.networks import WEBMAIL_IP, Network, foreign_networks, networks, platform_client
from bench.population import (
    DAY,
    FIRST_NAMES,
    LAST_NAMES,
    Account,
    Device,
    Population,
    endpoint,
    message_id,
    windows_name,
)
from bench.traffic import Action, Endpoint, Outgoing, Server

# fmt: off
OFFICE_HOURS = (0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.3, 1.0, 1.5, 1.6, 1.5, 1.0,
                1.2, 1.5, 1.4, 1.2, 0.8, 0.3, 0.15, 0.1, 0.08, 0.05, 0.03, 0.02)
EVENING_HOURS = (0.03, 0.03, 0.03, 0.03, 0.03, 0.1, 0.5, 0.6, 0.3, 0.2, 0.2, 0.3,
                 0.4, 0.3, 0.3, 0.4, 0.6, 1.0, 1.4, 1.6, 1.5, 1.0, 0.5, 0.15)
ALLDAY_HOURS = (0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8,
                0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6)
MORNING_HOURS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 1.0, 1.0, 0.6, 0.2, 0.0, 0.0,
                 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# fmt: on


def hour_weights(rhythm: str, weekend: bool) -> list[float]:
    """How an account's activity spreads over the 24 hours of a day (UTC).

    ``office`` hours nearly stop at weekends, ``evening`` senders carry on, ``allday``
    senders halve, ``morning`` (a newsletter's campaign) is the same every day.
    """
    if rhythm == "office":
        return [weight * (0.12 if weekend else 1.0) for weight in OFFICE_HOURS]
    if rhythm == "evening":
        if not weekend:
            return list(EVENING_HOURS)
        return [
            weight * (0.9 if 8 <= hour <= 21 else 0.6) for hour, weight in enumerate(EVENING_HOURS)
        ]
    if rhythm == "morning":
        return list(MORNING_HOURS)
    return [weight * (0.5 if weekend else 1.0) for weight in ALLDAY_HOURS]


class Ordinary:
    """The ordinary traffic of a population on a server, day after day."""

    def __init__(
        self,
        server: Server,
        population: Population,
        seed: int | str,
        scale_noise: float = 1.0,
        scale_inbound: float = 1.0,
        scale_imap: float = 1.0,
    ) -> None:
        self.server = server
        self.population = population
        self.seed = seed
        self.scale_noise = scale_noise
        self.scale_inbound = scale_inbound
        self.scale_imap = scale_imap
        self._botnets = foreign_networks()
        self.travel: dict[str, tuple[int, str, Network]] = {}  # address -> (day, hotel ip, net)

    def send_abroad(self, account: Account, day: int, abroad: Network, rng: random.Random) -> str:
        """``account`` spends ``day`` abroad: laptop on hotel WiFi, phone roaming."""
        hotel_ip = abroad.address(rng)
        self.travel[account.address] = (day, hotel_ip, abroad)
        return hotel_ip

    def days(self, first_day: int, count: int | None = None) -> Iterator[tuple[float, Action]]:
        """Sessions of day ``first_day``, ``first_day + 1`` ... (forever when count is None)."""
        day = first_day
        while count is None or day < first_day + count:
            yield from self.day(day)
            day += 1

    def day(self, day: int) -> list[tuple[float, Action]]:
        """All sessions of one day, in time order."""
        rng = random.Random(f"{self.seed}:day:{day}")
        start = self.server.start + day * DAY
        weekend = ((int(start // DAY) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        plan: list[tuple[float, int, Action]] = []
        for account in self.population.accounts:
            self._account_day(rng, account, day, start, weekend, plan)
        self._background(rng, start, weekend, plan)
        plan.sort(key=lambda item: (item[0], item[1]))
        return [(ts, action) for ts, _, action in plan]

    # --- one account's day ---------------------------------------------------------------

    def _when(self, rng: random.Random, start: float, weights: list[float]) -> float:
        hour = rng.choices(range(24), weights)[0]
        return start + hour * 3600 + rng.uniform(0, 3600)

    def _account_day(
        self,
        rng: random.Random,
        account: Account,
        day: int,
        start: float,
        weekend: bool,
        plan: list[tuple[float, int, Action]],
    ) -> None:
        weights = hour_weights(account.rhythm, weekend)
        factor = sum(weights) / 24 / (0.55 if account.rhythm == "office" else 0.5)
        expected = account.daily * min(factor, 1.3)
        if account.rhythm == "morning":  # a campaign: the same size every day
            batches = rng.randint(1, 2)
            total = int(rng.gauss(account.daily, account.daily * 0.05))
            for _ in range(batches):
                ts = self._when(rng, start, weights)
                plan.append((ts, len(plan), self._batch(account, total // batches)))
        elif account.kind == "business":
            batches = max(1, int(rng.gauss(4, 1)))
            total = (
                int(rng.gauss(expected, expected * 0.15)) if not weekend else int(expected * 0.3)
            )
            for _ in range(batches):
                size = max(1, total // batches)
                ts = self._when(rng, start, weights)
                plan.append((ts, len(plan), self._batch(account, size)))
        else:
            messages = _poisson(rng, expected)
            for _ in range(messages):
                ts = self._when(rng, start, weights)
                device = rng.choice(account.devices)
                plan.append((ts, len(plan), self._send(account, device, day)))
        # IMAP: mail clients check mail through the active hours
        logins = (
            _poisson(rng, (6 + 2 * len(account.devices)) * self.scale_imap)
            if account.kind != "business"
            else 0
        )
        for _ in range(logins):
            ts = self._when(rng, start, weights)
            device = rng.choice(account.devices)
            plan.append((ts, len(plan), self._imap(account, device, day)))
        for _ in range(
            _poisson(rng, account.inbound * self.scale_inbound * (0.6 if weekend else 1.0))
        ):
            ts = self._when(rng, start, [0.5] * 6 + [1.0] * 18)
            plan.append((ts, len(plan), self._inbound(account)))

    def client_ip(
        self, account: Account, device: Device, day: int, rng: random.Random
    ) -> tuple[str, Network | None]:
        """Where ``device`` connects from today."""
        if device.kind == "webmail":
            return WEBMAIL_IP, None
        if device.kind == "server":
            return account.server_ip, None
        trip = self.travel.get(account.address)
        if trip is not None and trip[0] == day:
            if device.kind == "phone" and account.mobile is not None and rng.random() < 0.5:
                return account.mobile.address(rng), account.mobile  # roaming: home carrier
            return trip[1], trip[2]
        if (
            device.kind == "phone"
            and account.mobile is not None
            and rng.random() < account.mobile_share
        ):
            return account.mobile.address(rng), account.mobile
        if device.at_office:
            return account.office_ip, account.office
        return self.population.home_ip(account, day), account.home

    def _send(self, account: Account, device: Device, day: int) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            ip, network = self.client_ip(account, device, day, rng)
            client = endpoint(ip, network, device.helo)
            mails = [self.mail(rng, account, device, ts)]
            if rng.random() < 0.08:
                mails.append(self.mail(rng, account, device, ts))
            failures = 1 if rng.random() < 0.01 else 0
            server.submit(
                ts,
                client,
                account.address,
                mails,
                service=device.service,
                method=device.method,
                failures=failures,
            )

        return act

    def mail(self, rng: random.Random, account: Account, device: Device, ts: float) -> Outgoing:
        """An ordinary message from ``account``: mostly to its usual correspondents."""
        roll = rng.random()
        count = 1 if roll < 0.8 else rng.randint(2, 3) if roll < 0.96 else rng.randint(4, 9)
        recipients: list[str] = []
        for _ in range(count):
            pick = rng.random()
            if pick < 0.75:
                recipient = rng.choice(account.contacts)
            elif pick < 0.88:
                recipient = rng.choice(self.population.addresses)
            else:
                recipient = self.population.recipient(rng)
            if recipient not in recipients and recipient != account.address:
                recipients.append(recipient)
        if not recipients:
            recipients.append(rng.choice(account.contacts))
        size = int(rng.lognormvariate(9.3, 1.1)) + 800
        domain = account.address.partition("@")[2]
        return Outgoing(
            account.address,
            tuple(recipients),
            size,
            message_id(rng, device.message_ids, domain, ts),
        )

    def _batch(self, account: Account, count: int) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            client = endpoint(account.server_ip, None, account.devices[0].helo)
            domain = account.address.partition("@")[2]
            at = ts
            remaining = count
            while remaining > 0:
                size = min(remaining, rng.randint(5, 40))
                mails = [
                    Outgoing(
                        account.address,
                        (
                            rng.choice(account.contacts)
                            if account.contacts and rng.random() < 0.95
                            else self.population.recipient(rng),
                        ),
                        int(rng.uniform(6000, 40000)),
                        message_id(rng, "php", domain, at),
                    )
                    for _ in range(size)
                ]
                last = server.submit(
                    at, client, account.address, mails, service="submission", method="LOGIN"
                )
                remaining -= size
                at = max(at, last[-1].received) + rng.uniform(2, 30)

        return act

    def _imap(self, account: Account, device: Device, day: int) -> Action:
        def act(ts: float) -> None:
            rng = self.server.rng
            ip, _ = self.client_ip(account, device, day, rng)
            duration = rng.uniform(0.3, 20) if rng.random() < 0.6 else rng.uniform(60, 1800)
            imap(self.server, ts, account.address, ip, duration)

        return act

    def _inbound(self, account: Account) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            roll = rng.random()
            if roll < 0.7:
                name, ip = platform_client(rng)
                if "google" in name:
                    sender = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@gmail.com"
                    style = "gmail"
                else:
                    sender = (
                        f"{rng.choice(('news', 'info', 'noreply', 'bounce'))}@"
                        f"{rng.choice(self.population.partner_domains)}"
                    )
                    style = "roundcube"
                client = Endpoint(ip, name, "", name)
            else:
                domain = rng.choice(self.population.partner_domains)
                network = rng.choice(networks("hosting", rng.choice(("DE", "FR", "US"))))
                ip = network.address(random.Random(f"partner:{domain}"))
                client = endpoint(ip, network, f"mail.{domain}")
                sender = f"{rng.choice(FIRST_NAMES)}@{domain}"
                style = "thunderbird"
            mail = Outgoing(
                sender,
                (account.address,),
                int(rng.lognormvariate(9.5, 1.2)) + 1500,
                message_id(rng, style, sender.partition("@")[2], ts),
            )
            server.receive(
                ts,
                client,
                [mail],
                tls=rng.random() < 0.92,
                verdict="PASS NEW" if rng.random() < 0.1 else "PASS OLD",
            )

        return act

    # --- the internet's background ---------------------------------------------------------

    def _background(
        self, rng: random.Random, start: float, weekend: bool, plan: list[tuple[float, int, Action]]
    ) -> None:
        accounts = len(self.population.accounts)
        flat = [1.0] * 24
        refusals = _poisson(rng, accounts * 2.5 * self.scale_noise)
        for _ in range(refusals):
            plan.append((self._when(rng, start, flat), len(plan), self._refusal()))
        # password guessing against random names: a few tries per address, all day long
        for _ in range(_poisson(rng, accounts * 0.4 * self.scale_noise)):
            plan.append((self._when(rng, start, flat), len(plan), self._guess()))
        # cron on the server: daily reports to root
        for hour in (2, 6):
            plan.append((start + hour * 3600 + rng.uniform(0, 5), len(plan), self._cron()))
        # customers' web sites: contact forms and shop notices through PHP's mail()
        office = hour_weights("office", weekend)
        for _ in range(_poisson(rng, accounts * 0.15 * self.scale_noise)):
            plan.append((self._when(rng, start, office), len(plan), self._web_form()))

    def _refusal(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            network = rng.choice(self._botnets)
            ip = network.address(rng)
            why = rng.choices(
                ("dnsbl", "pregreet", "rbl", "helo", "fqdn", "unknown", "relay", "scan", "probe"),
                (0.28, 0.06, 0.1, 0.16, 0.05, 0.17, 0.05, 0.08, 0.05),
            )[0]
            word = rng.choice(LAST_NAMES) + rng.choice(("", "s", "tech", "mail", "24"))
            helo = {
                "pregreet": rng.choice(("ylmf-pc", "User", f"[{ip}]")),
                "fqdn": rng.choice(("digidom", "localhost", windows_name(rng), "User")),
            }.get(why, f"mail.{word}.{rng.choice(('com', 'net', 'info', 'top', 'xyz'))}")
            sender = f"{rng.choice(FIRST_NAMES)}{rng.randrange(1, 999)}@{word}.com"
            if why == "relay":
                recipient = self.population.recipient(rng)
            elif why == "unknown":
                recipient = f"{rng.choice(FIRST_NAMES)}@{rng.choice(self.population.domains)}"
                if recipient in self.population.addresses:
                    recipient = f"x{recipient}"
            else:
                recipient = rng.choice(self.population.addresses)
            refusals.refuse(server, ts, endpoint(ip, network, helo), why, sender, recipient)

        return act

    def _guess(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            network = rng.choice(self._botnets)
            ip = network.address(rng)
            domain = rng.choice(self.population.domains)
            names = [
                f"{rng.choice(('info', 'admin', 'test', 'sales', 'office', 'user'))}@{domain}"
                for _ in range(rng.randint(1, 2))
            ]
            if rng.random() < 0.25:  # IMAP is guessed at too
                known = names[0] in self.population.addresses
                imap_failure(server, ts, names[0], ip, attempts=len(names), known_user=known)
                return
            service = rng.choice(("submission", "smtps", "smtpd"))
            refusals.auth_failures(
                server,
                ts,
                endpoint(ip, network, ""),
                names,
                service=service,
                method=rng.choice(("LOGIN", "PLAIN")),
            )

        return act

    def _web_form(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            account = rng.choice(self.population.accounts)
            domain = account.address.partition("@")[2]
            if rng.random() < 0.5:
                sender, envelope = "www-data", f"www-data@{server.hostname}"
            else:
                envelope = sender = f"{rng.choice(('wordpress', 'noreply', 'kontakt'))}@{domain}"
            mail = Outgoing(
                envelope,
                (account.address,),
                int(rng.uniform(1500, 6000)),
                message_id(rng, "php", domain, ts),
            )
            server.pickup(ts, 33, sender, mail)

        return act

    def _cron(self) -> Action:
        def act(ts: float) -> None:
            server = self.server
            rng = server.rng
            mail = Outgoing(
                f"root@{server.hostname}",
                ("root",),
                int(rng.uniform(900, 4000)),
                message_id(rng, "php", server.hostname, ts),
            )
            server.pickup(ts, 0, "root", mail)

        return act


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth's method for small means, normal for large)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, int(rng.gauss(mean, mean**0.5) + 0.5))
    limit = 2.718281828459045**-mean
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
