"""The span of time a report covers: ``--since 24h``, or a date range.

::

    --since 24h                          the last 24 hours before --until (default: now)
    --since 2025-11-25 --until 2025-11-26   that day (00:00 to 00:00, --until excluded)
    --since "2025-11-25 10:00"           from then until now
    (neither, reading log files)         the whole of the files

A date or time without a zone is read in ``tz`` (``--tz``, else the local zone); one with a
zone (``2025-11-25T10:00:00+01:00``) keeps it.  Durations use the config syntax (``90m``,
``6h``, ``7d``).  A window open at one end (``start`` or ``end`` None) covers everything on
that side.

The per-login chart counts messages per hour; :func:`chart_bins` widens the bins to days
(past 96 hours) or weeks (past 120 days) so a long span stays one readable row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple

from postwatch.configfile import parse_duration
from postwatch.errors import UsageError

DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S")


class Window(NamedTuple):
    """``start`` <= time < ``end``, in UTC; None leaves that side open."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, ts: datetime) -> bool:
        return (self.start is None or ts >= self.start) and (self.end is None or ts < self.end)

    def before(self, ts: datetime) -> bool:
        """Whether ``ts`` is earlier than the window (the history a baseline is made of)."""
        return self.start is not None and ts < self.start

    def overlaps(self, first: datetime, last: datetime | None) -> bool:
        """Whether a span from ``first`` to ``last`` (None: still going) meets the window."""
        return (self.end is None or first < self.end) and (
            self.start is None or last is None or last >= self.start
        )

    def label(self) -> str:
        start = f"{self.start:%Y-%m-%d %H:%M}" if self.start else "the first line"
        end = f"{self.end:%Y-%m-%d %H:%M}" if self.end else "the last line"
        return f"{start} to {end} UTC"

    def to_json(self) -> dict[str, str | None]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


def parse_when(text: str, tz: tzinfo | None, option: str) -> datetime:
    """A date or time from the command line, as an aware UTC datetime."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
        for pattern in DATE_FORMATS:
            try:
                parsed = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
    if parsed is None:
        raise UsageError(
            f"{option}: not a duration or a date: {value!r} "
            '(use "24h", "7d", "2025-11-25" or "2025-11-25 10:00")'
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz) if tz is not None else parsed.astimezone()
    return parsed.astimezone(UTC)


def parse_window(
    since: str | None,
    until: str | None,
    *,
    now: datetime,
    tz: tzinfo | None,
    default_since: float | None = None,
) -> Window:
    """The window the options name; ``default_since`` seconds when ``--since`` is absent."""
    end = parse_when(until, tz, "--until") if until else None
    start: datetime | None = None
    if since:
        seconds = parse_duration(since) if _looks_like_duration(since) else None
        if seconds is not None:
            start = (end or now) - timedelta(seconds=seconds)
            end = end or now
        else:
            start = parse_when(since, tz, "--since")
    elif default_since is not None:
        end = end or now
        start = end - timedelta(seconds=default_since)
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--since ({start:%Y-%m-%d %H:%M}) must come before --until")
    return Window(start, end)


def _looks_like_duration(text: str) -> bool:
    """``24h``, ``90``, ``7d`` are durations; ``2025-11-25`` is a date."""
    stripped = text.strip()
    return bool(stripped) and "-" not in stripped and ":" not in stripped


def hour_of(ts: datetime) -> int:
    """The hour a time falls in, as whole hours since the epoch (the chart's bins)."""
    return int(ts.timestamp() // 3600)


# --- the chart's bins -----------------------------------------------------------------


def chart_bins(start: datetime | None, end: datetime | None) -> tuple[datetime | None, int, int]:
    """The first bin, hours per bin and the number of bins for the span (hours, else days)."""
    if start is None or end is None or end <= start:
        return None, 1, 0
    first = start.replace(minute=0, second=0, microsecond=0)
    hours = math.ceil((end - first).total_seconds() / 3600)
    bin_hours = 1 if hours <= 96 else 24 if hours <= 24 * 120 else 24 * 7
    if bin_hours > 1:
        first = first.replace(hour=0)
        hours = math.ceil((end - first).total_seconds() / 3600)
    return first, bin_hours, max(1, math.ceil(hours / bin_hours))


def series(
    hours: Mapping[int, int], first: datetime | None, bin_hours: int, bins: int
) -> tuple[int, ...]:
    """Counts per hour (``hour_of``) summed into the chart's bins."""
    if first is None or not bins:
        return ()
    origin = int(first.timestamp() // 3600)
    values = [0] * bins
    for hour, count in hours.items():
        index = (hour - origin) // bin_hours
        if 0 <= index < bins:
            values[index] += count
    return tuple(values)
