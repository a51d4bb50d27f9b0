"""The hosting company's customers and the ordinary mail they make.

A :class:`Population` is a few dozen customer domains with a few hundred mailboxes: people
(1 to 15 messages a day, office or evening hours, a home ISP, often a phone), shared role
addresses (``info@``, ``kontakt@``), and a few business senders (hundreds a day in batches
from a web server).  Every account keeps its habits: devices with fixed HELO names and
ports, a home network in its country whose address changes every few days, colleagues
behind one office address, a stable circle of recipients.  ``bench.ordinary`` turns that
into a day-by-day stream of sessions.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from bench.networks import HOME_COUNTRIES, WEBMAIL_IP, Network, networks
from bench.traffic import Endpoint

DAY = 86400.0
# fmt: off
FIRST_NAMES = ("anna", "lukas", "marie", "jonas", "sophie", "felix", "laura", "paul", "lena",
    "tim", "julia", "max", "sarah", "jan", "lisa", "david", "emma", "leon", "nina", "tom",
    "claire", "pierre", "sanne", "daan", "emily", "james", "olivia", "noah", "petra", "klaus",
    "monika", "stefan", "sabine", "thomas", "andrea", "michael")
LAST_NAMES = ("mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker",
    "schulz", "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "schwarz", "braun",
    "zimmermann", "hofer", "gruber", "huber", "dubois", "martin", "jansen", "devries", "smith",
    "jones", "brown", "miller", "bauer", "keller", "vogel")
TRADES = ("baeckerei", "praxis", "kanzlei", "autohaus", "hotel", "weingut", "elektro", "dach",
    "physio", "steuerbuero", "architekten", "fahrschule", "reisebuero", "tischlerei", "galerie",
    "kita", "verein", "studio", "optik", "apotheke", "immobilien", "garten")
ROLES = ("info", "kontakt", "office", "buero", "service", "termine", "buchhaltung", "post")
BUSINESS_SENDERS = ("rechnung", "noreply", "shop", "newsletter", "bestellung", "versand")
# home countries of customers (HOME_COUNTRIES order) and how common they are
COUNTRY_WEIGHTS = (0.6, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04)
# fmt: on


class Device(NamedTuple):
    """A mail client an account uses: how it connects and what it says."""

    kind: str  # desktop | laptop | phone | webmail | server
    helo: str
    service: str  # submission | smtps
    method: str  # PLAIN | LOGIN
    message_ids: str  # thunderbird | apple | outlook | android | roundcube | php
    at_office: bool = False


class Account(NamedTuple):
    address: str
    kind: str  # person | role | business
    country: str
    home: Network
    mobile: Network | None
    devices: tuple[Device, ...]
    daily: float  # mean messages a weekday
    inbound: float  # mean inbound messages a day
    rhythm: str  # office | evening | allday | morning
    contacts: tuple[str, ...]
    office_ip: str = ""
    office: Network | None = None  # the office's network (colleagues share one address)
    server_ip: str = ""
    mobile_share: float = 0.6  # how often the phone is on the mobile network, not home WiFi


def message_id(rng: random.Random, style: str, domain: str, when: float) -> str:
    """A Message-ID in the shape the given mail client writes."""
    if style == "thunderbird":
        return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}@{domain}"
    if style == "apple":
        return f"{str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}@{domain}"
    if style == "outlook":
        parts = [f"{rng.getrandbits(48):012x}" for _ in range(3)]
        return f"0000{parts[0]}${parts[1][:8]}${parts[2][:8]}$@{domain}"
    if style == "gmail":
        tail = "".join(
            rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=40)
        )
        return f"CA+{tail}@mail.gmail.com"
    if style == "php":
        return f"{rng.getrandbits(160):040x}@{domain}"
    return f"{rng.getrandbits(128):032x}@{domain}"


def private_literal(rng: random.Random) -> str:
    """A LAN address literal, as Thunderbird sends in EHLO."""
    return f"[192.168.{rng.choice((0, 1, 2, 178, 188))}.{rng.randrange(2, 250)}]"


def windows_name(rng: random.Random) -> str:
    return rng.choice(("DESKTOP-", "LAPTOP-")) + "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=7)
    )


class Population:
    """Customer domains and their mailboxes, built deterministically from a seed."""

    def __init__(self, seed: int | str, accounts: int = 200, businesses: int | None = None) -> None:
        rng = random.Random(f"{seed}:population")
        self.rng = rng
        self.seed = seed
        self.domains: list[str] = ["example.com", "example.net", "example.org"]
        used: set[str] = set(self.domains)
        while len(self.domains) < max(6, accounts // 5):
            name = f"{rng.choice(TRADES)}-{rng.choice(LAST_NAMES)}.example"
            if name not in used:
                used.add(name)
                self.domains.append(name)
        self.local_domains = {
            domain: ("virtual" if index % 9 == 8 else "lmtp")
            for index, domain in enumerate(self.domains)
        }
        self.partner_domains = [
            f"{rng.choice(TRADES)}-{rng.choice(LAST_NAMES)}-partner.example" for _ in range(40)
        ]
        self.offices: dict[str, tuple[str, Network]] = {}
        self.accounts: list[Account] = []
        addresses: set[str] = set()
        businesses = max(1, accounts // 60) if businesses is None else businesses
        while len(self.accounts) < accounts:
            index = len(self.accounts)
            kind = "business" if index < businesses else "role" if rng.random() < 0.2 else "person"
            account = self._account(kind, addresses)
            if account is not None:
                addresses.add(account.address)
                self.accounts.append(account)
        self.addresses = [account.address for account in self.accounts]

    def add(self, accounts: Sequence[Account]) -> None:
        """Add hand-made accounts (look-alikes); their domains become hosted domains."""
        for account in accounts:
            domain = account.address.partition("@")[2]
            if domain not in self.local_domains:
                self.domains.append(domain)
                self.local_domains[domain] = "lmtp"
            self.accounts.append(account)
            self.addresses.append(account.address)

    def _account(self, kind: str, taken: set[str]) -> Account | None:
        rng = self.rng
        domain = (
            rng.choice(self.domains[1:])
            if kind != "person" or rng.random() < 0.9
            else "example.com"
        )
        if kind == "person":
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            local = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", first, f"{first}{last}"))
        elif kind == "role":
            local = rng.choice(ROLES)
        else:
            local = rng.choice(BUSINESS_SENDERS)
        address = f"{local}@{domain}"
        if address in taken:
            return None
        country = rng.choices(HOME_COUNTRIES, COUNTRY_WEIGHTS)[0]
        home = rng.choice(networks("residential", country))
        mobiles = networks("mobile", country)
        mobile = rng.choice(mobiles) if mobiles else None
        office = self.offices.get(domain)
        if office is None:
            office = (home.address(rng), home)
            self.offices[domain] = office
        office_ip, office_network = office
        devices: list[Device] = []
        server_ip = ""
        if kind == "business":
            server_ip = rng.choice(networks("hosting", rng.choice(("DE", "FR")))).address(rng)
            devices.append(
                Device(
                    "server",
                    rng.choice(
                        (f"web{rng.randrange(1, 9)}.{domain}", "localhost", f"shop.{domain}")
                    ),
                    "submission",
                    "LOGIN",
                    "php",
                )
            )
            daily = rng.uniform(60, 400)
            rhythm = "allday"
        else:
            desktop_style = rng.choices(("thunderbird", "outlook", "apple"), (0.35, 0.45, 0.2))[0]
            helo = {
                "thunderbird": private_literal(rng),
                "outlook": windows_name(rng),
                "apple": "smtpclient.apple",
            }[desktop_style]
            devices.append(
                Device(
                    "desktop",
                    helo,
                    rng.choice(("submission", "submission", "smtps")),
                    "LOGIN" if desktop_style == "outlook" else "PLAIN",
                    desktop_style,
                    at_office=kind == "role" or rng.random() < 0.5,
                )
            )
            if rng.random() < 0.65:
                apple = rng.random() < 0.45
                devices.append(
                    Device(
                        "phone",
                        "smtpclient.apple"
                        if apple
                        else f"[10.{rng.randrange(0, 255)}.{rng.randrange(0, 255)}."
                        f"{rng.randrange(2, 250)}]",
                        "submission",
                        "PLAIN",
                        "apple" if apple else "android",
                    )
                )
            if rng.random() < (0.35 if kind == "role" else 0.15):
                devices.append(
                    Device("webmail", "webmail.example.com", "submission", "PLAIN", "roundcube")
                )
            if kind == "role":
                daily = rng.lognormvariate(1.8, 0.6)
                rhythm = "office"
            else:
                daily = (
                    rng.lognormvariate(1.0, 0.9) if rng.random() < 0.9 else rng.uniform(0.1, 0.5)
                )
                rhythm = rng.choices(("office", "evening", "allday"), (0.5, 0.35, 0.15))[0]
        # people write to a circle of 5-40; a business sender to its customers
        circle = rng.randrange(5, 40) if kind != "business" else rng.randrange(300, 2000)
        contacts = tuple(self.recipient(rng) for _ in range(circle))
        inbound = rng.lognormvariate(2.0, 0.8) if kind != "business" else rng.uniform(2, 10)
        return Account(
            address,
            kind,
            country,
            home,
            mobile,
            tuple(devices),
            daily,
            inbound,
            rhythm,
            contacts,
            office_ip,
            office_network,
            server_ip,
        )

    def recipient(self, rng: random.Random) -> str:
        """A plausible outside recipient: freemail (most) or a business partner."""
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if rng.random() < 0.35:
            return (
                f"{rng.choice((first, f'{first}.{last}', 'info', 'office'))}@"
                f"{rng.choice(self.partner_domains)}"
            )
        local = rng.choice(
            (
                f"{first}.{last}",
                f"{first}{last}{rng.randrange(1, 99)}",
                f"{first[0]}{last}",
                f"{last}.{first}",
            )
        )
        return f"{local}@{rng.choice(FREEMAIL_DOMAINS)}"

    def home_ip(self, account: Account, day: int) -> str:
        """The account's home address on ``day``: dynamic, renewed every few days."""
        period = random.Random(f"{self.seed}:{account.address}:period").randint(1, 7)
        return account.home.address(random.Random(f"{self.seed}:{account.address}:{day // period}"))


# fmt: off
FREEMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "googlemail.com", "yahoo.com",
    "yahoo.de", "hotmail.com", "outlook.com", "outlook.de", "live.com", "gmx.de", "gmx.net",
    "web.de", "t-online.de", "aol.com", "yahoo.fr", "mail.ru", "orange.fr", "free.fr")
# fmt: on


def endpoint(ip: str, network: Network | None, helo: str) -> Endpoint:
    """How Postfix names a client at ``ip``: verified PTR, mismatch warning, or unknown."""
    if ip == WEBMAIL_IP:
        return Endpoint(ip, "localhost", "", helo)
    name = network.hostname(ip) if network is not None else None
    if name is None:
        return Endpoint(ip, "unknown", "", helo)
    if random.Random(f"ptr:{ip}").random() < 0.75:
        return Endpoint(ip, name, "", helo)
    return Endpoint(ip, "unknown", name, helo)
