"""What a report needs from the log, gathered beside the tally while the pipeline runs.

:class:`Collector` takes the same stream the detector takes (parse events and correlated
records, in log order) and keeps, for the report's window:

- per SASL login (``Accepted``/``Completed`` with ``sasl_username``): messages, recipients,
  distinct recipients, messages per client IP, per hour, and what became of each recipient
  (deferred at least once, bounced or expired);
- the same per local uid and host (``pickup``), with the envelope senders it used;
- per client IP: failed SASL and Dovecot logins, the usernames tried, relay refusals;
- per login, the same counts *before* the window: the history its baseline is made of.

:class:`Tee` puts a collector and a detector in the pipeline's one detector slot.

Memory is bounded for any log: at most ``MAX_SUBJECTS`` logins, uids and IPs per table
(later ones are counted in ``overflow`` and the report says so), ``MAX_IPS`` client IPs and
``MAX_RECIPIENTS`` recipient digests per login, ``MAX_HOURS`` hourly bins per subject.
Nothing here outlives one report, so nothing expires: the window bounds what is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from postwatch.detect.delivery import is_filter_hop
from postwatch.detect.engine import account
from postwatch.detect.profiles import recipient_hash
from postwatch.parse.events import (
    KIND_OF,
    DovecotAuthFailure,
    DovecotLoginFailed,
    Reject,
    SaslFailure,
)
from postwatch.pipeline import Detector
from postwatch.records import Accepted, Completed, Message
from postwatch.report.window import Window, hour_of

MAX_SUBJECTS = 100_000
MAX_IPS = 1_000
MAX_RECIPIENTS = 100_000
MAX_HOURS = 24 * 400
MAX_SENDERS = 1_000
MAX_USERNAMES = 10_000
SAMPLE_USERNAMES = 5
BOUNCED = frozenset({"bounced", "expired"})


class Volume:
    """One subject's mail: counts, client IPs, hourly bins, recipients and senders."""

    __slots__ = (
        "bounced",
        "deferred",
        "first",
        "hours",
        "ips",
        "last",
        "messages",
        "outcomes",
        "recipient_digests",
        "recipients",
        "senders",
    )

    def __init__(self) -> None:
        self.messages = self.recipients = self.outcomes = self.deferred = self.bounced = 0
        self.ips: Counter[str] = Counter()
        self.hours: Counter[int] = Counter()
        self.senders: Counter[str] = Counter()
        self.recipient_digests: set[int] = set()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def message(self, ts: datetime, message: Message) -> None:
        self.messages += 1
        self.recipients += message.nrcpt or 0
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts
        _bounded_add(self.ips, message.client_ip, MAX_IPS)
        _bounded_add(self.hours, hour_of(ts), MAX_HOURS)

    def outcome(self, recipient: str, status: str, deferrals: int, *, distinct: bool) -> None:
        self.outcomes += 1
        if deferrals or status == "deferred":
            self.deferred += 1
        if status in BOUNCED:
            self.bounced += 1
        if distinct and len(self.recipient_digests) < MAX_RECIPIENTS:
            self.recipient_digests.add(recipient_hash(recipient))


class Attempts:
    """One client IP's failed logins and relay refusals."""

    __slots__ = ("failures", "relay_denied", "samples", "usernames")

    def __init__(self) -> None:
        self.failures = self.relay_denied = 0
        self.usernames: set[int] = set()
        self.samples: list[str] = []

    def failed(self, username: str, attempts: int) -> None:
        self.failures += attempts
        self.tried(username)

    def tried(self, username: str) -> None:
        if not username or len(self.usernames) >= MAX_USERNAMES:
            return
        digest = recipient_hash(username)
        if digest not in self.usernames:
            self.usernames.add(digest)
            if len(self.samples) < SAMPLE_USERNAMES:
                self.samples.append(username[:80])


def _bounded_add(counter: Counter[Any], key: Any, cap: int) -> None:
    if key in counter or len(counter) < cap:
        counter[key] += 1


