"""Recipient spread: how many domains a subject writes to, how many at freemail providers,
and how many addresses it never wrote to before.

Counted once per (message, recipient) from delivery records, over 1 h and 24 h:

- ``recipient_domains``: from 10 distinct domains in 1 h (or 40 in 24 h), or the baseline
  factor times the subject's own learned peak if that is more: 10 points, plus 10 per
  doubling, at most 25 (a shop or a newsletter writes to a hundred domains a day: that is
  its normal, learned like its volume);
- ``freemail``: 70 % or more of at least 20 recipients (50 in 24 h) at freemail domains: 10
  (for a subject with a history of at least 20 known addresses, domains and freemail count
  only recipients it never wrote to before: a list's subscribers, a shop's customers and
  an accountant's clients are spread over many domains, and known);
- ``new_recipients``: for a subject with a history of at least 20 known addresses, 80 % or
  more never seen before, of at least 10 in 1 h (15 points) or 30 in 24 h (20 points), and
  at least 30 points of percentage above its own usual share (a shop writes to new
  customers every day: that is its normal).

Volume, recipient and delivery findings share a group (see ``volume.mass_group``).
"""

from __future__ import annotations

import math
from collections.abc import Set

from postwatch.detect.alerts import Finding
from postwatch.detect.profiles import DOMAINS, recipient_hash
from postwatch.detect.state import SubjectState
from postwatch.detect.volume import mass_group
from postwatch.detect.windows import Distinct, Windows

SPANS = (3600.0, 86400.0)
SPAN_NAMES = ("1h", "24h")
MIN_KNOWN = 20
HOUR_DOMAINS, DAY_DOMAINS = 10.0, 40.0  # distinct domains any subject may reach unjudged


class Spread:
    """Recipient statistics of one subject: distinct domains, and the counts (all
    recipients, those judged for spread, of which at freemail, never written to before)."""

    __slots__ = ("counts", "domains_day", "domains_hour")

    def __init__(self) -> None:
        self.domains_hour = Distinct(SPANS[0], 5000)
        self.domains_day = Distinct(SPANS[1], 20000)
        self.counts = Windows(SPANS, 4, 60.0)


def _spread_points(domains: int, base: float) -> int:
    if domains < base:
        return 0
    return min(25, 10 + int(10 * math.log2(domains / base)))


class RecipientSignal:
    """Judges where a subject's mail goes."""

    def __init__(
        self, freemail_domains: Set[str], min_history: float, factor: float, half_life: float
    ) -> None:
        self.freemail_domains = freemail_domains
        self.min_history = min_history
        self.factor = factor
        self.half_life = half_life

    def on_recipient(
        self, now: float, state: SubjectState, recipient: str, learning: bool, out: list[Finding]
    ) -> None:
        address = recipient.lower()
        domain = address.rpartition("@")[2][:255]
        profile = state.profile
        known_before = len(profile.recipients)
        is_new = profile.see_recipient(recipient_hash(address), now)
        profile.count_recipient(is_new, now)
        spread = state.spread
        if spread is None:
            spread = state.spread = Spread()
        history = known_before >= MIN_KNOWN and (
            profile.learned or now - profile.first_seen >= self.min_history  # established
        )
        judge_novelty = is_new and history and not learning
        usual = 0.0
        if judge_novelty:
            learned = profile.new_share(now, self.half_life)
            usual = learned or 0.0
            judge_novelty = usual <= 0.5
        # with a history, a correspondent written to before spreads nothing: a list's,
        # a shop's or an accountant's known people are their normal, whatever their domains
        spreads = is_new or not history
        free = spreads and domain in self.freemail_domains
        new_domain = spreads and (
            spread.domains_hour.add(now, domain) | spread.domains_day.add(now, domain)
        )
        counts = spread.counts.add(now, 1, spreads, free, judge_novelty)
        hour, day = len(spread.domains_hour), len(spread.domains_day)
        if new_domain:  # the spread only grows with a new domain: so do its peaks
            profile.observe_counts((hour, day), DOMAINS, now, learning, self.half_life)
        # only what this recipient changed is judged again: a new domain, a freemail
        # address, an address never written to before
        if learning or not (new_domain or free or judge_novelty):
            return
        subject = state.subject
        group = mass_group(state)
        if new_domain:
            self._spread(now, state, hour, day, group, out)
        for index, minimum in ((0, 20), (1, 50)) if free else ():
            _, judged, freemail, _ = counts[index]
            if judged >= minimum and freemail >= 0.7 * judged:
                if state.due("freemail", 10, now, group):
                    out.append(
                        Finding(
                            subject,
                            "freemail",
                            10,
                            f"{freemail} of {judged} recipients at freemail providers "
                            f"in {SPAN_NAMES[index]}",
                            family=group,
                        )
                    )
                break
        if not judge_novelty:
            return
        for index, minimum, points in ((1, 30, 20), (0, 10, 15)):
            total, _, _, new = counts[index]
            if new >= minimum and new >= max(0.8, usual + 0.3) * total:
                if state.due("new_recipients", points, now, group):
                    out.append(
                        Finding(
                            subject,
                            "new_recipients",
                            points,
                            f"{new} of {total} recipients in {SPAN_NAMES[index]} "
                            "never written to before",
                            family=group,
                        )
                    )
                break

    def _spread(
        self, now: float, state: SubjectState, hour: int, day: int, group: str, out: list[Finding]
    ) -> None:
        profile = state.profile
        hourly = profile.peak(DOMAINS, now, self.half_life)
        daily = profile.peak(DOMAINS + 1, now, self.half_life)
        points = max(
            _spread_points(hour, max(HOUR_DOMAINS, self.factor * hourly)),
            _spread_points(day, max(DAY_DOMAINS, self.factor * daily)),
        )
        if points and state.due("recipient_domains", points, now, group):
            basis = f" (usual {hourly:.0f} and {daily:.0f})" if hourly or daily else ""
            out.append(
                Finding(
                    state.subject,
                    "recipient_domains",
                    points,
                    f"{hour} recipient domains in 1h, {day} in 24h{basis}",
                    family=group,
                )
            )

    @staticmethod
    def totals(state: SubjectState, now: float) -> dict[str, int]:
        spread = state.spread
        if spread is None:
            return {}
        spread.domains_hour.advance(now)
        spread.domains_day.advance(now)
        counts = spread.counts.advance(now)
        return {
            "recipient_domains_1h": len(spread.domains_hour),
            "recipient_domains_24h": len(spread.domains_day),
            "freemail_recipients_24h": counts[1][2],
            "new_recipients_24h": counts[1][3],
        }
