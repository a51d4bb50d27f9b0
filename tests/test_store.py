"""The state store on SQLite and on a real PostgreSQL server: schema, upgrades, batches,
restarts, several hosts and retention (upgrades past 0002: ``test_store_migrations``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from sqlalchemy import event, text
from test_detect_engine import BRAZIL, HOME, T0, learned, spam_burst

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings, StoreSettings
from postwatch.detect import Detector
from postwatch.detect.profiles import DOMAINS
from postwatch.errors import StoreError
from postwatch.geo import Geo
from postwatch.store import Store, resolve_url

HEAD = "0006"
HELO = "EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI"


def detector_on(store: Store | None, *, learn: bool = False) -> Detector:
    return Detector(DetectSettings(), store, Geo(), SteppedClock(T0), learn=learn)


def test_a_new_database_gets_the_newest_schema(url: str) -> None:
    """Opening creates every table at the newest revision."""
    store = Store(url)
    assert store.revision() == HEAD
    assert {
        "subjects",
        "baselines",
        "origins",
        "recipients",
        "incidents",
        "alerts",
        "postwatch_actions",
    } <= store.tables()
    assert "actions" not in store.tables(), "the action journal's table is the only one"
    store.close()


def test_upgrade_from_the_initial_revision_keeps_rows(url: str) -> None:
    """A database at revision 0001 with rows is upgraded in place without losing any."""
    old = Store(url, upgrade=False)
    old.upgrade("0001")
    assert old.revision() == "0001" and "recipients" not in old.tables()
    stamp = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    with old.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO subjects (kind, name, scope, first_seen, last_seen, learned, host) "
                "VALUES ('account', 'alice@example.org', '', :t, :t, true, 'mx')"
            ),
            {"t": stamp},
        )
        connection.execute(
            text(
                "INSERT INTO origins (account, kind, value, first_seen, last_seen, seen, "
                "confirmed, host) VALUES ('alice@example.org', 'country', 'DE', :t, :t, 7, true, "
                "'mx')"
            ),
            {"t": stamp},
        )
        connection.execute(
            text(
                "INSERT INTO actions (incident_id, subject_kind, subject, action, state, detail, "
                "started_at, updated_at, host) VALUES ('abc', 'account', 'alice@example.org', "
                "'lock', 'done', '', :t, :t, 'mx')"
            ),
            {"t": stamp},
        )
    old.close()
    store = Store(url)  # opening upgrades
    assert store.revision() == HEAD and "recipients" in store.tables()
    assert store.count("subjects") == 1 and store.count("origins") == 1
    assert store.count("postwatch_actions") == 1, "the old actions row moved to the journal"
    profile = store.load_profiles()[0]
    assert profile.learned and profile.origins["country"]["DE"].seen == 7
    store.close()


def test_learned_profiles_survive_a_restart(url: str) -> None:
    """Baselines, known origins and known recipients are written and read back."""
    store = Store(url, host="mx")
    detector = detector_on(store, learn=True)
    traffic, _ = learned()
    traffic.detector = detector
    traffic.usual_week("alice@example.org", HOME)
    detector.close(T0 + timedelta(days=7))
    store.close()
    again = Store(url, host="mx")
    profiles = {profile.subject.name: profile for profile in again.load_profiles()}
    alice = profiles["alice@example.org"]
    assert alice.learned
    assert alice.peaks[0] == 1.0 and alice.peaks[2] >= 6.0
    assert alice.peaks[DOMAINS:] == [1.0, 1.0], "one recipient domain an hour and a day"
    assert alice.known_values("country") == ["DE"]
    assert len(alice.recipients) == 6
    restarted = detector_on(again)
    assert not restarted.warming, "a stored history replaces the warm-up"
    again.close()


def test_an_open_incident_continues_after_a_restart(url: str) -> None:
    """After a restart the same incident goes on: no second notice, escalation still alerts."""
    store = Store(url)
    traffic, start = learned()
    traffic.detector.store = store
    spam_burst(traffic, start, 3, helo=HELO)
    assert [alert.severity for alert in traffic.alerts] == ["notice"]
    traffic.detector.close(start + timedelta(minutes=1))
    assert store.count("alerts") == 1
    incident = store.load_open_incidents()[0]
    assert incident.id == traffic.alerts[0].incident
    restarted = detector_on(store)
    traffic.detector, traffic.alerts = restarted, []
    spam_burst(traffic, start + timedelta(minutes=1), 40, helo=HELO)
    assert traffic.alerts and traffic.alerts[0].severity != "notice"
    assert {alert.incident for alert in traffic.alerts} == {incident.id}
    store.close()


def test_writes_are_batched(url: str) -> None:
    """Thousands of records cost a handful of statements, not one per record."""
    store = Store(url, batch_size=10_000, flush_interval=3600)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    traffic, start = learned()
    traffic.detector = detector_on(store)
    traffic.detector.set_learning(True)
    records = 0
    for index in range(1500):
        traffic.message(
            start + timedelta(seconds=2 * index),
            f"user{index % 50}@example.org",
            HOME,
            [f"friend{index % 40}@example.net"],
        )
        records += 2
    traffic.detector.close(start + timedelta(hours=1))
    writes = [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))]
    assert records == 3000
    assert 0 < len(writes) <= 20, len(writes)
    assert store.count("subjects") == 50
    store.close()


def test_two_hosts_share_an_account(url: str) -> None:
    """Two mail hosts write one database; the account's origins merge across them."""
    first, second = Store(url, host="mx1"), Store(url, host="mx2")
    for store, client, day in ((first, HOME, 0), (second, BRAZIL, 1)):
        detector = detector_on(store, learn=True)
        traffic, _ = learned()
        traffic.detector = detector
        traffic.message(T0 + timedelta(days=day), "alice@example.org", client, ["a@example.net"])
        detector.close(None)
    profile = Store(url).load_profiles()[0]
    assert set(profile.known_values("country")) == {"DE", "BR"}
    assert profile.first_seen == T0.timestamp()
    with first.engine.connect() as connection:
        hosts = {row[0] for row in connection.execute(text("SELECT host FROM origins"))}
    assert hosts == {"mx1", "mx2"}


