"""Remote mail servers: where outbound mail goes and what they answer.

Reply texts are copied from real Postfix delivery lines (public logs and parser test data):
Gmail's ``250 2.0.0 OK ... - gsmtp``, its 550-5.1.1 / 550-5.7.1 / 421-4.7.0 / 452-4.2.2
multi-line replies, Yahoo's ``250 ok dirdel`` and ``421 4.7.0 [TSS04]``, Hotmail's
``Queued mail for delivery`` and ``mailbox unavailable``, GMX's ``Requested mail action
okay``, remote Postfix and Exim ``queued as`` replies, Spamhaus blocks, timeouts and DNS
failures.  Only identifiers (tokens, IDs, addresses) are generated.
"""

from __future__ import annotations

import random
import string
from typing import NamedTuple

from bench.networks import SERVER_IP

_UPPER_HEX = "0123456789ABCDEF"
_ALNUM = string.ascii_letters + string.digits


class Attempt(NamedTuple):
    """One delivery attempt for one recipient, as the smtp client logs it."""

    status: str  # sent | deferred | bounced
    dsn: str
    relay: str  # "name[ip]:25" or "none"
    reply: str  # the text in parentheses


class Mx(NamedTuple):
    name: str
    ip: str

    @property
    def relay(self) -> str:
        return f"{self.name}[{self.ip}]:25"


def _gmail_token(rng: random.Random) -> str:
    letters = string.ascii_lowercase
    return (
        f"{rng.choice(letters)}{rng.choice(letters)}{rng.randrange(1, 20)}si"
        f"{rng.randrange(10**7, 10**8)}{''.join(rng.choices(letters, k=3))}.{rng.randrange(1, 240)}"
    )


def _said(mx: Mx, text: str, stage: str) -> str:
    return f"host {mx.name}[{mx.ip}] said: {text} (in reply to {stage} command)"


