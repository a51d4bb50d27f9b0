"""Mail traffic for the end-to-end harness: who connects, what they send, what happened.

Users submit from their homes (:func:`home_client`, :func:`ordinary_mail`); a spammer with
a stolen password submits from botnet machines abroad (:func:`attacker_clients`,
:func:`attack`).  Each submission is one real SMTP dialogue on the submission port
(:func:`submit`), the client presented to Postfix by XCLIENT: its address, reverse name
and HELO are what Postfix logs, and nothing is ever sent to those addresses.
"""

from __future__ import annotations

import random
import smtplib
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

from bench.networks import Network, network

# Where the users live and where the attacker's machines are (bench/networks.py: ranges
# checked against geoip2fast's database).
HOME = network("DE", "Deutsche Telekom AG")
ATTACKER_NETWORKS = (
    network("BR", "TELEFONICA BRASIL S.A"),
    network("VN", "VNPT Corp"),
    network("IN", "Bharti Airtel Ltd., Telemedia Services"),
    network("CN", "Chinanet"),
    network("EG", "TE Data"),
    network("AR", "Telecom Argentina S.A."),
)
# Destinations of the spam: the sink greylists them, so the spam waits in the queue.
SPAM_DOMAINS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "mail.ru")


class Client(NamedTuple):
    """Who Postfix believes is connecting (XCLIENT): address, reverse name, HELO."""

    ip: str
    name: str  # "[UNAVAILABLE]": no reverse name, Postfix logs "unknown"
    helo: str


class Attempt(NamedTuple):
    """One SMTP transaction: accepted (with its queue ID) or refused at ``stage``."""

    accepted: bool
    stage: str  # "auth", "mail", "rcpt", "data"; "" when accepted
    code: int
    reply: str
    queue_id: str = ""
    started: float = 0.0  # time.monotonic() when the client connected
    at: float = 0.0  # ... and when the server gave its last answer


class MailServer(Protocol):
    """Where the traffic goes: one submission per call (``MailSystem.send``)."""

    def send(
        self, user: str, client: Client, recipients: Sequence[str], *, subject: str
    ) -> Attempt: ...


def submit(
    port: int,
    user: str,
    password: str,
    client: Client,
    recipients: Sequence[str],
    *,
    subject: str,
    before_data: Callable[[], object] | None = None,
    proxied: bool = False,
) -> Attempt:
    """One submission to 127.0.0.1:``port`` as ``user`` with ``password``, from ``client``
    (by XCLIENT, or by the HAProxy protocol when ``proxied``: Dovecot's submission);
    ``before_data`` runs while the session waits after its last RCPT."""
    body = (
        f"From: <{user}>\r\nTo: <{recipients[0]}>\r\nSubject: {subject}\r\n\r\n"
        "Hello,\r\nplease see the attached document.\r\n"
    )
    started = time.monotonic()
    smtp = _Proxied(client.ip) if proxied else smtplib.SMTP(timeout=30)
    try:
        smtp.connect("127.0.0.1", port)
        if not proxied:
            smtp.ehlo("localhost")
            code, reply = smtp.docmd(
                "XCLIENT", f"NAME={client.name} ADDR={client.ip} HELO={client.helo}"
            )
            if code != 220:
                raise AssertionError(f"XCLIENT refused: {code} {reply!r}")
        smtp.ehlo(client.helo)
        smtp.user, smtp.password = user, password
        try:
            smtp.auth("PLAIN", smtp.auth_plain)  # one mechanism, one try
        except smtplib.SMTPAuthenticationError as exc:
            return _refused("auth", exc.smtp_code, exc.smtp_error, started)
        code, reply = smtp.mail(user)
        if code >= 400:
            return _refused("mail", code, reply, started)
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code >= 400:
                return _refused("rcpt", code, reply, started)
        if before_data is not None:
            before_data()
        code, reply = smtp.data(body.encode())
        if code >= 400:
            return _refused("data", code, reply, started)
    finally:
        _quit(smtp)
    text = reply.decode("utf-8", "replace")
    queue_id = text.rpartition("queued as ")[2].strip()
    return Attempt(True, "", code, text, queue_id, started, time.monotonic())


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT, whatever comes back: a session kicked meanwhile answers 421 or is gone, and
    its attempt has had its answer already."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


