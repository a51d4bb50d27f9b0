"""What happens after a message is queued: qmgr, the delivery agents, bounces, expiry.

Line shapes copied from real logs: qmgr ``from=<>, size=, nrcpt= (queue active)`` and
``removed``; smtp/lmtp/virtual/local ``to=<>, relay=, delay=, delays=, dsn=, status=``;
``connect to ...: Connection timed out``; ``Trusted TLS connection established to``;
bounce ``sender non-delivery notification``; qmgr ``status=expired, returned to sender``;
Dovecot LMTP ``Connect from local`` / ``stored mail into mailbox`` / ``Disconnect from local``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from bench.remote import Attempt, Directory, Mx, Provider
from bench.timeline import Processes, QueueIds, Timeline

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TLS_TO = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
    "server-signature RSA-PSS (2048 bits) server-digest SHA256"
)
MAX_ROUNDS = 12  # after this many deferrals a message is assumed to get through


def seconds(value: float) -> str:
    """A duration as Postfix prints ``delay=`` and ``delays=``: 0, 0.04, 3.9, 15, 231661."""
    if value >= 10:
        return str(int(value))
    if value >= 1:
        text = f"{value:.1f}"
    elif value >= 0.005:
        text = f"{value:.2f}"
    else:
        return "0"
    return text.rstrip("0").rstrip(".")


def dovecot_session_id(rng: random.Random, length: int = 16) -> str:
    """A Dovecot session/LMTP ID: base64 characters."""
    return "".join(rng.choices(_B64, k=length))


class Queue:
    """The queue manager and its delivery agents for one server."""

    def __init__(
        self,
        timeline: Timeline,
        processes: Processes,
        queue_ids: QueueIds,
        directory: Directory,
        rng: random.Random,
        hostname: str,
        local_domains: dict[str, str],
        qmgr_pid: int,
        queue_lifetime: float = 5 * 86400,
    ) -> None:
        self.timeline = timeline
        self.processes = processes
        self.queue_ids = queue_ids
        self.directory = directory
        self.rng = rng
        self.hostname = hostname
        self.local_domains = local_domains  # domain -> "lmtp" | "virtual"
        self.qmgr_pid = qmgr_pid
        self.queue_lifetime = queue_lifetime
        self.missing: set[str] = set()  # remote recipients that do not exist

    # --- queue manager -----------------------------------------------------------------

    def active(
        self,
        ts: float,
        queue_id: str,
        sender: str,
        recipients: Sequence[str],
        size: int,
        message_id: str,
        received: float,
        spam: bool = False,
        notify: bool = True,
    ) -> float:
        """Log ``queue active`` at ``ts`` and deliver; returns when the message is removed.

        ``received`` is when the message arrived (for ``delay=``); ``spam`` makes remote
        platforms push back; ``notify`` sends a non-delivery notice for bounced recipients.
        Returns ``inf`` when the message is still queued at the end of its retries.
        """
        add = self.timeline.add
        rng = self.rng
        add(
            ts,
            "postfix/qmgr",
            self.qmgr_pid,
            f"{queue_id}: from=<{sender}>, size={size}, nrcpt={len(recipients)} (queue active)",
        )
        pending = list(recipients)
        previous: dict[str, Attempt] = {}
        bounced: list[str] = []
        round_start = ts
        last = ts
        for round_number in range(MAX_ROUNDS + 1):
            deferred: list[str] = []
            for recipient, attempt, done in self._round(
                round_start,
                queue_id,
                pending,
                received,
                message_id,
                spam,
                previous,
                round_number == MAX_ROUNDS,
            ):
                last = max(last, done)
                if attempt.status == "deferred":
                    deferred.append(recipient)
                    previous[recipient] = attempt
                elif attempt.status == "bounced":
                    bounced.append(recipient)
            if not deferred:
                break
            pending = deferred
            backoff = min(300 * 2**round_number, 4000) + rng.uniform(0, 300)
            round_start = last + backoff
            if round_start - received > self.queue_lifetime:
                last = round_start
                add(
                    last,
                    "postfix/qmgr",
                    self.qmgr_pid,
                    f"{queue_id}: from=<{sender}>, status=expired, returned to sender",
                )
                bounced.extend(deferred)
                break
            add(
                round_start,
                "postfix/qmgr",
                self.qmgr_pid,
                f"{queue_id}: from=<{sender}>, size={size}, nrcpt={len(deferred)} (queue active)",
            )
        if bounced and sender and notify:
            last = self._notify(last, queue_id, sender, size)
        removed = last + rng.uniform(0.001, 0.05)
        add(removed, "postfix/qmgr", self.qmgr_pid, f"{queue_id}: removed")
        self.queue_ids.remove(queue_id, removed)
        return removed

    def _round(
        self,
        start: float,
        queue_id: str,
        recipients: Sequence[str],
        received: float,
        message_id: str,
        spam: bool,
        previous: dict[str, Attempt],
        last_round: bool,
    ) -> list[tuple[str, Attempt, float]]:
        """One delivery attempt for each recipient, grouped per destination."""
        rng = self.rng
        groups: dict[str, list[str]] = {}
        for recipient in recipients:
            domain = recipient.rpartition("@")[2] if "@" in recipient else ""
            groups.setdefault(domain, []).append(recipient)
        results: list[tuple[str, Attempt, float]] = []
        for domain, members in groups.items():
            wait = rng.uniform(0.001, 0.06)
            kind = (
                "local"
                if not domain or domain == self.hostname
                else self.local_domains.get(domain, "smtp")
            )
            if kind == "smtp":
                results.extend(
                    self._smtp(
                        start + wait,
                        queue_id,
                        domain,
                        members,
                        received,
                        message_id,
                        spam,
                        previous,
                        last_round,
                    )
                )
            else:
                results.extend(
                    self._local(start + wait, kind, queue_id, members, received, message_id)
                )
        return results

    # --- delivery agents ---------------------------------------------------------------

    def _delays(self, received: float, start: float, connect: float, transfer: float) -> str:
        before = max(start - received, 0.0)
        queued = self.rng.uniform(0, 0.03)
        return (
            f"delay={seconds(before + queued + connect + transfer)}, "
            f"delays={seconds(before)}/{seconds(queued)}/{seconds(connect)}/"
            f"{seconds(transfer)}"
        )

    def _smtp(
        self,
        start: float,
        queue_id: str,
        domain: str,
        recipients: list[str],
        received: float,
        message_id: str,
        spam: bool,
        previous: dict[str, Attempt],
        last_round: bool,
    ) -> list[tuple[str, Attempt, float]]:
        rng = self.rng
        provider = self.directory.provider(domain)
        mx = rng.choice(provider.mx)
        connect = rng.uniform(0.05, 0.9)
        attempts: list[Attempt] = []
        for recipient in recipients:
            attempt = self._attempt(
                provider,
                mx,
                domain,
                recipient,
                spam,
                start,
                message_id,
                previous.get(recipient),
                last_round,
            )
            if attempts and (attempts[0].relay == "none") != (attempt.relay == "none"):
                # one connection per destination: it either failed for all or for none
                attempt = (
                    attempts[0]
                    if attempts[0].relay == "none"
                    else Attempt(
                        "sent", "2.0.0", mx.relay, provider.accepted(rng, start, message_id)
                    )
                )
            attempts.append(attempt)
        transfer_total = sum(rng.uniform(0.05, 0.6) for _ in recipients)
        end = start + connect + transfer_total + 0.3
        pid = self.processes.acquire("postfix/smtp", start, end)
        add = self.timeline.add
        if attempts[0].relay == "none":
            connect = {"4.4.1": 30.0 + rng.uniform(0, 0.05), "4.4.3": 0.0}.get(attempts[0].dsn, 0.0)
            if attempts[0].dsn == "4.4.1":
                add(start + connect, "postfix/smtp", pid, attempts[0].reply)
        else:
            add(
                start + connect,
                "postfix/smtp",
                pid,
                f"Trusted TLS connection established to {mx.name}[{mx.ip}]:25: {_TLS_TO}",
            )
        results = []
        at = start + connect
        for recipient, attempt in zip(recipients, attempts, strict=True):
            transfer = 0.0 if attempt.relay == "none" else rng.uniform(0.05, 0.6)
            at += transfer
            add(
                at,
                "postfix/smtp",
                pid,
                f"{queue_id}: to=<{recipient}>, relay={attempt.relay}, "
                f"{self._delays(received, start, connect, transfer)}, dsn={attempt.dsn}, "
                f"status={attempt.status} ({attempt.reply})",
            )
            results.append((recipient, attempt, at))
        return results

    def _attempt(
        self,
        provider: Provider,
        mx: Mx,
        domain: str,
        recipient: str,
        spam: bool,
        when: float,
        message_id: str,
        previous: Attempt | None,
        last_round: bool,
    ) -> Attempt:
        rng = self.rng
        sent = Attempt("sent", "2.0.0", mx.relay, provider.accepted(rng, when, message_id))
        if previous is not None:  # a retry
            if last_round or rng.random() < (0.4 if spam else 0.75):
                return sent
            return previous
        if recipient in self.missing or rng.random() < (0.12 if spam else 0.003):
            rejected = provider.unknown_user(rng, mx, recipient)
            if rejected is not None:
                self.missing.add(recipient)
                return rejected
        if spam and rng.random() < 0.3:
            return provider.spam_reject(rng, mx) or sent
        if rng.random() < (0.05 if spam else 0.012):
            return provider.transient(rng, mx, domain)
        return sent

    def _local(
        self,
        start: float,
        kind: str,
        queue_id: str,
        recipients: list[str],
        received: float,
        message_id: str,
    ) -> list[tuple[str, Attempt, float]]:
        rng = self.rng
        add = self.timeline.add
        results = []
        at = start
        if kind == "lmtp":
            end = start + 0.3 * len(recipients) + 0.2
            pid = self.processes.acquire("postfix/lmtp", start, end)
            dovecot_pid = self.processes.acquire("dovecot/lmtp", start, end)
            add(start, "dovecot", None, f"lmtp({dovecot_pid}): Connect from local")
            for recipient in recipients:
                transfer = rng.uniform(0.02, 0.25)
                at += transfer
                session = dovecot_session_id(rng, 22)
                add(
                    at - 0.001,
                    "dovecot",
                    None,
                    f"lmtp({recipient}): {session}: sieve: msgid=<{message_id}>: "
                    "stored mail into mailbox 'INBOX'",
                )
                attempt = Attempt(
                    "sent",
                    "2.0.0",
                    f"{self.hostname}[private/dovecot-lmtp]",
                    f"250 2.0.0 <{recipient}> {session} Saved",
                )
                add(
                    at,
                    "postfix/lmtp",
                    pid,
                    f"{queue_id}: to=<{recipient}>, relay={attempt.relay}, "
                    f"{self._delays(received, start, 0.01, transfer)}, dsn=2.0.0, "
                    f"status=sent ({attempt.reply})",
                )
                results.append((recipient, attempt, at))
            add(
                at + 0.001,
                "dovecot",
                None,
                f"lmtp({dovecot_pid}): Disconnect from local: Successful quit",
            )
            return results
        for recipient in recipients:
            transfer = rng.uniform(0.005, 0.2)
            at += transfer
            if kind == "virtual":
                pid = self.processes.acquire("postfix/virtual", at - transfer, at)
                attempt = Attempt("sent", "2.0.0", "virtual", "delivered to maildir")
                target = f"to=<{recipient}>"
            else:
                pid = self.processes.acquire("postfix/local", at - transfer, at)
                attempt = Attempt("sent", "2.0.0", "local", "delivered to mailbox")
                user = recipient.partition("@")[0]
                target = f"to=<{user}@{self.hostname}>, orig_to=<{recipient}>"
            add(
                at,
                f"postfix/{kind}",
                pid,
                f"{queue_id}: {target}, relay={attempt.relay}, "
                f"{self._delays(received, at - transfer, 0, transfer)}, dsn=2.0.0, "
                f"status=sent ({attempt.reply})",
            )
            results.append((recipient, attempt, at))
        return results

    # --- bounces -----------------------------------------------------------------------

    def _notify(self, ts: float, queue_id: str, sender: str, size: int) -> float:
        """A non-delivery notification to ``sender``; returns when it was queued."""
        rng = self.rng
        at = ts + rng.uniform(0.01, 0.2)
        notice_id = self.queue_ids.new(at)
        cleanup = self.processes.acquire("postfix/cleanup", at, at + 0.05)
        bounce = self.processes.acquire("postfix/bounce", at, at + 0.1)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(int(at)))
        self.timeline.add(
            at,
            "postfix/cleanup",
            cleanup,
            f"{notice_id}: message-id=<{stamp}.{notice_id}@{self.hostname}>",
        )
        self.timeline.add(
            at + 0.01,
            "postfix/bounce",
            bounce,
            f"{queue_id}: sender non-delivery notification: {notice_id}",
        )
        notice_size = 2400 + min(size, 4000) + rng.randrange(0, 900)
        self.active(
            at + 0.02,
            notice_id,
            "",
            [sender],
            notice_size,
            f"{stamp}.{notice_id}@{self.hostname}",
            at,
            notify=False,
        )
        return at + 0.015