def test_retention_prunes_old_rows(url: str) -> None:
    """Rows older than the retention are deleted; recent ones stay."""
    store = Store(url, retention=30 * 86400)
    traffic, start = learned()
    traffic.detector = detector_on(store)
    spam_burst(traffic, start, 30, helo=HELO)
    traffic.detector.close(start + timedelta(hours=1))
    assert store.prune(start + timedelta(days=1))["alerts"] == 0
    removed = store.prune(start + timedelta(days=90))
    assert removed["alerts"] >= 1 and removed["origins"] >= 1
    assert store.count("alerts") == 0 and store.count("subjects") == 0
    assert store.count("incidents") == 1, "an open incident is never pruned"
    store.close()


def test_url_resolution_order(tmp_path: Path) -> None:
    """--db beats POSTWATCH_DB, which beats the config, which beats the state directory."""
    settings = StoreSettings(url="sqlite:///from-config.db", state_dir=tmp_path)
    env = {"POSTWATCH_DB": "sqlite:///from-env.db"}
    assert resolve_url("sqlite:///cli.db", settings, env) == "sqlite:///cli.db"
    assert resolve_url(None, settings, env) == "sqlite:///from-env.db"
    assert resolve_url(None, settings, {}) == "sqlite:///from-config.db"
    assert (
        resolve_url(None, StoreSettings(state_dir=tmp_path), {})
        == f"sqlite:///{tmp_path / 'postwatch.db'}"
    )


def test_unreachable_database_is_a_store_error() -> None:
    """A database that cannot be opened is one StoreError, password hidden."""
    with pytest.raises(StoreError) as caught:
        Store("postgresql://postwatch:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreError):
        Store("mysql://localhost/x")
