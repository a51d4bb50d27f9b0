"""Hourly volumes: counted per host, hour and subject, written in the store's batches, added
up across batches and hosts, pruned by retention, and reported from the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MAILLOGS
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings, Settings
from postwatch.detect.alerts import Subject
from postwatch.detect.state import HourlyVolumes, HourVolume
from postwatch.detect.subjects import SubjectRules
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted
from postwatch.report.command import ReportContext, report_command
from postwatch.report.stored import STORE_NOTE, report_from_store
from postwatch.report.window import Window
from postwatch.sources.files import read_lines
from postwatch.store import Store

DEMO = MAILLOGS / "demo" / "mail.log"
NOW = datetime(2025, 11, 26, 6, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 10, tzinfo=UTC)
ALICE = Subject("account", "alice@example.org")
WEB = Subject("uid", "33", "web1")


def test_hourly_volumes_count_per_host_hour_and_subject() -> None:
    """Messages and recipients add up per host, hour and subject; sender domains are not
    kept; take() hands them over oldest hour first and starts again from zero."""
    hours = HourlyVolumes()
    start = DAY.timestamp() + 8 * 3600
    hours.add("mx1", ALICE, start + 10, 2)
    hours.add("mx1", ALICE, start + 3599, 3)
    hours.add("mx2", ALICE, start + 20, 1)
    hours.add("web1", WEB, start + 3600, 40)
    hours.add("web1", Subject("sender_domain", "example.org"), start, 40)
    assert hours.take() == [
        HourVolume("mx1", DAY + timedelta(hours=8), ALICE, 2, 5),
        HourVolume("mx2", DAY + timedelta(hours=8), ALICE, 1, 1),
        HourVolume("web1", DAY + timedelta(hours=9), WEB, 1, 40),
    ]
    assert hours.take() == [] and len(hours) == 0


def test_hourly_volumes_are_bounded_oldest_hour_first() -> None:
    """Past max_keys, untaken counts of the oldest hour go, and the messages lost are counted."""
    hours = HourlyVolumes(max_keys=3)
    start = DAY.timestamp()
    for hour, name in enumerate(("a", "b", "c", "d")):
        hours.add("mx", Subject("account", f"{name}@example.org"), start + hour * 3600, 1)
        hours.add("mx", Subject("account", f"{name}@example.org"), start + hour * 3600, 1)
    assert len(hours) == 3 and hours.dropped == 2
    assert [volume.subject.name for volume in hours.take()] == [
        "b@example.org",
        "c@example.org",
        "d@example.org",
    ]


def test_volumes_add_up_across_batches_and_hosts(url: str) -> None:
    """A second batch for the same hour adds to it; each host keeps its own row."""
    store = Store(url, host="mx1")
    hour = DAY + timedelta(hours=8)
    store.save(
        [], [], [], [HourVolume("mx1", hour, ALICE, 3, 4), HourVolume("web1", hour, WEB, 1, 9)]
    )
    store.save([], [], [], [HourVolume("mx1", hour, ALICE, 2, 2)])
    Store(url, host="mx2").save([], [], [], [HourVolume("mx2", hour, ALICE, 1, 1)])
    assert store.volumes() == [
        HourVolume("mx1", hour, ALICE, 5, 6),
        HourVolume("mx2", hour, ALICE, 1, 1),
        HourVolume("web1", hour, WEB, 1, 9),
    ]
    assert store.volumes()[0].hour.tzinfo is not None
    assert store.volumes(start=hour + timedelta(hours=1)) == []
    assert store.volume_history(hour + timedelta(hours=1)) == (hour, {ALICE: 6, WEB: 1})
    assert store.volume_history(hour) == (hour, {})
    store.close()


def test_retention_prunes_old_volume_hours(url: str) -> None:
    """Hours older than the retention are deleted with the rest; recent hours stay."""
    store = Store(url, retention=30 * 86400)
    old, recent = DAY - timedelta(days=40), DAY - timedelta(days=1)
    store.save(
        [], [], [], [HourVolume("mx", old, ALICE, 1, 1), HourVolume("mx", recent, ALICE, 2, 2)]
    )
    assert store.prune(DAY)["volumes"] == 1
    assert [volume.hour for volume in store.volumes()] == [recent]
    store.close()


class VolumeFeeder:
    """Hands the store what the detector counts of each accepted message: its account or
    uid, per host and hour (real log lines in, one batch out at the end)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rules = SubjectRules(DetectSettings())
        self.hours = HourlyVolumes()

    def feed(self, item: object) -> list[object]:
        if isinstance(item, Accepted):
            message = item.message
            if not (message.rejected or message.orig_queue_id):
                for subject in self.rules.subjects(message):
                    self.hours.add(message.host, subject, item.ts.timestamp(), message.nrcpt or 0)
        return []

    def close(self, _now: datetime | None) -> list[object]:
        self.store.save([], [], [], self.hours.take())
        return []


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "postwatch.toml"
    path.write_text(f'[store]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return path


def report_json(args: list[str]) -> dict:
    context = ReportContext(clock=SteppedClock(NOW), geo=Geo())
    result = CliRunner().invoke(report_command, [*args, "--format", "json"], obj=context)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_store_report_counts_what_the_log_report_counts(config: Path) -> None:
    """From the volumes of the demo day's real log lines, the store's report has the same
    messages, recipients and hourly chart per login and uid as the report from the log."""
    store = Store(f"sqlite:///{config.parent / 'state' / 'postwatch.db'}")
    pipeline = Pipeline(detector=VolumeFeeder(store))
    pipeline.run(read_lines([str(DEMO)], tz=UTC, year=2025))
    pipeline.close()
    store.close()
    window = ["--config", str(config), "--since", "2025-11-25", "--until", "2025-11-26"]
    stored = report_json(window)
    logged = report_json([*window, "--year", "2025", "--tz", "UTC", str(DEMO)])
    assert STORE_NOTE in stored["notes"]
    assert (stored["bins_start"], stored["bin_hours"]) == (logged["bins_start"], 1)

    def counts(report: dict) -> dict:
        return {
            row["account"]: (row["messages"], row["recipients"], row["hourly"])
            for row in report["accounts"]
        }

    assert len(stored["accounts"]) == len(logged["accounts"]) >= 10
    assert counts(stored) == counts(logged)
    assert stored["accounts"][0]["account"] == logged["accounts"][0]["account"]
    assert [(r["uid"], r["messages"]) for r in stored["pickups"]] == [
        (r["uid"], r["messages"]) for r in logged["pickups"]
    ]
    assert stored["hosts"] == logged["hosts"] == ["mail"]


def test_the_day_before_is_the_usual_and_gaps_are_noted(tmp_path: Path) -> None:
    """Stored days before the window give the per-day baseline; a window that starts before
    the first stored hour says its counts begin later."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.save(
        [],
        [],
        [],
        [HourVolume("mx", DAY + timedelta(hours=hour), ALICE, 5, 5) for hour in range(48)],
    )
    settings = Settings()
    clock = SteppedClock(DAY + timedelta(days=3))
    second = Window(DAY + timedelta(days=1), DAY + timedelta(days=2))
    report = report_from_store(store, settings=settings, window=second, clock=clock)
    [row] = report.accounts
    assert (row.messages, row.baseline.days, row.baseline.messages_per_day) == (120, 1.0, 120.0)
    assert row.hourly == (5,) * 24 and report.bins_start == second.start
    assert not [note for note in report.notes if "begin at" in note]
    earlier = Window(DAY - timedelta(days=1), DAY + timedelta(days=1))
    report = report_from_store(store, settings=settings, window=earlier, clock=clock)
    assert report.accounts[0].messages == 120 and report.accounts[0].baseline.days == 0.0
    assert any("begin at 2026-03-10 00:00 UTC" in note for note in report.notes)
    store.close()


def test_replay_learn_into_a_store_then_report_from_it(config: Path) -> None:
    """replay --learn --db keeps the hourly volumes of real log lines; the report from that
    store counts per login and uid what the report from the log counts (and also lists the
    logins active without sending, with 0 messages)."""
    from postwatch.cli import cli

    database = f"sqlite:///{config.parent / 'state' / 'postwatch.db'}"
    replay = ["replay", "--learn", "--db", database, "--year", "2025", "--tz", "UTC"]
    result = CliRunner().invoke(cli, [*replay, "--config", str(config), str(DEMO)])
    assert result.exit_code == 0, result.output
    window = ["--config", str(config), "--since", "2025-11-25", "--until", "2025-11-26"]
    stored = report_json(window)
    logged = report_json([*window, "--year", "2025", "--tz", "UTC", str(DEMO)])
    assert STORE_NOTE in stored["notes"]

    def counts(report: dict) -> dict:
        return {
            row["account"]: (row["messages"], row["recipients"], row["hourly"])
            for row in report["accounts"]
        }

    sending = {account: row for account, row in counts(stored).items() if row[0]}
    assert len(sending) >= 10 and sending == counts(logged)
    assert [(r["uid"], r["messages"]) for r in stored["pickups"]] == [
        (r["uid"], r["messages"]) for r in logged["pickups"]
    ]
