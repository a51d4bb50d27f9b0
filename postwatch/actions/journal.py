"""The action journal: every action written down before it runs and again when it ends.

An entry says who (``actor``), what (``action`` on ``subject``), why (``reason``, the
``incident``), with what parameters (``detail``, JSON) and how it ended (``state``,
``result``).  States::

    started -> done | failed      an action that ran (or is running, or was cut short)
    dry-run                       what would have been done (--dry-run, replay)
    skipped                       what the policy refused (allowlisted, lock cap ...)

An entry still ``started`` when postwatch starts again was interrupted: the runner finishes
it (actions are idempotent) or marks it failed, so nothing is done twice or forgotten.

:class:`MemoryJournal` keeps entries in memory (tests, replay); :class:`SqlJournal` keeps
them in the ``postwatch_actions`` table.  That table is part of the state store's schema
(revision 0003), so the journal shares watch's database; pointed at a database of its own
(``[actions] journal``), the journal creates the table there when it is missing.
:func:`prune_finished` is the retention rule the store applies to it.  SQLAlchemy is
imported only when a SQL journal is used (:func:`journal_table` defines the table then).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from postwatch.clock import Clock, SystemClock
from postwatch.errors import ConfigError, StoreError

if TYPE_CHECKING:  # SQLAlchemy is imported only by a SQL journal: a replay needs none
    import sqlalchemy

STATES = ("started", "done", "failed", "dry-run", "skipped")
FINAL_STATES = STATES[1:]


class JournalEntry(NamedTuple):
    """One action, as journaled."""

    id: int
    action: str  # notify, lock:postfix-map, unlock:dovecot, hold, release, ban, fail2ban-ban ...
    subject: str
    state: str
    incident: str
    actor: str
    reason: str
    detail: dict[str, Any]
    result: str
    started: datetime
    finished: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["started"] = self.started.isoformat()
        data["finished"] = self.finished.isoformat() if self.finished else None
        return data


class Journal(Protocol):
    def start(
        self,
        *,
        action: str,
        subject: str,
        incident: str = "",
        actor: str = "postwatch",
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Write a ``started`` entry; returns its id."""
        ...

    def finish(
        self, entry_id: int, state: str, result: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """End an entry (done, failed, dry-run or skipped); ``detail`` replaces the old one."""
        ...

    def unfinished(self) -> list[JournalEntry]:
        """Entries still ``started``, oldest first."""
        ...

    def entries(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        """Entries, newest first; ``action`` ending in ``:`` matches every action with that
        prefix (``lock:``)."""
        ...

    def close(self) -> None:
        """Release the journal's database connections, if any."""
        ...


def _check_final(state: str) -> None:
    if state not in FINAL_STATES:
        raise ValueError(f"not a final journal state: {state!r}")


class MemoryJournal:
    """A journal in memory; keeps at most ``max_entries`` (oldest finished dropped first)."""

    def __init__(self, clock: Clock | None = None, *, max_entries: int = 100_000) -> None:
        self.clock = clock or SystemClock()
        self.max_entries = max_entries
        self._entries: dict[int, JournalEntry] = {}
        self._next_id = 1

    def start(
        self,
        *,
        action: str,
        subject: str,
        incident: str = "",
        actor: str = "postwatch",
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = JournalEntry(
            entry_id,
            action,
            subject,
            "started",
            incident,
            actor,
            reason,
            json.loads(json.dumps(dict(detail or {}))),
            "",
            self.clock.now(),
            None,
        )
        self._trim()
        return entry_id

    def finish(
        self, entry_id: int, state: str, result: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        _check_final(state)
        entry = self._entries[entry_id]
        changes: dict[str, Any] = {"state": state, "result": result, "finished": self.clock.now()}
        if detail is not None:
            changes["detail"] = json.loads(json.dumps(dict(detail)))
        self._entries[entry_id] = entry._replace(**changes)

    def unfinished(self) -> list[JournalEntry]:
        return [entry for entry in self._entries.values() if entry.state == "started"]

    def entries(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        found = [
            entry
            for entry in reversed(self._entries.values())
            if (subject is None or entry.subject == subject)
            and _action_matches(entry.action, action)
            and (since is None or entry.started >= since)
        ]
        return found if limit is None else found[:limit]

    def close(self) -> None:
        """Nothing to release."""

    def _trim(self) -> None:
        excess = len(self._entries) - self.max_entries
        if excess <= 0:
            return
        for entry_id in [e.id for e in self._entries.values() if e.state != "started"][:excess]:
            del self._entries[entry_id]


def _action_matches(action: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    return action.startswith(wanted) if wanted.endswith(":") else action == wanted


# --- SQL ---------------------------------------------------------------------------------


@functools.cache
def journal_table() -> sqlalchemy.Table:
    """The ``postwatch_actions`` table, defined on first use."""
    from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

    return Table(
        "postwatch_actions",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("action", String(64), nullable=False),
        Column("subject", String(320), nullable=False),
        Column("state", String(16), nullable=False),
        Column("incident", String(64), nullable=False, default=""),
        Column("actor", String(128), nullable=False, default=""),
        Column("reason", Text, nullable=False, default=""),
        Column("detail", Text, nullable=False, default="{}"),
        Column("result", Text, nullable=False, default=""),
        Column("started_at", DateTime(), nullable=False),  # UTC
        Column("finished_at", DateTime(), nullable=True),  # UTC
        Index("ix_postwatch_actions_subject_started", "subject", "started_at"),
        Index("ix_postwatch_actions_state", "state"),
    )


class SqlJournal:
    """A journal in the ``postwatch_actions`` table of a SQLite or PostgreSQL database."""

    def __init__(
        self, url: str, clock: Clock | None = None, *, engine: sqlalchemy.Engine | None = None
    ) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        # imported here: the store imports this module (its schema holds the journal's table)
        from postwatch.store.database import open_engine

        self.clock = clock or SystemClock()
        self.table = journal_table()
        try:
            self.engine = engine or open_engine(url)
            create_table(self.engine)
        except (SQLAlchemyError, StoreError, ValueError, ImportError) as exc:
            raise ConfigError(
                f"cannot open the action journal: {_short(exc)}", key="actions.journal"
            ) from exc

    def start(
        self,
        *,
        action: str,
        subject: str,
        incident: str = "",
        actor: str = "postwatch",
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        values = {
            "action": action,
            "subject": subject,
            "state": "started",
            "incident": incident,
            "actor": actor,
            "reason": reason,
            "detail": json.dumps(dict(detail or {}), sort_keys=True),
            "result": "",
            "started_at": _to_db(self.clock.now()),
            "finished_at": None,
        }
        try:
            with self.engine.begin() as connection:
                inserted = connection.execute(self.table.insert().values(**values))
                key = inserted.inserted_primary_key
        except SQLAlchemyError as exc:
            raise StoreError(f"action journal: cannot write: {_short(exc)}") from exc
        if key is None:
            raise StoreError("action journal: the database returned no id")
        return int(key[0])

    def finish(
        self, entry_id: int, state: str, result: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        _check_final(state)
        values: dict[str, Any] = {
            "state": state,
            "result": result,
            "finished_at": _to_db(self.clock.now()),
        }
        if detail is not None:
            values["detail"] = json.dumps(dict(detail), sort_keys=True)
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    self.table.update().where(self.table.c.id == entry_id).values(**values)
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"action journal: cannot write: {_short(exc)}") from exc

    def unfinished(self) -> list[JournalEntry]:
        query = self.table.select().where(self.table.c.state == "started").order_by(self.table.c.id)
        return self._select(query)

    def entries(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        table = self.table
        query = table.select().order_by(table.c.id.desc())
        if subject is not None:
            query = query.where(table.c.subject == subject)
        if action is not None:
            query = query.where(
                table.c.action.startswith(action, autoescape=True)
                if action.endswith(":")
                else table.c.action == action
            )
        if since is not None:
            query = query.where(table.c.started_at >= _to_db(since))
        if limit is not None:
            query = query.limit(limit)
        return self._select(query)

    def _select(self, query: Any) -> list[JournalEntry]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).mappings().all()
        except SQLAlchemyError as exc:
            raise StoreError(f"action journal: cannot read: {_short(exc)}") from exc
        return [
            JournalEntry(
                row["id"],
                row["action"],
                row["subject"],
                row["state"],
                row["incident"],
                row["actor"],
                row["reason"],
                json.loads(row["detail"] or "{}"),
                row["result"],
                _from_db(row["started_at"]),
                _from_db(row["finished_at"]) if row["finished_at"] else None,
            )
            for row in rows
        ]

    def close(self) -> None:
        self.engine.dispose()


def create_table(engine: sqlalchemy.Engine) -> None:
    """Create the journal's table and indexes where they are missing (a database of its own;
    the store's schema has them).  ``IF NOT EXISTS``: another process may create them too."""
    import sqlalchemy
    from sqlalchemy.schema import CreateIndex, CreateTable

    table = journal_table()
    if sqlalchemy.inspect(engine).has_table(table.name):
        return  # no DDL: the journal may run as a user who cannot create tables
    with engine.begin() as connection:
        connection.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))


def prune_finished(connection: sqlalchemy.Connection, before: datetime) -> int:
    """Delete entries that ended before ``before``; return how many.

    Entries still ``started`` stay (the runner finishes them), and so does the entry that
    says an account is locked in a backend now (its last lock or unlock there is a lock):
    ``unlock`` and the report read it, however old.
    """
    import sqlalchemy

    table = journal_table()
    live: dict[tuple[str, str], tuple[int, bool]] = {}
    query = (
        sqlalchemy.select(table.c.id, table.c.subject, table.c.action)
        .where(table.c.state.in_(("started", "done")))
        .where(table.c.action.startswith("lock:") | table.c.action.startswith("unlock:"))
        .order_by(table.c.id)
    )
    for entry_id, subject, action in connection.execute(query):
        verb, _, backend = action.partition(":")
        live[(subject, backend)] = (entry_id, verb == "lock")
    kept = [entry_id for entry_id, locked in live.values() if locked]
    cutoff = _to_db(before)
    statement = table.delete().where(
        table.c.state != "started",
        sqlalchemy.func.coalesce(table.c.finished_at, table.c.started_at) < cutoff,
    )
    if kept:
        statement = statement.where(table.c.id.not_in(kept))
    return connection.execute(statement).rowcount or 0


def _to_db(when: datetime) -> datetime:
    """UTC without tzinfo: SQLite drops the zone, so every backend stores naive UTC."""
    return when.astimezone(UTC).replace(tzinfo=None)


def _from_db(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]
