"""The mail server writing its log: sessions that bring mail in, as Postfix 3.7 logs them.

:class:`Server` holds one server's state (clock, PIDs, queue IDs, queue manager) and writes
whole sessions: authenticated submission (``postfix/submission/smtpd``,
``postfix/smtps/smtpd``), inbound mail behind postscreen, and local ``pickup`` mail; the
queue manager (``bench.delivery``) takes over from there.  Sessions without mail live in
``bench.refusals``, Dovecot's logins in ``bench.dovecot``.  :meth:`Server.run` plays
sources of sessions in time order; each session is written whole when it starts.

The wording is copied from real logs (the ``shared/corpus/real`` collection): a real session
of a stolen submission password (TLS, ``client=unknown[ip], sasl_method=PLAIN,
sasl_username=``, the sender-cleanup ``replace: header ... helo=<...>`` line), zentyal's
submission blocks, modoboa's postscreen/LMTP sessions, kdent's MX log, pflgviewer's SASL
failures, NoLE's pickup lines, and Postfix 3.7's own format strings.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, TextIO

from bench.delivery import Queue
from bench.networks import SERVER_IP, WEBMAIL_IP
from bench.remote import Directory
from bench.timeline import Anvil, Processes, QueueIds, Singleton, Timeline

TLS_FROM_13 = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
    "server-signature RSA-PSS (4096 bits) server-digest SHA256"
)
TLS_FROM_12 = "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)"


Action = Callable[[float], object]
"""Something that happens at a time: it writes one whole session starting then."""

Source = Iterator[tuple[float, Action]]
"""A stream of actions in time order (one kind of traffic)."""


class Endpoint(NamedTuple):
    """A connecting client: address, verified reverse name, and what it says in HELO."""

    ip: str
    name: str = "unknown"  # forward-confirmed reverse name, else "unknown"
    ptr_mismatch: str = ""  # a PTR name whose forward lookup fails: logged as a warning
    helo: str = ""


class Outgoing(NamedTuple):
    """One message a client sends."""

    sender: str
    recipients: tuple[str, ...]
    size: int
    message_id: str
    spam: bool = False  # receivers push back on it


class Queued(NamedTuple):
    """What the generator knows about a message it wrote (the ground truth for goldens)."""

    queue_id: str
    received: float  # the client= (or pickup) line
    active: float  # qmgr's "queue active"
    removed: float
    sender: str
    recipients: tuple[str, ...]


def counters(parts: Sequence[tuple[str, int, int]]) -> str:
    """smtpd's disconnect statistics: ``ehlo=1 auth=0/1 quit=1 commands=2/3``."""
    words = []
    ok_sum = total_sum = 0
    for name, ok, total in parts:
        if total == 0:
            continue
        words.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
        ok_sum += ok
        total_sum += total
    words.append(f"commands={ok_sum}" if ok_sum == total_sum else f"commands={ok_sum}/{total_sum}")
    return " ".join(words)