class Collector:
    """Feed it every event and record in log order; read its tables afterwards."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.accounts: dict[str, Volume] = {}
        self.history: dict[str, Volume] = {}  # before the window
        self.pickups: dict[tuple[str, int], Volume] = {}
        self.attackers: dict[str, Attempts] = {}
        self.overflow: Counter[str] = Counter()
        self.lines = 0  # lines in the window
        self.lines_read = 0
        self.hosts: set[str] = set()
        self.first_seen: datetime | None = None
        self.last_seen: datetime | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            Accepted: self._accepted,
            Completed: self._completed,
            SaslFailure: self._sasl_failure,
            DovecotLoginFailed: self._login_failed,
            DovecotAuthFailure: self._auth_failure,
            Reject: self._reject,
        }

    def feed(self, item: object) -> None:
        kind = type(item)
        if kind in KIND_OF:  # a parse event: one log line
            line = item.line  # type: ignore[attr-defined]  # every event carries its line
            self.lines_read += 1
            if self.first_seen is None:
                self.first_seen = line.ts
            self.last_seen = line.ts
            if self.window.contains(line.ts):
                self.lines += 1
                if len(self.hosts) < 1000:
                    self.hosts.add(line.host)
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(item)

    # --- tables ---------------------------------------------------------------------

    def _entry(self, table: dict[Any, Any], key: Any, name: str, make: Any) -> Any:
        entry = table.get(key)
        if entry is None:
            if len(table) >= MAX_SUBJECTS:
                self.overflow[name] += 1
                return None
            entry = table[key] = make()
        return entry

    def _subject_table(self, message: Message, ts: datetime) -> tuple[Any, Any, str] | None:
        """The table and key a message counts in: login or uid; window or history."""
        if message.sasl_username:
            key: Any = account(message.sasl_username).name
            if self.window.contains(ts):
                return self.accounts, key, "accounts"
            if self.window.before(ts):
                return self.history, key, "history"
            return None
        if message.pickup_uid is not None and self.window.contains(ts):
            return self.pickups, (message.host, message.pickup_uid), "pickups"
        return None

    # --- messages -------------------------------------------------------------------

    def _accepted(self, item: Accepted) -> None:
        message = item.message
        if message.rejected or message.orig_queue_id:
            return  # a content filter's second hop is the same message
        found = self._subject_table(message, item.ts)
        if found is None:
            return
        volume = self._entry(*found, Volume)
        if volume is None:
            return
        volume.message(item.ts, message)
        if found[2] == "pickups":
            _bounded_add(volume.senders, (message.sender or "")[:320], MAX_SENDERS)

    def _completed(self, item: Completed) -> None:
        message = item.message
        if message.rejected or not message.outcomes:
            return
        found = self._subject_table(message, message.first_seen)
        if found is None:
            return
        volume = self._entry(*found, Volume)
        if volume is None:
            return
        distinct = found[2] != "history"
        for outcome in message.outcomes:
            if not is_filter_hop(message, outcome):
                volume.outcome(
                    outcome.recipient, outcome.status, outcome.deferrals, distinct=distinct
                )

    # --- attempts -------------------------------------------------------------------

    def _attempts(self, ip: str, ts: datetime) -> Attempts | None:
        if not ip or not self.window.contains(ts):
            return None
        entry: Attempts | None = self._entry(self.attackers, ip, "attackers", Attempts)
        return entry

    def _sasl_failure(self, item: SaslFailure) -> None:
        attempts = self._attempts(item.client_ip, item.line.ts)
        if attempts is not None:
            attempts.failed(item.sasl_username, 1)

    def _login_failed(self, item: DovecotLoginFailed) -> None:
        attempts = self._attempts(item.remote_ip, item.line.ts)
        if attempts is not None:
            attempts.failed(item.user, max(1, item.attempts or 1))

    def _auth_failure(self, item: DovecotAuthFailure) -> None:
        # the login process logs the same failure again: count its username, not the attempt
        attempts = self._attempts(item.remote_ip, item.line.ts)
        if attempts is not None:
            attempts.tried(item.user)

    def _reject(self, item: Reject) -> None:
        if "Relay access denied" not in item.reply:
            return
        attempts = self._attempts(item.client_ip, item.line.ts)
        if attempts is not None:
            attempts.relay_denied += 1


class Tee:
    """The pipeline's detector slot, shared: everything goes to the collector, then on."""

    def __init__(self, collector: Collector, detector: Detector | None) -> None:
        self.collector = collector
        self.detector = detector

    def feed(self, item: object) -> list[Any]:
        self.collector.feed(item)
        return self.detector.feed(item) if self.detector is not None else []

    def close(self, now: datetime | None) -> list[Any]:
        return self.detector.close(now) if self.detector is not None else []
