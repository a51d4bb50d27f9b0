"""Schema upgrades past revision 0002, on SQLite and on a real PostgreSQL server: the action
journal's table joins the store's schema, known recipients are keyed by subject, every row
survives, retention covers the journal."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from sqlalchemy import text
from test_store import HEAD

from postwatch.actions.journal import SqlJournal
from postwatch.clock import SteppedClock
from postwatch.detect.alerts import Subject
from postwatch.detect.profiles import Profile
from postwatch.store import Store, schema

STAMP = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
OLD_TABLES = ("subjects", "baselines", "origins", "recipients", "incidents", "alerts")


def fill_0002(store: Store) -> None:
    """One row in every table of a revision 0002 database, the unused actions table too."""
    account = "alice@example.org"
    rows: dict[str, dict[str, Any]] = {
        "subjects": {
            "kind": "account",
            "name": account,
            "scope": "",
            "first_seen": STAMP,
            "last_seen": STAMP,
            "learned": True,
            "host": "mx1",
        },
        "baselines": {
            "kind": "account",
            "name": account,
            "scope": "",
            "metric": "messages",
            "span": "24h",
            "peak": 12.0,
            "peak_at": STAMP,
        },
        "origins": {
            "account": account,
            "kind": "country",
            "value": "DE",
            "first_seen": STAMP,
            "last_seen": STAMP,
            "seen": 7,
            "confirmed": True,
            "host": "mx1",
        },
        "recipients": {
            "account": account,
            "digest": 2**62 + 5,
            "first_seen": STAMP,
            "last_seen": STAMP,
        },
        "incidents": {
            "id": "inc1",
            "host": "mx1",
            "subject_kind": "account",
            "subject": account,
            "scope": "",
            "state": "open",
            "severity": "warning",
            "score": 60,
            "opened_at": STAMP,
            "updated_at": STAMP,
            "reasons": [{"signal": "volume", "detail": "40 messages in 5m", "points": 60}],
            "evidence": {"ips": ["45.148.10.81"]},
        },
        "alerts": {
            "incident_id": "inc1",
            "ts": STAMP,
            "host": "mx1",
            "subject_kind": "account",
            "subject": account,
            "severity": "warning",
            "score": 60,
            "payload": {"type": "alert", "incident": "inc1"},
        },
    }
    with store.engine.begin() as connection:
        for name, row in rows.items():
            connection.execute(old_table(name, row).insert(), [row])
        for state, detail in (("done", "fail2ban-client: 0"), ("started", "")):
            connection.execute(
                text(
                    "INSERT INTO actions (incident_id, subject_kind, subject, action, state, "
                    "detail, started_at, updated_at, host) VALUES ('inc1', 'account', :s, "
                    "'lock', :state, :detail, :t, :t, 'mx1')"
                ),
                {"s": account, "state": state, "detail": detail, "t": STAMP},
            )


def old_table(name: str, columns: Iterable[str]) -> sqlalchemy.TableClause:
    """A table of an older revision with ``columns``, typed as they are now where the column
    still exists (``recipients.account`` is ``name`` since 0006)."""
    now = schema.metadata.tables[name].c
    return sqlalchemy.table(
        name,
        *(
            sqlalchemy.column(column, now[column].type if column in now else None)
            for column in columns
        ),
    )


def at_0002(url: str) -> Store:
    old = Store(url, upgrade=False)
    old.upgrade("0002")
    assert old.revision() == "0002" and "postwatch_actions" not in old.tables()
    return old


@pytest.mark.parametrize("journal_first", [False, True], ids=["no-journal", "journal-rows"])
def test_upgrade_from_0002_keeps_every_row(url: str, journal_first: bool) -> None:
    """Every row of a 0002 database survives the upgrade, journal rows keep their ids, and
    the old actions rows move into the journal (an interrupted one as failed)."""
    old = at_0002(url)
    fill_0002(old)
    old.close()
    clock = SteppedClock(STAMP + timedelta(days=1))
    before = []
    if journal_first:  # the journal created its table on first use, before this upgrade
        journal = SqlJournal(url, clock)
        done = journal.start(action="lock:dovecot", subject="bob@example.org", reason="burst")
        journal.finish(done, "done", "deny file written")
        journal.start(action="hold", subject="bob@example.org", detail={"queue_ids": []})
        before = journal.entries()
        journal.close()
    store = Store(url)
    assert store.revision() == HEAD and "actions" not in store.tables()
    assert all(store.count(name) == 1 for name in OLD_TABLES), {
        name: store.count(name) for name in OLD_TABLES
    }
    profile = store.load_profiles()[0]
    assert profile.learned and profile.origins["country"]["DE"].seen == 7
    assert profile.peaks[2] == 12.0 and 2**62 + 5 in profile.recipients
    assert store.load_open_incidents()[0].evidence == {"ips": ["45.148.10.81"]}
    assert store.alerts()[0]["incident"] == "inc1"
    store.close()
    journal = SqlJournal(url, clock)
    entries = journal.entries()
    assert entries[len(entries) - len(before) :] == before, "journal rows are untouched"
    moved = sorted(entries[: len(entries) - len(before)], key=lambda entry: entry.id)
    assert [(e.action, e.state, e.result, e.incident, e.actor) for e in moved] == [
        ("lock", "done", "fail2ban-client: 0", "inc1", "postwatch on mx1"),
        ("lock", "failed", "interrupted", "inc1", "postwatch on mx1"),
    ]
    assert moved[0].started == STAMP and moved[0].finished == STAMP
    assert [e.action for e in journal.unfinished()] == (["hold"] if journal_first else [])
    later = journal.start(action="notify", subject="alice@example.org")
    assert later > max(entry.id for entry in entries)
    journal.close()


def reflected(engine: sqlalchemy.Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    inspector = sqlalchemy.inspect(engine)
    columns = [
        (c["name"], str(c["type"]), c["nullable"], c.get("default"))
        for c in inspector.get_columns("postwatch_actions")
    ]
    indexes = sorted(
        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
        for i in inspector.get_indexes("postwatch_actions")
    )
    return columns, indexes


def test_the_migration_makes_the_journal_table_the_journal_makes(url: str) -> None:
    """The table revision 0003 creates has the columns, types and indexes the journal's own."""
    SqlJournal(url).close()
    engine = sqlalchemy.create_engine(url)
    journal_made = reflected(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE postwatch_actions"))
    Store(url).close()
    assert reflected(engine) == journal_made
    assert len(journal_made[1]) == 2
    engine.dispose()


def test_a_journal_database_of_its_own_becomes_a_store(url: str) -> None:
    """A journal alone makes its table; the store later adopts that database, rows kept."""
    clock = SteppedClock(STAMP)
    journal = SqlJournal(url, clock)
    entry = journal.start(action="lock:postfix-map", subject="carol@example.org")
    journal.close()
    store = Store(url)
    assert store.revision() == HEAD and store.count("postwatch_actions") == 1
    store.close()
    again = SqlJournal(url, clock)
    assert [e.id for e in again.unfinished()] == [entry]
    again.close()


@pytest.mark.system
def test_the_journal_takes_a_plain_postgresql_url(postgres_url: str) -> None:  # noqa: F811  (the fixture)
    """``postgresql://`` means psycopg 3 for the journal as for the store."""
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    Store(plain).close()
    journal = SqlJournal(plain, SteppedClock(STAMP))
    journal.finish(journal.start(action="ban", subject="45.148.10.81"), "done", "logged")
    assert [e.state for e in journal.entries()] == ["done"]
    journal.close()


def test_retention_prunes_finished_journal_entries(url: str) -> None:
    """Entries that ended before the retention go; started ones and live locks stay."""
    store = Store(url, retention=30 * 86400)
    clock = SteppedClock(STAMP)
    journal = SqlJournal(url, clock)

    def entry(action: str, subject: str, state: str = "done") -> int:
        clock.step(60)
        entry_id = journal.start(action=action, subject=subject)
        if state != "started":
            journal.finish(entry_id, state, "")
        return entry_id

    entry("notify", "alice@example.org")
    interrupted = entry("hold", "alice@example.org", "started")
    locked = entry("lock:dovecot", "alice@example.org")
    entry("lock:dovecot", "bob@example.org")
    entry("unlock:dovecot", "bob@example.org")
    entry("lock:postfix-map", "alice@example.org", "failed")
    clock.step(40 * 86400)
    recent = entry("ban", "45.148.10.81")
    removed = store.prune(clock.now())
    assert removed["actions"] == 4
    assert sorted(e.id for e in journal.entries()) == [interrupted, locked, recent]
    journal.close()
    store.close()


def test_upgrade_from_0005_keeps_every_known_recipient(url: str) -> None:
    """Revision 0006 keys recipients by subject: every row of a 0005 database stays, as an
    account's, and a uid may then know the same address as the login of its name."""
    old = Store(url, upgrade=False)
    old.upgrade("0005")
    rows = [
        ("alice@example.org", 1),
        ("alice@example.org", 2**62 + 5),
        ("33", 1),  # a login named 33, or uid 33's rows of before: they cannot be told apart
    ]
    seen = {"first_seen": STAMP, "last_seen": STAMP}
    subjects = old_table("subjects", ("kind", "name", "scope", *seen))
    recipients = old_table("recipients", ("account", "digest", *seen))
    with old.engine.begin() as connection:
        connection.execute(
            subjects.insert(),
            [
                {"kind": "account", "name": name, "scope": "", **seen}
                for name in ("alice@example.org", "33")
            ],
        )
        connection.execute(
            recipients.insert(),
            [{"account": name, "digest": digest, **seen} for name, digest in rows],
        )
    old.close()
    store = Store(url)
    assert store.revision() == HEAD
    key = sqlalchemy.inspect(store.engine).get_pk_constraint("recipients")["constrained_columns"]
    assert key == [column.name for column in schema.recipients.primary_key.columns]
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT kind, name, scope, digest FROM recipients"))
        assert sorted(stored.all()) == sorted(("account", n, "", d) for n, d in rows)
    uid = Profile(Subject("uid", "33", "mx1"), STAMP.timestamp())
    uid.see_recipient(1, STAMP.timestamp())
    store.save([uid], [], [])
    known = {profile.subject: set(profile.recipients) for profile in store.load_profiles()}
    assert known == {
        Subject("account", "alice@example.org"): {1, 2**62 + 5},
        Subject("account", "33"): {1},
        Subject("uid", "33", "mx1"): {1},
    }
    store.close()


def test_downgrade_to_0005_keeps_the_accounts_recipients(url: str) -> None:
    """Going back to 0005 keeps the accounts' recipients, drops the others' (the old key
    cannot hold them), and upgrading again works."""
    store = Store(url)
    profiles = []
    for subject in (Subject("account", "33"), Subject("uid", "33", "mx1")):
        profile = Profile(subject, STAMP.timestamp())
        profile.see_recipient(1, STAMP.timestamp())
        profiles.append(profile)
    store.save(profiles, [], [])
    with store.engine.begin() as connection:
        command.downgrade(store._alembic(connection), "0005")
    assert store.revision() == "0005"
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT account, digest FROM recipients")).all() == [
            ("33", 1)
        ]
    store.upgrade()
    assert store.revision() == HEAD and store.count("recipients") == 1
    store.close()
