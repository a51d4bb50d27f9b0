"""Shared state: a watcher merges what another mail host wrote to the same database into its
profiles every refresh interval, keeping what it has not written yet (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from test_detect_engine import BRAZIL, HOME, T0, Traffic

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Detector
from postwatch.detect.alerts import Subject
from postwatch.detect.profiles import ORIGIN_CAPS, Origin, Profile
from postwatch.errors import StoreError
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.store import Store
from postwatch.store.refresh import ProfileRefresh, merge_profile
from postwatch.watch import open_watch
from postwatch.watcher import REFRESH_INTERVAL, Watcher

ALICE = Subject("account", "alice@example.org")
BOB = Subject("account", "bob@example.org")
GEO = Geo()
HALF_LIFE = DetectSettings().baseline_half_life


def host_b_watching(store: Store, clock: SteppedClock, tmp_path: Path) -> Watcher:
    """Host B's watch: its detector on the shared store, refreshing on the stepped clock."""
    detector = Detector(DetectSettings(), store, GEO, clock)
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    return open_watch(
        [str(log)],
        state_dir=tmp_path / "state-b",
        pipeline=Pipeline(detector=detector),
        clock=clock,
        refresh=ProfileRefresh(store, detector, clock).refresh,
    )


def test_host_b_sees_what_host_a_learned_after_the_refresh(url: str, tmp_path: Path) -> None:
    """After the refresh interval, and not before, host B's profiles hold the countries, IPs
    and baselines host A wrote; B's own unsaved sighting stays and its next batch writes it."""
    clock = SteppedClock(T0 + timedelta(days=8))
    store_b = Store(url, host="mx2")
    watcher = host_b_watching(store_b, clock, tmp_path)
    watcher.start()
    detector_b = watcher.pipeline.detector
    assert isinstance(detector_b, Detector)
    host_b = Traffic()
    host_b.detector = detector_b
    host_b.message(clock.now(), ALICE.name, BRAZIL, ["carol@example.net"], host="mx2")
    alice = detector_b.profiles.peek(ALICE)
    assert alice is not None and ("country", "BR") in alice.dirty_origins

    store_a = Store(url, host="mx1")
    host_a = Traffic(learn=True)
    host_a.detector = Detector(DetectSettings(), store_a, GEO, clock, learn=True)
    host_a.usual_week(ALICE.name, HOME)
    host_a.message(T0, BOB.name, HOME, ["dave@example.net"], host="mx1")
    host_a.detector.close(T0 + timedelta(days=7))

    clock.step(REFRESH_INTERVAL - 1)
    watcher.step()
    assert "DE" not in alice.origins["country"] and detector_b.profiles.peek(BOB) is None
    clock.step(1)
    watcher.step()
    assert alice.known_values("country") == ["DE"] and "BR" in alice.origins["country"]
    assert HOME[1] in alice.known_values("ip") and alice.learned
    assert alice.peaks[2] >= 6.0 and alice.first_seen < (T0 + timedelta(days=1)).timestamp()
    assert ("country", "BR") in alice.dirty_origins, "the unsaved sighting is still to write"
    assert detector_b.profiles.peek(BOB) is not None
    watcher.stop()  # its commit writes the batch
    stored = {p.subject: p for p in Store(url).load_profiles()}
    assert set(stored[ALICE].origins["country"]) == {"DE", "BR"}
    assert stored[ALICE].known_values("country") == ["DE"] and stored[ALICE].peaks[2] >= 6.0
    store_a.close()
    store_b.close()


def test_a_failed_refresh_is_reported_and_tried_again_an_interval_later(tmp_path: Path) -> None:
    """A store error during a refresh is counted; the loop goes on and retries later."""
    clock = SteppedClock(T0)
    calls: list[float] = []

    def refresh() -> None:
        calls.append(clock.monotonic())
        raise StoreError("cannot read the state database: connection refused")

    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    watcher = open_watch(
        [str(log)], state_dir=tmp_path / "state", pipeline=Pipeline(), clock=clock, refresh=refresh
    )
    watcher.start()
    for _ in range(3):
        clock.step(REFRESH_INTERVAL / 2)
        watcher.step()
    assert calls == [REFRESH_INTERVAL] and watcher.errors["StoreError"] == 1
    clock.step(REFRESH_INTERVAL / 2)
    watcher.step()
    assert calls == [REFRESH_INTERVAL, 2 * REFRESH_INTERVAL]
    watcher.stop()


def profile(first_seen: float, **origins: dict[str, Origin]) -> Profile:
    made = Profile(ALICE, first_seen)
    for kind, table in origins.items():
        made.origins[kind] = OrderedDict(table)
    return made


def test_merging_takes_the_higher_decayed_peak_and_unites_origins() -> None:
    """A stored peak replaces a lower one, never a higher one; origins unite by the store's
    rules, stay oldest first within their cap, and merging again changes nothing."""
    now = T0.timestamp() + 86400
    local = profile(now - 3600, ip={"192.0.2.1": Origin(now - 3600, now - 60, 2, False)})
    local.peaks[0], local.peak_times[0] = 50.0, now  # unsaved, higher than the stored one
    local.peaks[2], local.peak_times[2] = 10.0, now
    local.dirty_origins.add(("ip", "192.0.2.1"))
    stored = profile(
        now - 86400,
        ip={
            "192.0.2.1": Origin(now - 86400, now - 7200, 9, True),
            "198.51.100.7": Origin(now - 80000, now - 80000, 1, True),
        },
    )
    stored.peaks[0], stored.peak_times[0] = 20.0, now - 60
    stored.peaks[2], stored.peak_times[2] = 300.0, now - 3 * HALF_LIFE  # decayed: 37.5
    stored.learned = True
    assert merge_profile(local, stored, now, HALF_LIFE)
    assert (local.peaks[0], local.peaks[2]) == (50.0, 300.0)
    assert local.first_seen == now - 86400 and local.learned
    assert list(local.origins["ip"].items()) == [
        ("198.51.100.7", Origin(now - 80000, now - 80000, 1, True)),
        ("192.0.2.1", Origin(now - 86400, now - 60, 9, True)),
    ]
    assert local.dirty_origins == {("ip", "192.0.2.1")}
    assert not merge_profile(local, stored, now, HALF_LIFE)


def test_merged_origins_keep_the_cap() -> None:
    """Origins merged past a kind's cap drop the oldest ones, as sightings do."""
    cap = ORIGIN_CAPS["country"]
    now = T0.timestamp()
    local = profile(now, country={f"L{i}": Origin(now, now + i, 1, True) for i in range(cap)})
    stored = profile(now, country={f"S{i}": Origin(now, now - i, 1, True) for i in range(5)})
    stored.origins["country"]["NEW"] = Origin(now, now + 10 * cap, 1, True)
    assert merge_profile(local, stored, now, HALF_LIFE)
    countries = list(local.origins["country"])
    assert len(countries) == cap and countries[-1] == "NEW" and "L0" not in countries
