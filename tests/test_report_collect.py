"""The report's collector: what each login, uid and attacking IP did in the window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import MAILLOGS

from postwatch.pipeline import Pipeline
from postwatch.records import Accepted, Completed, Message, Outcome
from postwatch.report import collect
from postwatch.report.collect import Collector, Tee
from postwatch.report.window import Window
from postwatch.sources.files import read_lines

DETECT = MAILLOGS / "detect"
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def collect_file(path, window: Window | None = None) -> Collector:
    collector = Collector(window or Window())
    pipeline = Pipeline(detector=Tee(collector, None))
    pipeline.run(read_lines([str(path)], tz=UTC, year=2026))
    pipeline.close()
    return collector


def message(queue_id: str, *, at: datetime = T0, **fields) -> Message:
    base = {"host": "mx", "queue_id": queue_id, "service": "postfix/submission"}
    return Message(**{**base, "first_seen": at, "last_seen": at, **fields})


def outcome(
    recipient: str,
    status: str = "sent",
    relay: str = "mx.example.net[198.51.100.5]:25",
    *,
    deferrals: int = 0,
    reply: str = "250 2.0.0 Ok",
) -> Outcome:
    return Outcome(recipient, status, relay, "2.0.0", T0, reply, deferrals=deferrals)


def test_failed_sasl_logins_are_counted_per_ip_with_the_usernames_tried():
    """Every failed SASL login of a real brute-force log counts for its IP, usernames too."""
    path = DETECT / "sasl-brute-force.log"
    lines = path.read_text().splitlines()
    failed = [line for line in lines if "SASL LOGIN authentication failed" in line]
    names = list(dict.fromkeys(re.search(r"sasl_username=(\S+)", line)[1] for line in failed))
    attempts = collect_file(path).attackers["45.148.10.81"]
    assert attempts.failures == sum("[45.148.10.81]" in line for line in failed)
    assert len(attempts.usernames) == len(names)
    assert attempts.samples == names[: collect.SAMPLE_USERNAMES]


def test_relay_refusals_are_counted_per_ip():
    """Each 'Relay access denied' of a real relay probe counts for the probing IP."""
    path = DETECT / "relay-probe.log"
    refused = sum("Relay access denied" in line for line in path.read_text().splitlines())
    attempts = collect_file(path).attackers["185.220.101.7"]
    assert (attempts.relay_denied, attempts.failures) == (refused, 0)


def test_dovecot_login_failures_count_their_attempts():
    """A Dovecot 'auth failed, N attempts' line counts N failures for its remote IP."""
    path = DETECT / "credential-stuffing.log"
    lines = [line for line in path.read_text().splitlines() if "auth failed" in line]
    expected = sum(
        int(re.search(r"auth failed, (\d+) attempts", line)[1])
        for line in lines
        if "rip=91.92.240.15," in line
    )
    assert collect_file(path).attackers["91.92.240.15"].failures == expected


def test_sasl_messages_recipients_and_ips_of_a_real_log():
    """A stolen-password log's login gets its messages, recipients and client IPs counted."""
    path = DETECT / "stolen-password-burst.log"
    text = path.read_text()
    queue_ids = re.findall(r"(\w+): client=\S+, sasl_method=\w+, sasl_username=alice@", text)
    ips = set(re.findall(r"client=[^\[]*\[([^\]]+)\], sasl_method=\w+, sasl_username=alice@", text))
    volume = collect_file(path).accounts["alice@example.org"]
    assert volume.messages == len(queue_ids)
    assert set(volume.ips) == ips
    assert volume.recipients == sum(
        int(re.search(rf"{qid}: from=<[^>]*>, size=\d+, nrcpt=(\d+)", text)[1]) for qid in queue_ids
    )
    assert volume.outcomes == sum(
        1
        for line in text.splitlines()
        if re.search(r": to=<[^>]*>, relay=", line) and line.split()[5][:-1] in queue_ids
    )


def test_window_and_history_are_kept_apart():
    """Mail before the window is history for the baseline; mail after it is not counted."""
    window = Window(T0, T0 + timedelta(hours=1))
    collector = Collector(window)
    for minutes, queue_id in ((-90, "A1"), (10, "B2"), (20, "C3"), (70, "D4")):
        at = T0 + timedelta(minutes=minutes)
        msg = message(
            queue_id, at=at, sasl_username="Bob@Example.ORG", client_ip="192.0.2.9", nrcpt=2
        )
        collector.feed(Accepted(at, msg))
        collector.feed(Completed(at, msg._replace(outcomes=(outcome("x@example.net", "bounced"),))))
    volume, history = collector.accounts["bob@example.org"], collector.history["bob@example.org"]
    assert (volume.messages, volume.recipients, volume.bounced) == (2, 4, 2)
    assert (history.messages, history.bounced) == (1, 1)
    assert sum(volume.hours.values()) == 2