class Provider:
    """One receiving platform: its MX hosts and how it answers."""

    def __init__(self, name: str, style: str, domains: tuple[str, ...], mx: tuple[Mx, ...]) -> None:
        self.name = name
        self.style = style  # whose replies: gmail yahoo microsoft gmx exim postfix
        self.domains = domains
        self.mx = mx

    def accepted(self, rng: random.Random, when: float, message_id: str) -> str:
        """The 250 reply for an accepted message."""
        if self.style == "gmail":
            return f"250 2.0.0 OK  {int(when)} {_gmail_token(rng)} - gsmtp"
        if self.style == "yahoo":
            return "250 ok dirdel"
        if self.style == "microsoft":
            return f"250  <{message_id}> Queued mail for delivery"
        if self.style == "gmx":
            return (
                f"250 Requested mail action okay, completed: id="
                f"0{''.join(rng.choices(_ALNUM, k=5))}-1{''.join(rng.choices(_ALNUM, k=9))}"
                f"-0{''.join(rng.choices(_ALNUM, k=5))}"
            )
        if self.style == "exim":
            return (
                f"250 OK id=1{''.join(rng.choices(_ALNUM, k=5))}-"
                f"{''.join(rng.choices(_ALNUM, k=6))}-{''.join(rng.choices(_ALNUM, k=2))}"
            )
        return f"250 2.0.0 Ok: queued as {''.join(rng.choices(_UPPER_HEX, k=10))}"

    def unknown_user(self, rng: random.Random, mx: Mx, recipient: str) -> Attempt | None:
        """The permanent reject for a recipient that does not exist (None: accepts all)."""
        if self.style == "gmail":
            return Attempt(
                "bounced",
                "5.1.1",
                mx.relay,
                _said(
                    mx,
                    "550-5.1.1 The email account that you tried to reach does not exist. "
                    "Please try 550-5.1.1 double-checking the recipient's email address for typos "
                    "or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 "
                    "http://support.google.com/mail/bin/answer.py?answer=6596 "
                    f"{_gmail_token(rng)} - gsmtp",
                    "RCPT TO",
                ),
            )
        if self.style == "microsoft":
            return Attempt(
                "bounced",
                "5.0.0",
                mx.relay,
                _said(mx, "550 Requested action not taken: mailbox unavailable", "RCPT TO"),
            )
        if self.style in ("postfix", "gmx"):
            return Attempt(
                "bounced",
                "5.1.1",
                mx.relay,
                _said(
                    mx,
                    f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in "
                    "virtual mailbox table",
                    "RCPT TO",
                ),
            )
        return None

    def spam_reject(self, rng: random.Random, mx: Mx) -> Attempt | None:
        """How this platform pushes back on spam from our address (None: it does not)."""
        if self.style == "gmail":
            if rng.random() < 0.5:
                return Attempt(
                    "deferred",
                    "4.7.0",
                    mx.relay,
                    _said(
                        mx,
                        f"421-4.7.0 [{SERVER_IP}      15] Our system has detected an unusual "
                        "rate of 421-4.7.0 unsolicited mail originating from your IP address. To "
                        "protect our 421-4.7.0 users from spam, mail sent from your IP address has "
                        "been temporarily 421-4.7.0 rate limited. Please visit 421-4.7.0  "
                        "https://support.google.com/mail/answer/81126 to review our Bulk Email 421 "
                        f"4.7.0 Senders Guidelines. {_gmail_token(rng)} - gsmtp",
                        "end of DATA",
                    ),
                )
            return Attempt(
                "bounced",
                "5.7.1",
                mx.relay,
                _said(
                    mx,
                    f"550-5.7.1 [{SERVER_IP}      12] Our system has detected that this "
                    "550-5.7.1 message is likely unsolicited mail. To reduce the amount of spam "
                    "sent 550-5.7.1 to Gmail, this message has been blocked. Please visit "
                    "550-5.7.1 http://support.google.com/mail/bin/answer.py?hl=en&answer=188131 "
                    f"for 550 5.7.1 more information. {_gmail_token(rng)} - gsmtp",
                    "end of DATA",
                ),
            )
        if self.style == "yahoo":
            return Attempt(
                "deferred",
                "4.7.0",
                mx.relay,
                _said(
                    mx,
                    f"421 4.7.0 [TSS04] Messages from {SERVER_IP} temporarily deferred due to "
                    "user complaints - 4.16.55.1; see https://postmaster.verizonmedia.com/error-codes",
                    "MAIL FROM",
                ),
            )
        if self.style in ("postfix", "exim", "gmx"):
            return Attempt(
                "bounced",
                "5.7.1",
                mx.relay,
                _said(
                    mx,
                    f"554 5.7.1 Service unavailable; Client host [{SERVER_IP}] blocked using "
                    "zen.spamhaus.org; http://www.spamhaus.org/sbl/query/SBLCSS",
                    "RCPT TO",
                ),
            )
        return None

    def transient(self, rng: random.Random, mx: Mx, domain: str) -> Attempt:
        """An ordinary temporary failure (the message is retried later)."""
        roll = rng.random()
        if self.style == "gmail" and roll < 0.6:
            return Attempt(
                "deferred",
                "4.2.2",
                mx.relay,
                _said(
                    mx,
                    "452-4.2.2 The email account that you tried to reach is over quota. "
                    "Please direct 452-4.2.2 the recipient to 452 4.2.2 "
                    "http://support.google.com/mail/bin/answer.py?answer=6558 "
                    f"{_gmail_token(rng)} - gsmtp",
                    "RCPT TO",
                ),
            )
        if self.style in ("gmail", "yahoo", "microsoft", "gmx") or roll < 0.3:
            return Attempt(
                "deferred",
                "4.4.1",
                "none",
                f"connect to {mx.name}[{mx.ip}]:25: Connection timed out",
            )
        if roll < 0.45:
            return Attempt(
                "deferred", "4.4.1", "none", f"connect to {mx.name}[{mx.ip}]:25: Connection refused"
            )
        if roll < 0.6:
            return Attempt(
                "deferred",
                "4.4.3",
                "none",
                f"Host or domain name not found. Name service error for "
                f"name={domain} type=MX: Host not found, try again",
            )
        if roll < 0.85:
            return Attempt(
                "deferred",
                "4.0.0",
                mx.relay,
                _said(mx, "451 Temporary local problem - please try later", "RCPT TO"),
            )
        return Attempt(
            "deferred",
            "4.0.0",
            mx.relay,
            _said(mx, "452 Too many recipients received from the sender", "RCPT TO"),
        )


