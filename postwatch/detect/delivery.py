"""Delivery failure: what the rest of the internet thinks of a subject's mail.

The first outcome of each (message, recipient) counts (the engine sees to that), over the
last hour:

- ``delivery_failures``: of at least 10 recipients, 30 % or more deferred or bounced: 15
  points, 50 % or more: 25;
- ``spam_replies``: remote replies that call the mail spam or the sender blocked or
  blacklisted: 2 of them 15 points, 5: 25, 10: 35.

Both are in the group ``handful`` while the subject's messages stay within their floors: a
stale list bounces too, and a big provider's "unusual rate of unsolicited mail" deferral
answers one newsletter as readily as a spam run.

Hand-overs to a local content filter that queues the message again (``relay=...
[127.0.0.1]:10024``, ``queued as ...``) are not outcomes: the next hop has the real ones.
Local mailbox delivery (LMTP to Dovecot, ``[private/dovecot-lmtp]``) is one.  The reply text
is remote (attacker-influenced) text: it is only searched for words.
"""

from __future__ import annotations

import re

from postwatch.correlate import is_local_relay
from postwatch.detect.alerts import Finding
from postwatch.detect.incidents import HANDFUL
from postwatch.detect.state import SubjectState
from postwatch.detect.volume import mass_group
from postwatch.detect.windows import Windows
from postwatch.records import Message, Outcome

SPAN = 3600.0
FAILED = frozenset({"deferred", "bounced", "expired", "undeliverable"})
SPAM_REPLY = re.compile(
    r"spam|junk|black[- ]?list|block[- ]?list|blocked|deny[- ]?list|listed (?:at|on|in)"
    r"|\brbl\b|dnsbl|spamhaus|reputation|abuse|bulk mail|unsolicited|policy violation",
    re.IGNORECASE,
)


def is_filter_hop(message: Message, outcome: Outcome) -> bool:
    """A hand-over to a filter on this host that queues the message again (the next queue
    ID has the real deliveries), not an outcome."""
    if message.next_queue_id:
        return True
    return is_local_relay(outcome.relay) and "queued as" in outcome.reply


class DeliverySignal:
    """Judges the delivery outcomes of a subject's mail."""

    def on_outcome(
        self, now: float, state: SubjectState, status: str, reply: str, out: list[Finding]
    ) -> None:
        """The first outcome of one recipient of one of the subject's messages."""
        windows = state.outcomes
        if windows is None:
            windows = state.outcomes = Windows((SPAN,), 3, 30.0)
        failed = status in FAILED
        spam = failed and bool(reply) and SPAM_REPLY.search(reply) is not None
        total, failures, spams = windows.add(now, 1, failed, spam)[0]
        if not failed:
            return  # a success only lowers the shares: nothing new to judge
        judged = total >= 10 and failures >= 0.3 * total
        if not (judged or spams >= 2):
            return
        group = HANDFUL if mass_group(state) == HANDFUL else ""
        if judged:
            points = 25 if failures >= 0.5 * total else 15
            if state.due("delivery_failures", points, now, group):
                out.append(
                    Finding(
                        state.subject,
                        "delivery_failures",
                        points,
                        f"{failures} of {total} recipients deferred or bounced in 1h",
                        family=group,
                    )
                )
        if spams >= 2:
            points = 35 if spams >= 10 else 25 if spams >= 5 else 15
            if state.due("spam_replies", points, now, group):
                out.append(
                    Finding(
                        state.subject,
                        "spam_replies",
                        points,
                        f"{spams} remote replies in 1h call the mail spam or the sender blocked",
                        family=group,
                    )
                )

    @staticmethod
    def totals(state: SubjectState, now: float) -> dict[str, int]:
        if state.outcomes is None:
            return {}
        total, failures, spams = state.outcomes.advance(now)[0]
        return {"delivered_1h": total, "failed_1h": failures, "spam_replies_1h": spams}
