"""The action journal: the same behaviour in memory and in its SQLAlchemy table (SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy

from postwatch.actions.journal import Journal, MemoryJournal, SqlJournal
from postwatch.clock import SteppedClock

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    clock = SteppedClock(START)
    if request.param == "memory":
        yield MemoryJournal(clock)
        return
    sql = SqlJournal(f"sqlite:///{tmp_path / 'state.sqlite'}", clock)
    yield sql
    sql.close()


def test_entry_goes_from_started_to_done_with_its_result(journal: Journal) -> None:
    """start() writes a started entry with who/what/why; finish() records the result."""
    entry_id = journal.start(
        action="lock:postfix-map",
        subject="alice@example.com",
        incident="12",
        actor="postwatch",
        reason="critical (score 130)",
        detail={"senders": ["alice@example.com"]},
    )
    [started] = journal.entries()
    assert (started.state, started.actor, started.incident, started.detail) == (
        "started",
        "postwatch",
        "12",
        {"senders": ["alice@example.com"]},
    )
    assert started.started == START and started.finished is None
    journal.clock.step(5)  # type: ignore[attr-defined]
    journal.finish(entry_id, "done", "alice@example.com added", {"held": ["4F2A81C0D3"]})
    [done] = journal.entries()
    assert (done.state, done.result, done.detail) == (
        "done",
        "alice@example.com added",
        {"held": ["4F2A81C0D3"]},
    )
    assert done.finished == START + timedelta(seconds=5)


def test_unfinished_lists_only_started_entries_oldest_first(journal: Journal) -> None:
    """unfinished() returns the entries a crash left started, in the order they began."""
    first = journal.start(action="lock:dovecot", subject="a@example.com")
    second = journal.start(action="hold", subject="a@example.com")
    done = journal.start(action="ban", subject="203.0.113.5")
    journal.finish(done, "done", "written")
    assert [entry.id for entry in journal.unfinished()] == [first, second]


def test_entries_filter_by_subject_action_prefix_and_time(journal: Journal) -> None:
    """entries() filters by subject, exact action or action prefix, and start time."""
    journal.start(action="lock:postfix-map", subject="a@example.com")
    journal.clock.step(3600)  # type: ignore[attr-defined]
    journal.start(action="lock:dovecot", subject="a@example.com")
    journal.start(action="lock:dovecot", subject="b@example.com")
    journal.start(action="notify", subject="a@example.com")
    assert len(journal.entries(action="lock:")) == 3
    assert len(journal.entries(action="lock:dovecot")) == 2
    assert len(journal.entries(subject="a@example.com")) == 3
    since = START + timedelta(seconds=1800)
    assert [e.subject for e in journal.entries(action="lock:", since=since)] == [
        "b@example.com",
        "a@example.com",
    ]
    assert [e.action for e in journal.entries(limit=2)] == ["notify", "lock:dovecot"]


def test_finishing_with_an_unknown_state_is_refused(journal: Journal) -> None:
    """Only done, failed, dry-run and skipped end an entry."""
    entry_id = journal.start(action="ban", subject="203.0.113.5")
    with pytest.raises(ValueError):
        journal.finish(entry_id, "started", "")


def test_sql_journal_survives_a_restart(tmp_path: Path) -> None:
    """A started entry written by one process is unfinished for the next one."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    first = SqlJournal(url, SteppedClock(START))
    entry_id = first.start(action="hold", subject="alice@example.com", detail={"queue_ids": []})
    first.close()
    second = SqlJournal(url, SteppedClock(START))
    assert [(e.id, e.action, e.started) for e in second.unfinished()] == [(entry_id, "hold", START)]
    second.close()


def test_sql_journal_uses_its_own_plain_table(tmp_path: Path) -> None:
    """The journal creates the postwatch_actions table with the expected columns."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    SqlJournal(url).close()
    engine = sqlalchemy.create_engine(url)
    columns = {c["name"] for c in sqlalchemy.inspect(engine).get_columns("postwatch_actions")}
    engine.dispose()
    assert columns == {
        "id",
        "action",
        "subject",
        "state",
        "incident",
        "actor",
        "reason",
        "detail",
        "result",
        "started_at",
        "finished_at",
    }


def test_memory_journal_is_bounded_and_keeps_started_entries() -> None:
    """Past max_entries the oldest finished entries go; started ones are never dropped."""
    journal = MemoryJournal(SteppedClock(START), max_entries=3)
    kept = journal.start(action="lock:dovecot", subject="a@example.com")
    for number in range(5):
        entry_id = journal.start(action="ban", subject=f"203.0.113.{number}")
        journal.finish(entry_id, "done", "written")
    entries = journal.entries()
    assert len(entries) == 3 and kept in [e.id for e in entries]
