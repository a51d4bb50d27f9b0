"""The report's time window: durations, dates and date ranges from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from postwatch.errors import UsageError
from postwatch.report.window import Window, chart_bins, hour_of, parse_window, series

NOW = datetime(2025, 11, 26, 6, 30, tzinfo=UTC)


def test_duration_counts_back_from_now():
    """``--since 24h`` covers the 24 hours before now."""
    window = parse_window("24h", None, now=NOW, tz=UTC)
    assert window == Window(NOW - timedelta(hours=24), NOW)


def test_duration_counts_back_from_until():
    """``--since 7d --until DATE`` covers the seven days before that date."""
    window = parse_window("7d", "2025-11-20", now=NOW, tz=UTC)
    assert window == Window(datetime(2025, 11, 13, tzinfo=UTC), datetime(2025, 11, 20, tzinfo=UTC))


def test_date_range_covers_whole_days_in_the_given_zone():
    """A date range is read in --tz and stored in UTC, the end excluded."""
    window = parse_window("2025-11-25", "2025-11-26", now=NOW, tz=ZoneInfo("Europe/Berlin"))
    assert window.start == datetime(2025, 11, 24, 23, tzinfo=UTC)
    assert window.end == datetime(2025, 11, 25, 23, tzinfo=UTC)
    assert window.contains(datetime(2025, 11, 25, 22, 59, tzinfo=UTC))
    assert not window.contains(datetime(2025, 11, 25, 23, tzinfo=UTC))


def test_explicit_offset_wins_over_tz():
    """A time that carries its own offset keeps it whatever --tz says."""
    window = parse_window("2025-11-25T10:00:00+01:00", None, now=NOW, tz=UTC)
    assert window.start == datetime(2025, 11, 25, 10, tzinfo=timezone(timedelta(hours=1)))
    assert window.end is None


def test_no_since_reads_everything_unless_a_default_is_given():
    """Without --since a log report covers all lines; the store report takes its default."""
    assert parse_window(None, None, now=NOW, tz=UTC) == Window(None, None)
    assert parse_window(None, None, now=NOW, tz=UTC, default_since=3600) == Window(
        NOW - timedelta(hours=1), NOW
    )


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "--since: not a duration or a date"),
        ("24h", "soon", "--until: not a duration or a date"),
        ("2025-11-26", "2025-11-25", "must come before --until"),
    ],
)
def test_bad_windows_are_usage_errors(since, until, message):
    """A window that cannot be read, or that ends before it starts, is a usage error."""
    with pytest.raises(UsageError, match=message):
        parse_window(since, until, now=NOW, tz=UTC)


def test_history_is_what_comes_before_the_window():
    """Times before the start are history; times at or after it are not."""
    window = Window(datetime(2025, 11, 25, tzinfo=UTC), None)
    assert window.before(datetime(2025, 11, 24, 23, 59, tzinfo=UTC))
    assert not window.before(datetime(2025, 11, 25, tzinfo=UTC))
    assert not Window().before(datetime(2000, 1, 1, tzinfo=UTC))


def test_chart_bins_are_hours_for_days_and_days_for_weeks():
    """Up to four days the chart has hourly bins; a ten-day span gets daily ones."""
    start = datetime(2025, 11, 25, 10, 17, tzinfo=UTC)
    assert chart_bins(start, start + timedelta(hours=30)) == (start.replace(minute=0), 1, 31)
    first, hours, bins = chart_bins(start, start + timedelta(days=10))
    assert (first, hours, bins) == (datetime(2025, 11, 25, tzinfo=UTC), 24, 11)


def test_series_sums_hours_into_bins_and_drops_the_outside():
    """Hourly counts land in their bin; counts outside the chart's span are left out."""
    first = datetime(2025, 11, 25, tzinfo=UTC)
    hours = {hour_of(first) + 1: 2, hour_of(first) + 25: 3, hour_of(first) - 1: 7}
    assert series(hours, first, 24, 2) == (2, 3)