def test_a_content_filter_hop_is_not_an_outcome_but_local_delivery_is():
    """The hand-over to a re-queueing filter is skipped; LMTP delivery to Dovecot counts."""
    collector = Collector(Window())
    first = message(
        "F1",
        sasl_username="carol@example.org",
        client_ip="192.0.2.7",
        nrcpt=1,
        next_queue_id="F2",
        outcomes=(
            outcome(
                "d@example.org",
                relay="127.0.0.1[127.0.0.1]:10024",
                reply="250 2.0.0 Ok: queued as F2",
            ),
        ),
    )
    second = message(
        "F2",
        sasl_username="carol@example.org",
        orig_queue_id="F1",
        outcomes=(outcome("d@example.org", relay="mail.example.org[private/dovecot-lmtp]"),),
    )
    for record in (
        Accepted(T0, first),
        Accepted(T0, second),
        Completed(T0, first),
        Completed(T0, second),
    ):
        collector.feed(record)
    volume = collector.accounts["carol@example.org"]
    assert (volume.messages, volume.outcomes, len(volume.recipient_digests)) == (1, 1, 1)


def test_deferred_then_sent_counts_as_deferred():
    """A recipient deferred before it was delivered counts in the deferred share."""
    collector = Collector(Window())
    msg = message(
        "E1",
        sasl_username="dan@example.org",
        nrcpt=1,
        outcomes=(outcome("e@example.net", "sent", deferrals=2),),
    )
    collector.feed(Accepted(T0, msg))
    collector.feed(Completed(T0, msg))
    volume = collector.accounts["dan@example.org"]
    assert (volume.outcomes, volume.deferred, volume.bounced) == (1, 1, 0)


def test_pickup_mail_is_counted_per_host_and_uid_with_its_senders():
    """Local submissions count per (host, uid), with the envelope senders they used."""
    collector = Collector(Window())
    for index in range(3):
        msg = message(
            f"P{index}", service="pickup", pickup_uid=33, sender=f"s{index}@example.com", nrcpt=2
        )
        collector.feed(Accepted(T0, msg))
    volume = collector.pickups[("mx", 33)]
    assert (volume.messages, volume.recipients, len(volume.senders)) == (3, 6, 3)


def test_subject_tables_are_bounded(monkeypatch):
    """Past MAX_SUBJECTS logins the collector counts the overflow instead of growing."""
    monkeypatch.setattr(collect, "MAX_SUBJECTS", 5)
    collector = Collector(Window())
    for index in range(8):
        msg = message(f"Q{index}", sasl_username=f"user{index}@example.org", nrcpt=1)
        collector.feed(Accepted(T0, msg))
    assert len(collector.accounts) == 5
    assert collector.overflow["accounts"] == 3


def test_per_login_ips_and_recipients_are_bounded(monkeypatch):
    """A login's client IPs and recipient digests stop growing at their caps."""
    monkeypatch.setattr(collect, "MAX_IPS", 3)
    monkeypatch.setattr(collect, "MAX_RECIPIENTS", 4)
    collector = Collector(Window())
    for index in range(10):
        msg = message(
            f"R{index}",
            sasl_username="eve@example.org",
            client_ip=f"192.0.2.{index}",
            nrcpt=1,
            outcomes=(outcome(f"r{index}@example.net"),),
        )
        collector.feed(Accepted(T0, msg))
        collector.feed(Completed(T0, msg))
    volume = collector.accounts["eve@example.org"]
    assert (len(volume.ips), len(volume.recipient_digests), volume.messages) == (3, 4, 10)


@pytest.mark.parametrize("kind", ["accounts", "pickups"])
def test_rejected_messages_are_not_counted(kind):
    """A message cleanup or a milter rejected never counts as sent mail."""
    collector = Collector(Window())
    fields = {"sasl_username": "f@example.org"} if kind == "accounts" else {"pickup_uid": 48}
    collector.feed(Accepted(T0, message("S1", rejected=True, **fields)))
    assert getattr(collector, kind) == {}
