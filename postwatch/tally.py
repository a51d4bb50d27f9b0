"""The replay summary: lines and events by kind, unparsed lines by program, and per SASL user
what they sent and what became of it.

It is fed every event and every correlated record; it keeps one small record per SASL user
(accounts are few; their client-IP sets are capped), and counters of event types and programs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from postwatch.parse.events import KIND_OF, Unparsed
from postwatch.records import Accepted, Completed

MAX_IPS_PER_ACCOUNT = 10_000
MAX_PROGRAMS = 1000  # distinct programs counted; the rest share one key
MAX_PROGRAM_LENGTH = 64
OTHER_PROGRAMS = "(other programs)"
_PROGRAM = attrgetter("line.program")


def _count_programs(counted: Counter[str], programs: Iterable[str]) -> None:
    """Add ``programs`` to ``counted``; a program not counted before is keyed by
    :func:`_program_key` (a syslog tag is any local user's choice)."""
    known = len(counted)
    counted.update(programs)
    if len(counted) != known:  # the new keys are the last ones: keyed again, in order
        new = [(program, counted.pop(program)) for program in list(counted)[known:]]
        for program, number in new:
            counted[_program_key(program, counted)] += number


def _program_key(program: str, counted: Counter[str]) -> str:
    """How a program not counted yet is counted: a long tag cut short, and past
    ``MAX_PROGRAMS`` one key for all."""
    if len(program) > MAX_PROGRAM_LENGTH:
        program = program[: MAX_PROGRAM_LENGTH - 3] + "..."
    if program not in counted and len(counted) >= MAX_PROGRAMS:
        return OTHER_PROGRAMS
    return program


def _named(counted: Counter[str]) -> Counter[str]:
    """``counted`` with lines without a program under ``"(no program)"``."""
    named: Counter[str] = Counter()
    for program, number in counted.items():
        named[program or "(no program)"] += number
    return named


@dataclass
class AccountTally:
    messages: int = 0
    recipients: int = 0
    deferred: int = 0
    bounced: int = 0
    client_ips: set[str] = field(default_factory=set)

    def to_json(self, subject: str) -> dict[str, object]:
        return {
            "type": "account",
            "subject": subject,
            "messages": self.messages,
            "recipients": self.recipients,
            "distinct_ips": len(self.client_ips),
            "deferred": self.deferred,
            "bounced": self.bounced,
        }


class Tally:
    """Counts for ``postwatch replay``'s summary.

    Events are counted per type, every line per program, and unparsed lines per program
    (types are few; the number and length of programs are capped).  A batch is counted by
    ``Counter.update``, a loop in C, with a step in Python only for a program not seen
    before and for a batch with an unparsed line.
    """

    def __init__(self) -> None:
        self._types: Counter[type] = Counter()
        self._programs: Counter[str] = Counter()  # program -> lines
        self._unparsed: Counter[str] = Counter()  # program -> unparsed lines
        self.accounts: dict[str, AccountTally] = {}

    def count_events(self, events: list[Any]) -> None:
        """Count a batch of events."""
        types = self._types
        unparsed = types[Unparsed]
        types.update(map(type, events))
        _count_programs(self._programs, map(_PROGRAM, events))
        if types[Unparsed] != unparsed:
            programs = [event.line.program for event in events if type(event) is Unparsed]
            _count_programs(self._unparsed, programs)

    @property
    def lines(self) -> int:
        return self._types.total()

    @property
    def by_type(self) -> Counter[type]:
        return +self._types

    @property
    def lines_by_program(self) -> Counter[str]:
        return _named(self._programs)

    @property
    def unparsed(self) -> Counter[str]:
        return _named(self._unparsed)

    def record(self, record: object) -> None:
        cls = type(record)
        if cls is Accepted:
            message = record.message  # type: ignore[attr-defined]
            if message.sasl_username and not message.orig_queue_id:
                account = self._account(message.sasl_username)
                account.messages += 1
                account.recipients += message.nrcpt or 0
                if len(account.client_ips) < MAX_IPS_PER_ACCOUNT:
                    account.client_ips.add(message.client_ip)
        elif cls is Completed:
            message = record.message  # type: ignore[attr-defined]
            if message.sasl_username:  # a content-filter hop counts its real deliveries
                account = self._account(message.sasl_username)
                for outcome in message.outcomes:
                    if outcome.deferrals:
                        account.deferred += 1
                    if outcome.status == "bounced":
                        account.bounced += 1

    def add(self, other: Tally) -> bool:
        """Add ``other``'s counts (another part of the same log) to these; False when the sum
        may differ from counting the whole in one tally: a cap was reached."""
        for mine, theirs in ((self._programs, other._programs), (self._unparsed, other._unparsed)):
            mine.update(theirs)
            if len(mine) > MAX_PROGRAMS or OTHER_PROGRAMS in mine:
                return False
        self._types.update(other._types)
        for subject, their in other.accounts.items():
            account = self._account(subject)
            if MAX_IPS_PER_ACCOUNT in (len(account.client_ips), len(their.client_ips)):
                return False
            account.client_ips |= their.client_ips
            if len(account.client_ips) > MAX_IPS_PER_ACCOUNT:
                return False
            account.messages += their.messages
            account.recipients += their.recipients
            account.deferred += their.deferred
            account.bounced += their.bounced
        return True

    def _account(self, subject: str) -> AccountTally:
        account = self.accounts.get(subject)
        if account is None:
            account = self.accounts[subject] = AccountTally()
        return account

    @property
    def events(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for cls, count in self.by_type.items():
            counts[KIND_OF[cls]] += count
        return dict(sorted(counts.items()))

    def account_records(self) -> list[dict[str, object]]:
        """One JSON record per SASL user, busiest first."""
        ranked = sorted(self.accounts.items(), key=lambda item: (-item[1].messages, item[0]))
        return [account.to_json(subject) for subject, account in ranked]

    def totals_record(self) -> dict[str, object]:
        return {
            "type": "totals",
            "lines": self.lines,
            "events": self.events,
            "unparsed": dict(sorted(self.unparsed.items())),
        }
