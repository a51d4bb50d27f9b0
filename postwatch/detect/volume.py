"""Volume: messages and recipients per subject over 5 min, 1 h and 24 h.

A subject may always send up to its floor.  Above ``max(floor, factor x learned peak)`` it
scores 20 points, plus 15 per doubling, at most 60; at or above a ceiling it scores 75
whatever its history says.  The floor protects subjects nothing is known about; once a
subject has a learned baseline its own peaks speak for it, and half the floor remains.
Overrides (the newsletter account) replace floor and ceiling.

After a cold start (no stored state, no learning run) the detector warms up for
``min_history``: baselines learn at once and only ceilings are judged, because nothing says
yet what is normal for the busy senders of the server.

:func:`mass_group` names the group that caps what a subject's messages carry (volume below
the ceilings, recipients, delivery): ``handful`` while its message counts stay within the
floors and its recipients within ten times theirs (a few messages to a long, stale list are
not a spam run; a few messages to thousands are), else ``routine`` from a familiar place.
"""

from __future__ import annotations

import math

from postwatch.detect.alerts import Finding
from postwatch.detect.incidents import HANDFUL
from postwatch.detect.state import SubjectState
from postwatch.detect.windows import Windows

SPANS = (300.0, 3600.0, 86400.0)
NAMES = ("5m", "1h", "24h")
METRICS = ("messages", "recipients")
CEILING_POINTS = 75
LIST_FACTOR = 10  # a handful of messages carries at most this many times the recipient floor
MAX_POINTS = 60


def mass_group(state: SubjectState) -> str:
    """The group of a subject's volume, recipient and delivery findings (see the module)."""
    windows = state.volume
    if windows is None:
        return HANDFUL
    totals = windows.totals
    limits, lists = state.floor.messages, state.floor.recipients
    divisor = 2 if state.profile.has_baseline() and not state.floor_override else 1
    if (
        totals[0][0] <= limits[0] // divisor
        and totals[1][0] <= limits[1] // divisor
        and totals[2][0] <= limits[2] // divisor
        and totals[0][1] <= LIST_FACTOR * lists[0] // divisor
        and totals[1][1] <= LIST_FACTOR * lists[1] // divisor
        and totals[2][1] <= LIST_FACTOR * lists[2] // divisor
    ):
        return HANDFUL
    return state.routine


class VolumeSignal:
    """Counts every accepted message of accounts, uids and sender domains."""

    def __init__(self, factor: float, half_life: float) -> None:
        self.factor = factor
        self.half_life = half_life

    def on_message(
        self,
        now: float,
        state: SubjectState,
        recipients: int,
        learning: bool,
        warming: bool,
        out: list[Finding],
    ) -> None:
        """Count one message; while ``warming`` (a cold start) learn peaks at once and judge
        only the ceilings."""
        windows = state.volume
        if windows is None:
            windows = state.volume = Windows(SPANS, 2)
        totals = windows.add(now, 1, recipients)
        profile = state.profile
        messages = (totals[0][0], totals[1][0], totals[2][0])
        rcpts = (totals[0][1], totals[1][1], totals[2][1])
        if learning or warming:
            profile.observe_counts(messages, 0, now, True, self.half_life)
            profile.observe_counts(rcpts, 3, now, True, self.half_life)
            if learning:
                return
        else:  # the day's peaks, committed after a clean day (inlined: the hot path)
            pending = profile.pending
            if not profile.pending_since:
                profile.pending_since = now
            for index, count in enumerate(messages + rcpts):
                if count > pending[index]:
                    pending[index] = count
        floor, ceiling = state.floor, state.ceiling
        divisor = 2 if profile.has_baseline() and not state.floor_override else 1
        low_m, low_r = floor.messages, floor.recipients
        if (
            messages[0] <= low_m[0] // divisor
            and messages[1] <= low_m[1] // divisor
            and messages[2] <= low_m[2] // divisor
            and rcpts[0] <= low_r[0] // divisor
            and rcpts[1] <= low_r[1] // divisor
            and rcpts[2] <= low_r[2] // divisor
        ):
            return  # within the floors: the usual case, nothing to judge
        best_points, best = 0, None
        for metric_index, values in enumerate((messages, rcpts)):
            floors = floor.messages if metric_index == 0 else floor.recipients
            ceilings = ceiling.messages if metric_index == 0 else ceiling.recipients
            for index in range(3):
                count = values[index]
                if count <= floors[index] // divisor:
                    continue
                if count >= ceilings[index]:
                    points, limit, peak = CEILING_POINTS, float(ceilings[index]), -1.0
                elif warming:
                    continue
                else:
                    peak = profile.peak(metric_index * 3 + index, now, self.half_life)
                    limit = max(float(floors[index] // divisor), self.factor * peak)
                    if count <= limit:
                        continue
                    points = min(MAX_POINTS, 20 + int(15 * math.log2(count / limit)))
                if points > best_points:
                    best_points, best = points, (metric_index, index, count, limit, peak)
        if best is None:
            return
        metric_index, index, count, limit, peak = best
        family = "" if peak < 0 else mass_group(state)  # ceilings are never capped
        if not state.due("volume", best_points, now, family):
            return
        metric = METRICS[metric_index]
        if peak < 0:
            detail = f"{count} {metric} in {NAMES[index]} reach the ceiling of {limit:.0f}"
        else:
            basis = f"usual peak {peak:.0f}" if peak else "no history"
            detail = f"{count} {metric} in {NAMES[index]} ({basis}, limit {limit:.0f})"
        out.append(Finding(state.subject, "volume", best_points, detail, family=family))

    @staticmethod
    def totals(state: SubjectState, now: float) -> dict[str, int]:
        if state.volume is None:
            return {}
        totals = state.volume.advance(now)
        out = {f"messages_{name}": totals[i][0] for i, name in enumerate(NAMES)}
        out.update({f"recipients_{name}": totals[i][1] for i, name in enumerate(NAMES)})
        return out