def _hosts(names: tuple[str, ...], prefix: str, rng: random.Random, count: int) -> tuple[Mx, ...]:
    return tuple(Mx(rng.choice(names), f"{prefix}.{rng.randrange(2, 250)}") for _ in range(count))


class Directory:
    """Maps recipient domains to providers; unknown domains get a generic remote MTA."""

    # (name, reply style, domains, MX names, MX /24): weights say how often a freemail
    # recipient is at each platform
    FREEMAIL: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], str, float], ...] = (
        (
            "gmail",
            "gmail",
            ("gmail.com", "googlemail.com"),
            (
                "gmail-smtp-in.l.google.com",
                "alt1.gmail-smtp-in.l.google.com",
                "alt2.gmail-smtp-in.l.google.com",
            ),
            "142.250.102",
            0.40,
        ),
        (
            "yahoo",
            "yahoo",
            ("yahoo.com", "yahoo.com.br", "yahoo.fr", "yahoo.de", "ymail.com"),
            ("mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"),
            "98.136.96",
            0.11,
        ),
        ("aol", "yahoo", ("aol.com",), ("mx-aol.mail.gm0.yahoodns.net",), "67.195.204", 0.02),
        (
            "microsoft",
            "microsoft",
            ("hotmail.com", "outlook.com", "live.com", "msn.com", "hotmail.de", "outlook.de"),
            ("mx1.hotmail.com", "mx2.hotmail.com", "mx3.hotmail.com", "mx4.hotmail.com"),
            "52.101.40",
            0.19,
        ),
        (
            "gmx",
            "gmx",
            ("gmx.de", "gmx.net", "web.de", "gmx.at"),
            ("mx00.gmx.net", "mx01.gmx.net"),
            "212.227.15",
            0.14,
        ),
        ("mailru", "exim", ("mail.ru",), ("mxs.mail.ru",), "94.100.180", 0.04),
        ("yandex", "exim", ("yandex.ru",), ("mx.yandex.ru",), "77.88.21", 0.03),
        ("tonline", "exim", ("t-online.de",), ("mx00.t-online.de",), "194.25.134", 0.04),
        (
            "orange",
            "postfix",
            ("orange.fr", "wanadoo.fr"),
            ("smtp-in.orange.fr",),
            "80.12.242",
            0.02,
        ),
        ("libero", "postfix", ("libero.it",), ("smtp-in.libero.it",), "213.209.1", 0.01),
    )

    def __init__(self, rng: random.Random) -> None:
        self.providers: dict[str, Provider] = {}
        self._by_domain: dict[str, Provider] = {}
        self._names: list[str] = []
        self._weights: list[float] = []
        for name, style, domains, mx_names, prefix, weight in self.FREEMAIL:
            provider = Provider(
                name, style, domains, _hosts(mx_names, prefix, rng, min(6, 2 * len(mx_names)))
            )
            self.providers[name] = provider
            self._names.append(name)
            self._weights.append(weight)
            for domain in domains:
                self._by_domain[domain] = provider
        self.freemail_domains = [domain for row in self.FREEMAIL for domain in row[2]]

    def provider(self, domain: str) -> Provider:
        """The provider for ``domain``; a business domain gets its own remote MTA."""
        found = self._by_domain.get(domain)
        if found is None:
            rng = random.Random(f"mx:{domain}")
            ip = (
                f"{rng.choice((81, 85, 88, 91, 94, 185, 212, 217))}.{rng.randrange(1, 255)}."
                f"{rng.randrange(0, 255)}.{rng.randrange(2, 250)}"
            )
            style = "postfix" if rng.random() < 0.7 else "exim"
            found = Provider(domain, style, (domain,), (Mx(f"mail.{domain}", ip),))
            self._by_domain[domain] = found
        return found

    def freemail_domain(self, rng: random.Random) -> str:
        """A freemail recipient domain, weighted by platform size."""
        name = rng.choices(self._names, self._weights)[0]
        return rng.choice(self.providers[name].domains)