class Server:
    """One mail server writing its log: Postfix with postscreen, submission, smtps, Dovecot."""

    def __init__(
        self,
        out: TextIO,
        seed: int | str,
        *,
        start: float,
        end: float | None = None,
        host: str = "mail",
        hostname: str = "mail.example.com",
        stamps: str = "traditional",
        long_ids: bool = False,
        local_domains: dict[str, str] | None = None,
    ) -> None:
        self.rng = random.Random(f"{seed}:server")
        self.timeline = Timeline(out, host, stamps, end)
        self.hostname = hostname
        self.ip = SERVER_IP
        self.processes = Processes(self.rng, first_pid=self.rng.randrange(2000, 900_000))
        self.queue_ids = QueueIds(self.rng, lambda: self.timeline.horizon, long_ids)
        self.directory = Directory(random.Random(f"{seed}:directory"))
        self.queue = Queue(
            self.timeline,
            self.processes,
            self.queue_ids,
            self.directory,
            self.rng,
            hostname,
            local_domains if local_domains is not None else {},
            qmgr_pid=self.processes.spawn(),
        )
        self.pickup_pid = self.processes.spawn()
        self.postscreen = Singleton(self.processes)
        self.anvil = Anvil(self.timeline, self.processes)
        self.start = start
        self.timeline.advance(start)

    # --- the clock -----------------------------------------------------------------------

    def at(self, ts: float) -> None:
        """Move the clock to ``ts``: everything logged before it is written out."""
        self.anvil.tick(ts)
        self.timeline.advance(ts)

    def close(self) -> None:
        self.timeline.close()

    def run(
        self, sources: Sequence[Source], *, until: float | None = None, max_lines: int | None = None
    ) -> None:
        """Play ``sources`` merged in time order, up to ``until`` or ``max_lines``; close."""
        heap: list[tuple[float, int, Action, Source]] = []
        for index, source in enumerate(sources):
            first = next(source, None)
            if first is not None:
                heap.append((first[0], index, first[1], source))
        heapq.heapify(heap)
        while heap:
            ts, index, action, source = heapq.heappop(heap)
            if until is not None and ts >= until:
                break
            if max_lines is not None and self.timeline.written >= max_lines:
                break
            self.at(ts)
            action(ts)
            following = next(source, None)
            if following is not None:
                heapq.heappush(heap, (following[0], index, following[1], source))
        self.close()

    @property
    def written(self) -> int:
        return self.timeline.written

    # --- helpers -------------------------------------------------------------------------

    def add(self, ts: float, program: str, pid: int | None, message: str) -> None:
        self.timeline.add(ts, program, pid, message)

    def _accept(
        self,
        ts: float,
        data_end: float,
        queue_id: str,
        mail: Outgoing,
        *,
        cleanup: str,
        client: Endpoint | None,
    ) -> Queued:
        """Cleanup and qmgr for a message whose DATA ran from ``ts`` to ``data_end``."""
        rng = self.rng
        header = ts + rng.uniform(0.02, 0.1)
        pid = self.processes.acquire(cleanup, header, header + 0.05)
        self.add(header, cleanup, pid, f"{queue_id}: message-id=<{mail.message_id}>")
        if client is not None and client.helo:
            # the sender-cleanup header_checks REPLACE rule logs every submitted message
            self.add(
                header + 0.001,
                cleanup,
                pid,
                f"{queue_id}: replace: header MIME-Version: 1.0 from "
                f"{client.name}[{client.ip}]; from=<{mail.sender}> "
                f"to=<{mail.recipients[0]}> proto=ESMTP helo=<{client.helo}>: "
                "Mime-Version: 1.0",
            )
        active = data_end + rng.uniform(0.005, 0.15)
        removed = self.queue.active(
            active,
            queue_id,
            mail.sender,
            mail.recipients,
            mail.size,
            mail.message_id,
            ts,
            spam=mail.spam,
        )
        return Queued(queue_id, ts, active, removed, mail.sender, mail.recipients)

    def _data_time(self, size: int) -> float:
        return self.rng.uniform(0.05, 0.4) + size / self.rng.uniform(200_000, 4_000_000)

    @staticmethod
    def smtpd_program(service: str) -> str:
        return "postfix/smtpd" if service == "smtpd" else f"postfix/{service}/smtpd"

    def postscreen_pass(self, ts: float, ip: str, verdict: str) -> tuple[int, float]:
        """postscreen's CONNECT and PASS lines; returns (client port, time smtpd takes over)."""
        rng = self.rng
        port = rng.randrange(1024, 65535)
        pid = self.postscreen.use(ts)
        self.add(ts, "postfix/postscreen", pid, f"CONNECT from [{ip}]:{port} to [{self.ip}]:25")
        passed = ts + (rng.uniform(6.0, 6.4) if verdict == "PASS NEW" else rng.uniform(0.001, 0.05))
        self.add(passed, "postfix/postscreen", pid, f"{verdict} [{ip}]:{port}")
        return port, passed + rng.uniform(0.001, 0.02)

    def connect(self, ts: float, program: str, pid: int, client: Endpoint, service: str) -> None:
        if client.ptr_mismatch:
            self.add(
                ts,
                program,
                pid,
                f"warning: hostname {client.ptr_mismatch} does not "
                f"resolve to address {client.ip}: Name or service not known",
            )
        self.add(ts, program, pid, f"connect from {client.name}[{client.ip}]")
        self.anvil.connect(ts, service, client.ip)

    # --- authenticated submission ----------------------------------------------------------

    def submit(
        self,
        ts: float,
        client: Endpoint,
        username: str,
        mails: Sequence[Outgoing],
        *,
        service: str = "submission",
        method: str = "PLAIN",
        failures: int = 0,
        tls: bool = True,
    ) -> list[Queued]:
        """An authenticated session on ``service`` (submission, smtps, smtpd) sending ``mails``.

        ``failures`` wrong passwords come before the right one.  Port 25 sessions pass
        postscreen first.  Returns what was queued.
        """
        rng = self.rng
        program = self.smtpd_program(service)
        cleanup = "postfix/cleanup" if service == "smtpd" else "postfix/sender-cleanup/cleanup"
        lines: list[tuple[float, str]] = []
        t = ts
        if service == "smtpd" and client.ip != WEBMAIL_IP:
            _, t = self.postscreen_pass(ts, client.ip, "PASS OLD")
        connected = t
        starttls = tls and service != "smtps"
        if tls:
            t += rng.uniform(0.05, 0.8)
            lines.append(
                (
                    t,
                    f"Anonymous TLS connection established from "
                    f"{client.name}[{client.ip}]: "
                    f"{TLS_FROM_13 if rng.random() < 0.8 else TLS_FROM_12}",
                )
            )
        for _ in range(failures):
            t += rng.uniform(1.0, 4.0)
            lines.append((t, self.sasl_failure(client, method, username)))
        t += rng.uniform(0.2, 1.5)
        queued: list[Queued] = []
        rcpt_count = 0
        for mail in mails:
            t += rng.uniform(0.05, 0.6)
            queue_id = self.queue_ids.new(t)
            lines.append(
                (
                    t,
                    f"{queue_id}: client={client.name}[{client.ip}], "
                    f"sasl_method={method}, sasl_username={username}",
                )
            )
            data_end = (
                t + len(mail.recipients) * rng.uniform(0.01, 0.1) + self._data_time(mail.size)
            )
            queued.append(
                self._accept(
                    t,
                    data_end,
                    queue_id,
                    mail,
                    cleanup=cleanup,
                    client=client if service != "smtpd" else None,
                )
            )
            rcpt_count += len(mail.recipients)
            t = data_end + rng.uniform(0.01, 0.2)
        t += rng.uniform(0.02, 0.4)
        stats = counters(
            [
                ("ehlo", 2 if starttls else 1, 2 if starttls else 1),
                ("starttls", int(starttls), int(starttls)),
                ("auth", 1, failures + 1),
                ("mail", len(mails), len(mails)),
                ("rcpt", rcpt_count, rcpt_count),
                ("data", len(mails), len(mails)),
                ("quit", 1, 1),
            ]
        )
        lines.append((t, f"disconnect from {client.name}[{client.ip}] {stats}"))
        pid = self.processes.acquire(program, connected, t)
        self.connect(connected, program, pid, client, service)
        for when, message in lines:
            self.add(when, program, pid, message)
        return queued

    @staticmethod
    def sasl_failure(client: Endpoint, method: str, username: str) -> str:
        # Postfix 3.7 with Dovecot SASL: LOGIN fails on the "Password:" challenge
        reason = "UGFzc3dvcmQ6" if method == "LOGIN" else "(reason unavailable)"
        return (
            f"warning: {client.name}[{client.ip}]: SASL {method} authentication failed: "
            f"{reason}, sasl_username={username}"
        )

    # --- inbound mail on port 25 --------------------------------------------------------------

    def receive(
        self,
        ts: float,
        client: Endpoint,
        mails: Sequence[Outgoing],
        *,
        tls: bool = True,
        verdict: str = "PASS OLD",
    ) -> list[Queued]:
        """Mail from another server for our users, through postscreen and smtpd."""
        rng = self.rng
        program = "postfix/smtpd"
        _, t = self.postscreen_pass(ts, client.ip, verdict)
        connected = t
        lines: list[tuple[float, str]] = []
        if tls:
            t += rng.uniform(0.05, 0.5)
            lines.append(
                (
                    t,
                    f"Anonymous TLS connection established from "
                    f"{client.name}[{client.ip}]: {TLS_FROM_13}",
                )
            )
        queued: list[Queued] = []
        rcpt_count = 0
        for mail in mails:
            t += rng.uniform(0.1, 1.2)
            queue_id = self.queue_ids.new(t)
            lines.append((t, f"{queue_id}: client={client.name}[{client.ip}]"))
            data_end = (
                t + len(mail.recipients) * rng.uniform(0.02, 0.2) + self._data_time(mail.size)
            )
            queued.append(
                self._accept(t, data_end, queue_id, mail, cleanup="postfix/cleanup", client=None)
            )
            rcpt_count += len(mail.recipients)
            t = data_end + rng.uniform(0.01, 0.3)
        t += rng.uniform(0.02, 0.5)
        parts = [
            ("ehlo", 1 + int(tls), 1 + int(tls)),
            ("starttls", int(tls), int(tls)),
            ("mail", len(mails), len(mails)),
            ("rcpt", rcpt_count, rcpt_count),
            ("data", len(mails), len(mails)),
            ("quit", 1, 1),
        ]
        lines.append((t, f"disconnect from {client.name}[{client.ip}] {counters(parts)}"))
        pid = self.processes.acquire(program, connected, t)
        self.connect(connected, program, pid, client, "smtpd")
        for when, message in lines:
            self.add(when, program, pid, message)
        return queued

    # --- local submission -------------------------------------------------------------------

    def pickup(self, ts: float, uid: int, sender: str, mail: Outgoing) -> Queued:
        """Mail from the sendmail command (cron, PHP's mail()): pickup, cleanup, qmgr."""
        queue_id = self.queue_ids.new(ts)
        self.add(ts, "postfix/pickup", self.pickup_pid, f"{queue_id}: uid={uid} from=<{sender}>")
        return self._accept(
            ts,
            ts + self.rng.uniform(0.005, 0.05),
            queue_id,
            mail,
            cleanup="postfix/cleanup",
            client=None,
        )
