"""Holding a compromised account's mail in the Postfix queue, and releasing it.

``postqueue -j`` lists the queue, one JSON object per message.  An account's messages are
those whose envelope sender is one of its addresses, plus those the detector attributed to
its SASL login by queue ID (a spammer may forge any sender).  They are put on hold with
``postsuper -h -`` (queue IDs on stdin) and released with ``postsuper -H -``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from postwatch.actions import subject
from postwatch.actions.program import run_program
from postwatch.errors import UnsafeSubjectError

log = logging.getLogger(__name__)
_COUNT = re.compile(r"(?:Placed on hold|Released from hold): (\d+) message")


class QueuedMessage(NamedTuple):
    """One message in the queue, as ``postqueue -j`` shows it."""

    queue_id: str
    queue_name: str  # maildrop, incoming, active, deferred, hold
    sender: str
    arrival: datetime
    size: int
    recipients: tuple[str, ...]
    delay_reason: str = ""


class QueueChange(NamedTuple):
    """What a hold or release did: the queue IDs it named and postsuper's count."""

    queue_ids: tuple[str, ...]
    changed: int  # postsuper's own count
    text: str


class QueueHold:
    """Finds, holds and releases queued mail with the real postqueue and postsuper."""

    def __init__(
        self,
        *,
        postqueue: str = "postqueue",
        postsuper: str = "postsuper",
        config_dir: str | Path | None = None,
    ) -> None:
        self.postqueue = postqueue
        self.postsuper = postsuper
        self.config_args = ["-c", str(config_dir)] if config_dir else []

    def messages(self) -> list[QueuedMessage]:
        """Every message in the queue."""
        output = run_program([self.postqueue, *self.config_args, "-j"]).stdout
        messages, bad = [], 0
        for line in output.splitlines():
            if not line.strip():
                continue
            try:
                messages.append(_message(json.loads(line)))
            except (ValueError, KeyError, TypeError, UnsafeSubjectError):
                bad += 1
        if bad:
            log.warning("postqueue -j: %d line(s) not understood", bad)
        return messages

    def of_account(
        self, senders: Iterable[str], queue_ids: Iterable[str] = ()
    ) -> list[QueuedMessage]:
        """Queued messages sent from one of ``senders`` or with one of ``queue_ids``."""
        wanted_senders = {s.lower() for s in senders if s}
        wanted_ids = set(queue_ids)
        return [
            m
            for m in self.messages()
            if m.sender.lower() in wanted_senders or m.queue_id in wanted_ids
        ]

    def hold(self, senders: Iterable[str], queue_ids: Iterable[str] = ()) -> QueueChange:
        """Put the account's queued mail on hold (messages already held are left alone)."""
        targets = [
            m.queue_id for m in self.of_account(senders, queue_ids) if m.queue_name != "hold"
        ]
        return self._postsuper("-h", targets, "on hold")

    def release(self, queue_ids: Sequence[str]) -> QueueChange:
        """Release the held messages among ``queue_ids``."""
        held = {m.queue_id for m in self.messages() if m.queue_name == "hold"}
        targets = [qid for qid in dict.fromkeys(queue_ids) if qid in held]
        return self._postsuper("-H", targets, "released")

    def _postsuper(self, flag: str, queue_ids: Sequence[str], verb: str) -> QueueChange:
        checked = tuple(subject.queue_id(qid) for qid in queue_ids)
        if not checked:
            return QueueChange(
                (), 0, f"no message to put {verb}" if flag == "-h" else "no held message to release"
            )
        result = run_program(
            [self.postsuper, *self.config_args, flag, "-"],
            stdin="".join(f"{qid}\n" for qid in checked),
        )
        match = _COUNT.search(result.stderr)
        count = int(match.group(1)) if match else len(checked)
        shown = ", ".join(checked[:10]) + (
            f" and {len(checked) - 10} more" if len(checked) > 10 else ""
        )
        return QueueChange(checked, count, f"{count} message{'s' * (count != 1)} {verb}: {shown}")


def _message(data: dict[str, object]) -> QueuedMessage:
    recipients = data.get("recipients") or []
    if not isinstance(recipients, list):
        raise TypeError("recipients")
    reasons = [str(r.get("delay_reason", "")) for r in recipients if isinstance(r, dict)]
    arrival = data.get("arrival_time", 0)
    size = data.get("message_size", 0)
    return QueuedMessage(
        queue_id=subject.queue_id(data["queue_id"]),
        queue_name=str(data["queue_name"]),
        sender=str(data.get("sender", "")),
        arrival=datetime.fromtimestamp(
            float(arrival) if isinstance(arrival, int | float) else 0.0, UTC
        ),
        size=int(size) if isinstance(size, int | float) else 0,
        recipients=tuple(str(r.get("address", "")) for r in recipients if isinstance(r, dict)),
        delay_reason=next((reason for reason in reasons if reason), ""),
    )
