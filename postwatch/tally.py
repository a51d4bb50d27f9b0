"""The replay summary: lines and events by kind, unparsed lines by program, and per SASL user
what they sent and what became of it.

It is fed every event and every correlated record; it keeps one small record per SASL user
(accounts are few; their client-IP sets are capped) and a counter per event type and program.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from postwatch.parse.events import KIND_OF, Unparsed
from postwatch.records import Accepted, Completed

MAX_IPS_PER_ACCOUNT = 10_000
MAX_PROGRAMS = 1000  # distinct programs counted per event type; the rest share one key
MAX_PROGRAM_LENGTH = 64
OTHER_PROGRAMS = "(other programs)"
_PROGRAM = attrgetter("line.program")


def _program_key(program: str, counted: dict[str, int]) -> str:
    """How a program not counted yet is counted: a long tag cut short, and past
    ``MAX_PROGRAMS`` one key for all (a syslog tag is any local user's choice)."""
    if len(program) > MAX_PROGRAM_LENGTH:
        program = program[: MAX_PROGRAM_LENGTH - 3] + "..."
    if program not in counted and len(counted) >= MAX_PROGRAMS:
        return OTHER_PROGRAMS
    return program


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

    Events are counted per event type and program; the counts by type, by program and of
    unparsed lines are read off that one map (programs and types are few, and their number
    and length are capped all the same).
    """

    def __init__(self) -> None:
        self._counts: dict[type, dict[str, int]] = {}  # event type -> program -> events
        self.accounts: dict[str, AccountTally] = {}

    def count_events(self, events: list[Any]) -> None:
        """Count a batch of events (together: a batch holds few types and programs)."""
        counts = self._counts
        batch = Counter(zip(map(type, events), map(_PROGRAM, events), strict=True))
        for (cls, program), number in batch.items():
            by_program = counts.get(cls)
            if by_program is None:
                by_program = counts[cls] = {}
            count = by_program.get(program)
            if count is None:
                program = _program_key(program, by_program)
                count = by_program.get(program, 0)
            by_program[program] = count + number

    @property
    def lines(self) -> int:
        return sum(sum(by_program.values()) for by_program in self._counts.values())

    @property
    def by_type(self) -> Counter[type]:
        return Counter({cls: sum(by.values()) for cls, by in self._counts.items()})

    @property
    def lines_by_program(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for by_program in self._counts.values():
            for program, count in by_program.items():
                counts[program or "(no program)"] += count
        return counts

    @property
    def unparsed(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for program, count in self._counts.get(Unparsed, {}).items():
            counts[program or "(no program)"] += count
        return counts

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
