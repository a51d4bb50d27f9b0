"""The small frozen records that pass between pipeline stages.

``LogLine`` leaves the sources, events (``postwatch.parse.events``) leave the parser,
``Message`` and ``Session`` leave the correlator.  They are ``NamedTuple``s: immutable,
cheap to build on the hot path, and printable.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class LogLine(NamedTuple):
    """One log record, split from its syslog/journal framing.

    ``program`` is the full syslog tag name (``postfix/submission/smtpd``,
    ``postfix-out/smtp``, ``dovecot``); ``service`` and ``daemon`` split it at the
    last ``/``.  ``origin`` and ``lineno`` say where it was read, for error messages.
    """

    ts: datetime  # timezone-aware, UTC
    host: str
    program: str
    pid: int | None
    message: str
    origin: str = ""
    lineno: int = 0

    @property
    def daemon(self) -> str:
        return self.program.rpartition("/")[2]

    @property
    def service(self) -> str:
        return self.program.rpartition("/")[0]


class Outcome(NamedTuple):
    """What happened to one recipient of a message (last delivery attempt wins)."""

    recipient: str
    status: str  # sent | deferred | bounced | expired | deliverable | undeliverable | ...
    relay: str
    dsn: str
    ts: datetime
    reply: str = ""
    orig_to: str = ""
    deferrals: int = 0  # deferred attempts for this recipient so far, this one included


class Message(NamedTuple):
    """One message, joined over its queue ID: who submitted it and what became of it.

    ``complete`` is false when the message was flushed without its ``removed`` line
    (the correlator's TTL ran out, or the log ended).
    """

    host: str
    queue_id: str
    service: str  # syslog service that accepted it: postfix/submission, postfix, pickup ...
    first_seen: datetime
    last_seen: datetime
    client_name: str = ""
    client_ip: str = ""
    sasl_method: str = ""
    sasl_username: str = ""
    sasl_sender: str = ""
    pickup_uid: int | None = None
    sender: str | None = None  # envelope sender; "" is the null sender <>
    size: int | None = None
    nrcpt: int | None = None
    message_id: str = ""
    helo: str = ""
    outcomes: tuple[Outcome, ...] = ()
    session_pid: int | None = None
    orig_queue_id: str = ""  # set on the hop after a content filter
    next_queue_id: str = ""  # set when delivery said "queued as NEXT"
    rejected: bool = False  # cleanup/milter rejected or discarded it
    complete: bool = True


class Session(NamedTuple):
    """One smtpd session (host + pid, connect to disconnect)."""

    host: str
    service: str
    pid: int
    started: datetime
    ended: datetime
    client_name: str
    client_ip: str
    tls: str = ""  # "", Anonymous, Trusted, Verified, Untrusted
    auth_failures: int = 0
    auth_successes: int = 0
    sasl_usernames: tuple[str, ...] = ()
    failed_usernames: tuple[str, ...] = ()
    queue_ids: tuple[str, ...] = ()
    rejects: int = 0
    counters: tuple[tuple[str, int, int], ...] = ()  # ("ehlo", 1, 1), ("auth", 0, 1) ...
    helo: str = ""
    complete: bool = True


# --- what the correlator emits, as soon as it knows ----------------------------------


class Accepted(NamedTuple):
    """A message entered the queue: qmgr's ``queue active`` (sender, size, nrcpt known).

    ``message`` holds what is known then: client, SASL user or pickup uid, sender, HELO when
    some line logged it.  Emitted once per queue ID; again, with the login, for a message
    Dovecot's submission relayed before the correlator knew its relay (see ``correlate``).
    """

    ts: datetime
    message: Message


class Delivered(NamedTuple):
    """A delivery attempt for one recipient of a known message (sent, deferred, bounced ...)."""

    ts: datetime
    message: Message
    outcome: Outcome


class Completed(NamedTuple):
    """A message left memory: ``removed``, or flushed as incomplete when its TTL ran out."""

    ts: datetime
    message: Message


class SessionEnded(NamedTuple):
    """An smtpd session ended (disconnect), or was flushed as incomplete."""

    ts: datetime
    session: Session


Correlated = Accepted | Delivered | Completed | SessionEnded
