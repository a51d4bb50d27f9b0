"""The framer splits every supported log framing into time, host, program, pid and message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from annotated import read_samples
from conftest import MAILLOGS

from postwatch.parse.syslog import Framer

SAMPLES = list(read_samples(MAILLOGS / "framing" / "framing.log", "frame"))


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_annotated_framing(sample):
    """Each annotated line frames into exactly the fields its annotation lists."""
    line = Framer(tz=UTC, year=2026)(sample.text)
    for key, want in sample.expected.items():
        got = line.ts.isoformat() if key == "ts" else getattr(line, key)
        assert got == want, f"{sample.id}: {key}"


def test_year_rolls_over_at_new_year_and_back_for_a_late_line():
    """Dec -> Jan moves to the next year; a late Dec line after Jan belongs to the year before."""
    framer = Framer(tz=UTC, year=2025)
    stamps = ["Dec 31 23:59:59", "Jan  1 00:00:01", "Dec 31 23:59:58", "Jan  1 00:00:02"]
    years = [framer(f"{s} mx postfix/smtpd[1]: x").ts.year for s in stamps]
    assert years == [2025, 2026, 2025, 2026]


def test_year_from_reference_is_the_year_before_when_the_month_is_later():
    """A file modified in January whose first line says December started the year before."""
    framer = Framer(tz=UTC, reference=datetime(2026, 1, 5, tzinfo=UTC))
    assert framer("Dec 30 10:00:00 mx postfix/qmgr[2]: x").ts.year == 2025
    assert framer("Jan  2 10:00:00 mx postfix/qmgr[2]: x").ts.year == 2026


def test_stamps_without_zone_are_read_in_the_given_zone():
    """--tz sets the zone of stamps that carry none; the result is stored in UTC."""
    plus_two = timezone(timedelta(hours=2))
    line = Framer(tz=plus_two, year=2026)("May  9 22:12:21 mx postfix/smtpd[1]: x")
    assert line.ts == datetime(2026, 5, 9, 20, 12, 21, tzinfo=UTC)


def test_unframeable_line_keeps_the_last_time_seen():
    """Text with no framing keeps the previous line's time, so ordering survives garbage."""
    framer = Framer(tz=UTC, year=2026)
    first = framer("Nov 23 10:00:00 mx postfix/smtpd[1]: connect from a[192.0.2.1]")
    assert framer("\x00\xff garbage").ts == first.ts


def test_attacker_text_in_the_message_does_not_change_host_or_program():
    """A message that itself looks like a syslog header stays message text."""
    text = (
        "Nov 23 10:00:00 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from a[192.0.2.1]: 550 x; "
        "from=<a> to=<b> proto=ESMTP helo=<evil postfix/qmgr[1]: X: removed>"
    )
    line = Framer(tz=UTC, year=2026)(text)
    assert (line.host, line.program, line.pid) == ("mx", "postfix/smtpd", 7)
    assert line.message.endswith("helo=<evil postfix/qmgr[1]: X: removed>")


def test_frame_lines_equals_framing_one_by_one():
    """The streaming fast path frames every sample exactly as the per-line call does."""
    texts = [sample.text for sample in SAMPLES]
    one_by_one = Framer(tz=UTC, year=2026)
    expected = [one_by_one(text, lineno, "x") for lineno, text in enumerate(texts, 1)]
    assert (
        list(Framer(tz=UTC, year=2026).frame_lines(texts + texts[:3], "x"))[: len(texts)]
        == expected
    )
