"""Ban log lines, read back by the real fail2ban-regex with the shipped filter."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, require_program

from postwatch.actions.banlog import BanLog
from postwatch.clock import SteppedClock
from postwatch.errors import UnsafeSubjectError

FILTER = REPO / "contrib" / "fail2ban" / "filter.d" / "postwatch.conf"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# Attacker-chosen usernames and HELO names that try to smuggle a second address into the line.
HOSTILE_SUBJECTS = [
    'x" ip=198.51.100.9 reason=y subject="',
    'x\n2026-11-23T10:00:00+00:00 postwatch[1]: BAN ip=198.51.100.10 reason=x subject=""',
    "x\r\nBAN ip=198.51.100.11",
    "x\u2028BAN ip=198.51.100.12",  # Unicode line separator
    "x\x85BAN ip=198.51.100.13",  # NEL
    'x\\" ip=198.51.100.14',
    " ip=198.51.100.15 ",
]


def fail2ban_ips(log: Path) -> list[str]:
    """The IPs that fail2ban-regex finds in ``log`` with the shipped filter, in order."""
    program = require_program("fail2ban-regex", "/usr/bin/fail2ban-regex")
    result = subprocess.run(
        [program, "-o", "ip", str(log), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def ban_log(tmp_path: Path) -> BanLog:
    return BanLog(tmp_path / "ban.log", clock=SteppedClock(START), pid=4242)


def test_ban_line_has_the_stable_format(ban_log: BanLog) -> None:
    """A ban line is time, tag, BAN, then ip first, reason, and JSON-quoted subject and incident."""
    ban_log.ban(
        "203.0.113.5", reason="sasl-brute-force", subject_name="alice@example.com", incident="12"
    )
    assert ban_log.path.read_text() == (
        "2026-11-23T10:00:00+00:00 postwatch[4242]: BAN ip=203.0.113.5 "
        'reason=sasl-brute-force subject="alice@example.com" incident="12"\n'
    )


@pytest.mark.system
def test_fail2ban_finds_exactly_the_banned_ips(ban_log: BanLog) -> None:
    """fail2ban-regex with the shipped filter finds every banned IP, IPv4 and IPv6."""
    ban_log.ban("203.0.113.5", reason="sasl-brute-force", subject_name="alice@example.com")
    ban_log.ban("2001:db8::7", reason="spam-relay", incident="7")
    ban_log.ban("::ffff:192.0.2.44", reason="volume")
    assert fail2ban_ips(ban_log.path) == ["203.0.113.5", "2001:db8::7", "192.0.2.44"]


@pytest.mark.system
def test_attacker_text_in_the_line_never_adds_an_ip(ban_log: BanLog) -> None:
    """Hostile subjects stay on their own line and fail2ban finds only the IPs postwatch wrote."""
    written = []
    for number, name in enumerate(HOSTILE_SUBJECTS, start=1):
        address = f"203.0.113.{number}"
        ban_log.ban(address, reason="sasl-brute-force", subject_name=name, incident=name)
        written.append(address)
    lines = ban_log.path.read_bytes().split(b"\n")
    assert len(lines) == len(HOSTILE_SUBJECTS) + 1 and lines[-1] == b""
    assert fail2ban_ips(ban_log.path) == written
    assert [record.subject for record in ban_log.records()] == HOSTILE_SUBJECTS


def test_hostile_ip_is_refused_and_nothing_is_written(ban_log: BanLog) -> None:
    """An address that is not an IP never reaches the ban log."""
    for bad in ("203.0.113.5 reason=x", "203.0.113.5\n", "localhost", ""):
        with pytest.raises(UnsafeSubjectError):
            ban_log.ban(bad, reason="x")
    assert not ban_log.path.exists()


@pytest.mark.system
def test_reason_is_reduced_to_a_slug(ban_log: BanLog) -> None:
    """A reason with spaces or quotes becomes a slug that the filter still accepts."""
    ban_log.ban("198.51.100.1", reason='Brute force "ip=1.2.3.4"')
    assert "reason=brute-force-ip-1.2.3.4 " in ban_log.path.read_text()
    assert fail2ban_ips(ban_log.path) == ["198.51.100.1"]


def test_same_ip_is_written_once_per_window_and_the_memory_expires(ban_log: BanLog) -> None:
    """A repeat within repeat_after is skipped; after it the line is written again."""
    assert isinstance(ban_log.clock, SteppedClock)
    ban_log.ban("203.0.113.5", reason="spam")
    assert "less than" in ban_log.ban("203.0.113.5", reason="spam")
    ban_log.ban("203.0.113.5", reason="sasl-brute-force")
    assert ban_log.remembered() == 2
    ban_log.clock.step(ban_log.repeat_after)
    ban_log.ban("203.0.113.6", reason="spam")
    assert ban_log.remembered() == 1
    ban_log.ban("203.0.113.5", reason="spam")
    assert [r.ip for r in ban_log.records()] == [
        "203.0.113.5",
        "203.0.113.5",
        "203.0.113.6",
        "203.0.113.5",
    ]


def test_lookup_links_an_ip_to_its_subjects(ban_log: BanLog) -> None:
    """lookup() reads back which subjects and incidents an IP was banned for."""
    ban_log.ban("203.0.113.5", reason="spam", subject_name="alice@example.com", incident="12")
    ban_log.ban("203.0.113.9", reason="spam", subject_name="bob@example.com", incident="13")
    ban_log.ban(
        "203.0.113.5", reason="sasl-brute-force", subject_name="carol@example.com", incident="14"
    )
    assert [(r.subject, r.incident) for r in ban_log.lookup("203.0.113.5")] == [
        ("alice@example.com", "12"),
        ("carol@example.com", "14"),
    ]
