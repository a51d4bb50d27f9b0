"""Look-alikes: accounts whose ordinary habits resemble abuse and must raise nothing.

A shop's newsletter (over a thousand messages every morning from one rented server, to the
same subscribers), a field worker whose every session comes from another address of one
mobile carrier, a company whose dozen staff share the office's one address, and customers
who only use the webmail (127.0.0.1).  The traveller is made by
:meth:`bench.ordinary.Ordinary.send_abroad`.
"""

from __future__ import annotations

import random

from bench.networks import network
from bench.population import FIRST_NAMES, LAST_NAMES, Account, Device, Population, windows_name


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
