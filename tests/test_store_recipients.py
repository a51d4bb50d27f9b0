"""Known recipients belong to their subject in the store: a pickup uid (per host), a sender
domain and an account each get back their own after a restart, never another's (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from sqlalchemy import text
from test_detect_engine import HOME, T0, Traffic

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Detector
from postwatch.detect.alerts import Subject
from postwatch.detect.profiles import RECIPIENT_CAP, Profile, recipient_hash
from postwatch.geo import Geo
from postwatch.store import Store, schema

UID_MX1 = Subject("uid", "33", "mx1")
UID_MX2 = Subject("uid", "33", "mx2")
ACCOUNT_33 = Subject("account", "33")  # a plain login that happens to look like a uid
SHOP = Subject("sender_domain", "shop.example")
GEO = Geo()


def detector_on(store: Store) -> Detector:
    return Detector(DetectSettings(), store, GEO, SteppedClock(T0), learn=True)


def digests(*addresses: str) -> set[int]:
    return {recipient_hash(address) for address in addresses}


def send(store: Store, *messages: tuple[str, int | None, str, str]) -> None:
    """Feed (login, uid, host, recipient) messages to a learning detector on ``store``, and
    write them at the end of input."""
    traffic = Traffic(learn=True)
    traffic.detector = detector_on(store)
    for index, (login, uid, host, recipient) in enumerate(messages):
        client = HOME if login else ("", "")
        sender = None if login else "www-data@shop.example"
        ts = T0 + timedelta(minutes=index)
        traffic.message(ts, login, client, [recipient], uid=uid, host=host, sender=sender)
    traffic.detector.close(T0 + timedelta(hours=1))


def test_a_uids_known_recipients_survive_a_restart(url: str) -> None:
    """What a pickup uid and its sender domain wrote to is known again after a restart."""
    store = Store(url, host="mx1")
    send(
        store,
        ("", 33, "mx1", "owner0@example.com"),
        ("", 33, "mx1", "owner1@example.com"),
        ("", 33, "mx1", "owner0@example.com"),
    )
    store.close()
    again = Store(url, host="mx1")
    restarted = detector_on(again)
    for subject in (UID_MX1, SHOP):
        profile = restarted.profiles.peek(subject)
        assert profile is not None, subject
        assert set(profile.recipients) == digests("owner0@example.com", "owner1@example.com")
    again.close()


def test_a_uid_and_an_account_of_the_same_name_never_mix(url: str) -> None:
    """Uid 33 on two hosts and the login "33" each read back only their own recipients,
    loading every profile as at start and loading some as the refresh does."""
    store = Store(url, host="mx1")
    send(
        store,
        ("33", None, "mx1", "friend@example.net"),
        ("", 33, "mx1", "customer@example.com"),
        ("", 33, "mx2", "supplier@example.org"),
    )
    with store.engine.connect() as connection:
        keys = set(connection.execute(text("SELECT kind, name, scope FROM recipients")).all())
    assert keys == {
        ("account", "33", ""),
        ("uid", "33", "mx1"),
        ("uid", "33", "mx2"),
        ("sender_domain", "shop.example", ""),
    }
    expected = {
        ACCOUNT_33: digests("friend@example.net"),
        UID_MX1: digests("customer@example.com"),
        UID_MX2: digests("supplier@example.org"),
    }
    everyone = {profile.subject: set(profile.recipients) for profile in store.load_profiles()}
    assert {subject: everyone[subject] for subject in expected} == expected
    for subject, known in expected.items():
        (profile,) = store.load_profiles([subject])
        assert profile.subject == subject and set(profile.recipients) == known
    store.close()


def test_an_account_keeps_its_origins_and_a_uid_has_none(url: str) -> None:
    """Origins are an account's only: the login "33" gets its country back, uid 33 nothing."""
    store = Store(url, host="mx1")
    send(store, ("33", None, "mx1", "friend@example.net"), ("", 33, "mx1", "a@example.com"))
    profiles = {profile.subject: profile for profile in store.load_profiles()}
    assert profiles[ACCOUNT_33].known_values("country") == ["DE"]
    assert profiles[UID_MX1].origins == {}
    with store.engine.connect() as connection:
        owners = set(connection.execute(text("SELECT account FROM origins")).scalars())
    assert owners == {"33"}
    store.close()


def test_retention_prunes_old_recipients_of_every_kind(url: str) -> None:
    """Recipients last seen before the retention go, whoever knew them; recent ones stay."""
    store = Store(url, retention=30 * 86400)
    old, recent = T0.timestamp(), (T0 + timedelta(days=50)).timestamp()
    profiles = []
    for subject in (ACCOUNT_33, UID_MX1, SHOP):
        profile = Profile(subject, old)
        profile.see_recipient(recipient_hash("old@example.net"), old)
        profile.see_recipient(recipient_hash("new@example.net"), recent)
        profile.last_seen = recent
        profiles.append(profile)
    store.save(profiles, [], [])
    removed = store.prune(T0 + timedelta(days=60))
    assert removed["recipients"] == 3 and removed["subjects"] == 0
    loaded = {profile.subject: set(profile.recipients) for profile in store.load_profiles()}
    assert loaded == dict.fromkeys((ACCOUNT_33, UID_MX1, SHOP), digests("new@example.net"))
    store.close()


def test_loading_keeps_the_newest_recipients_up_to_the_cap(url: str) -> None:
    """More stored recipients than a profile holds (hosts wrote different ones): the most
    recently seen are loaded, oldest first, as sightings would have kept them."""
    store = Store(url)
    store.save([Profile(UID_MX1, T0.timestamp())], [], [])
    extra = 10
    rows = [
        {
            "kind": "uid",
            "name": "33",
            "scope": "mx1",
            "digest": digest,
            "first_seen": T0 + timedelta(seconds=digest),
            "last_seen": T0 + timedelta(seconds=digest),
        }
        for digest in range(RECIPIENT_CAP + extra)
    ]
    with store.engine.begin() as connection:
        connection.execute(schema.recipients.insert(), rows)
    (profile,) = store.load_profiles()
    assert list(profile.recipients) == list(range(extra, RECIPIENT_CAP + extra))
    store.close()
