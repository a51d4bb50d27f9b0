"""Bogus HELO names: ratware, our own name, random strings, foreign address literals."""

from __future__ import annotations

import pytest

from postwatch.config import DEFAULT_RATWARE_HELOS
from postwatch.detect.helo import HeloJudge, looks_random


@pytest.fixture
def judge() -> HeloJudge:
    return HeloJudge(["mx.example.org"], DEFAULT_RATWARE_HELOS)


@pytest.mark.parametrize(
    "helo",
    [
        "EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI",  # the seed case's 32-character HELO
        "Q7X2K9PLM4ZT",
        "xkcdqzrtvbnm",
    ],
)
def test_random_helos_are_flagged(judge: HeloJudge, helo: str) -> None:
    """Long machine-generated names score as random."""
    verdict = judge.judge(helo, "201.91.101.26", "mx")
    assert verdict is not None and verdict.points == 30
    assert "random" in verdict.detail


@pytest.mark.parametrize(
    "helo",
    [
        "DESKTOP-7F3K2LP",
        "WIN-CLJ1B0GQ6JP",
        "p5b3a2c1d",
        "alice-laptop",
        "localhost",
    ],
)
def test_ordinary_client_names_are_not_random(helo: str) -> None:
    """Windows machine names, short PTR labels and localhost do not look random."""
    assert not looks_random(helo)


def test_private_literal_behind_nat_is_fine(judge: HeloJudge) -> None:
    """Thunderbird behind NAT says [192.168.1.20]: not suspicious."""
    assert judge.judge("[192.168.1.20]", "193.158.10.20", "mx") is None


def test_loopback_literal_is_a_phone_clients_habit(judge: HeloJudge) -> None:
    """K-9 Mail and Thunderbird for Android say [127.0.0.1] from every network: a weak
    verdict (5, excused once it is the account's habit), not a forged one."""
    verdict = judge.judge("[127.0.0.1]", "80.187.100.20", "mx")
    assert verdict is not None and verdict.points == 5
    assert "loopback" in verdict.detail


def test_public_literal_of_another_address_scores(judge: HeloJudge) -> None:
    """A public address literal that is not the client's own scores 20."""
    verdict = judge.judge("[8.8.8.8]", "193.158.10.20", "mx")
    assert verdict is not None and verdict.points == 20
    assert judge.judge("[193.158.10.20]", "193.158.10.20", "mx") is None


def test_our_own_name_and_ratware_names_score(judge: HeloJudge) -> None:
    """Claiming to be this server, or a known spam tool's name, scores 30."""
    own = judge.judge("mx.example.org", "203.0.113.9", "mx")
    ratware = judge.judge("ylmf-pc", "203.0.113.9", "mx")
    log_host = judge.judge("MX", "203.0.113.9", "mx")
    assert own is not None and own.points == 30
    assert ratware is not None and ratware.points == 30
    assert log_host is not None and log_host.points == 30


def test_plain_names_score_little_and_fqdns_nothing(judge: HeloJudge) -> None:
    """A bare machine name scores 5; a proper host name nothing."""
    bare = judge.judge("DESKTOP-7F3K2LP", "193.158.10.20", "mx")
    assert bare is not None and bare.points == 5
    assert judge.judge("mail-yw0-f51.google.com", "209.85.213.51", "mx") is None


def test_evidence_text_is_truncated(judge: HeloJudge) -> None:
    """Attacker text in a verdict is cut short."""
    verdict = judge.judge("A1B2C3D4E5" * 30, "203.0.113.9", "mx")
    assert verdict is not None and len(verdict.detail) < 150