class _Proxied(smtplib.SMTP):
    """A client that presents ``address`` by a HAProxy protocol v1 header, sent on connect
    before the server's greeting."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(timeout=30)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        family = "TCP6" if ":" in self.address else "TCP4"
        local = "::1" if family == "TCP6" else host
        sock.sendall(f"PROXY {family} {self.address} {local} 40000 {port}\r\n".encode())
        return sock


def _refused(stage: str, code: int, reply: bytes | str, started: float) -> Attempt:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return Attempt(False, stage, code, text, "", started, time.monotonic())


# --- clients --------------------------------------------------------------------------------


def home_client(rng: random.Random, user: str) -> Client:
    """A user's own machine at home: a German DSL line with its reverse name."""
    ip = HOME.address(rng)
    return Client(ip, HOME.hostname(ip) or "[UNAVAILABLE]", f"{user.partition('@')[0]}-pc.home")


def attacker_clients(rng: random.Random) -> Iterator[Client]:
    """Machines of a botnet: foreign addresses, no reverse name, random HELO names."""
    while True:
        where: Network = rng.choice(ATTACKER_NETWORKS)
        # letters with a digit every third character, like EHZ5DZ3CU0EY...
        helo = "".join(
            rng.choice("0123456789" if n % 3 == 2 else "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            for n in range(rng.randint(15, 27))
        )
        yield Client(where.address(rng), "[UNAVAILABLE]", helo)


def spam_recipients(rng: random.Random, count: int) -> list[str]:
    """Recipients of one spam run: addresses at the big providers."""
    return [
        f"{rng.choice(('info', 'contact', 'sales', 'j.smith', 'm.garcia'))}{rng.randrange(10**6)}"
        f"@{rng.choice(SPAM_DOMAINS)}"
        for _ in range(count)
    ]


class Burst(NamedTuple):
    """What an attack achieved: messages accepted until the first refusal."""

    accepted: tuple[Attempt, ...]
    clients: tuple[Client, ...]  # the client of each accepted message
    refused: Attempt | None  # the first refused attempt; None if none was refused

    @property
    def seconds_to_lock(self) -> float:
        """From the first spam message accepted to the start of the first attempt refused
        (not to its answer: a refused login may be answered after a delay)."""
        if self.refused is None or not self.accepted:
            raise AssertionError("the attack was never refused")
        return self.refused.started - self.accepted[0].at


def ordinary_mail(
    system: MailServer,
    homes: Mapping[str, Client],
    rng: random.Random,
    *,
    rounds: int,
    interval: float = 1.0,
) -> list[Attempt]:
    """Every user sends one message a round from home, to one or two colleagues.

    The rounds are paced in real time: the daemons stamp the log with the wall clock,
    and postwatch must see the accounts for a while before their habits mean something.
    """
    attempts = []
    for number in range(rounds):
        if number:
            time.sleep(interval)
        for user, client in homes.items():
            recipients = [
                f"{rng.choice(('anna', 'ben', 'chris', 'dana'))}@example.{rng.choice(('net', 'org'))}"
                for _ in range(rng.randint(1, 2))
            ]
            attempts.append(
                system.send(user, client, recipients, subject=f"minutes {number} from {user}")
            )
    return attempts


def attack(
    system: MailServer,
    user: str,
    rng: random.Random,
    *,
    messages: int,
    recipients: int = 10,
    interval: float = 0.0,
) -> Burst:
    """Send spam as ``user`` with the stolen password, each message from another botnet
    machine, ``interval`` seconds apart (0: as fast as the server answers); stop at the
    first refusal."""
    accepted: list[Attempt] = []
    clients: list[Client] = []
    machines = attacker_clients(rng)
    for number in range(messages):
        if number and interval:
            time.sleep(interval)
        client = next(machines)
        attempt = system.send(
            user, client, spam_recipients(rng, recipients), subject=f"Invoice {number} overdue"
        )
        if not attempt.accepted:
            return Burst(tuple(accepted), tuple(clients), attempt)
        accepted.append(attempt)
        clients.append(client)
    return Burst(tuple(accepted), tuple(clients), None)
