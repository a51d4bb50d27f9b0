"""The state store: SQLite by default, PostgreSQL through the same URL switch.

``Store(url)`` opens the database and upgrades its schema in place (Alembic, revisions in
``migrations/versions``).  The detector hands it batches (``save``), never single events;
each batch is one transaction of multi-row upserts that merge with what other mail hosts
wrote (first seen: earliest; last seen: latest; confirmed: either; hourly volumes add up).
A subject's row is stamped with the database's clock when written, so ``changed_subjects``
and ``load_profiles(subjects)`` let a running host take in what others learned
(:mod:`postwatch.store.refresh`).  ``prune`` deletes rows older than the retention.  The
action journal (:mod:`postwatch.actions.journal`) keeps its ``postwatch_actions`` table in
the same schema, and opens its engine with :func:`open_engine`.

URL resolution (:func:`resolve_url`): ``--db URL``, else ``$POSTWATCH_DB``, else the config's
``[store] url``, else ``sqlite:///<state_dir>/postwatch.db``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from postwatch.actions.journal import prune_finished
from postwatch.config import StoreSettings
from postwatch.detect.alerts import Alert, Subject
from postwatch.detect.incidents import Incident
from postwatch.detect.profiles import Profile
from postwatch.detect.state import HourVolume
from postwatch.errors import StoreError
from postwatch.store import schema
from postwatch.store.rows import (
    add_counts,
    incident_from_row,
    incident_row,
    merge_seen,
    merge_subjects,
    profile_rows,
    read_profiles,
    volume_from_row,
    volume_row,
    when,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
IN_CHUNK = 500  # subjects per IN list when loading some profiles


def resolve_url(
    cli_url: str | None,
    settings: StoreSettings | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The database URL: command line, then ``POSTWATCH_DB``, then config, then default."""
    env = os.environ if environ is None else environ
    if cli_url:
        return cli_url
    if env.get("POSTWATCH_DB"):
        return env["POSTWATCH_DB"]
    settings = settings or StoreSettings()
    if settings.url:
        return settings.url
    return f"sqlite:///{settings.state_dir / 'postwatch.db'}"


class Store:
    """One database; safe to share by several mail hosts (each passes its ``host``)."""

    def __init__(
        self,
        url: str,
        *,
        host: str = "",
        retention: float = 90 * 86400.0,
        batch_size: int = 500,
        flush_interval: float = 30.0,
        upgrade: bool = True,
    ) -> None:
        self.url = url
        self.host = host
        self.retention = retention
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        try:
            self.engine = open_engine(url)
            if upgrade:
                self.upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state database {self.safe_url}: {exc}") from exc
        # before anything is read: what others write from now on is news (ProfileRefresh)
        self.opened_at = self.database_time()

    @classmethod
    def from_settings(
        cls, settings: StoreSettings, *, cli_url: str | None = None, host: str = ""
    ) -> Store:
        return cls(
            resolve_url(cli_url, settings),
            host=host,
            retention=settings.retention,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
        )

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return safe_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # --- schema --------------------------------------------------------------------------

    def _alembic(self, connection: Connection) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (default: the newest), keeping every row."""
        from alembic import command

        try:
            with self.engine.begin() as connection:
                command.upgrade(self._alembic(connection), revision)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot upgrade the state database {self.safe_url}: {exc}") from exc

    def revision(self) -> str | None:
        """The schema revision the database is at (None: empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def tables(self) -> set[str]:
        return set(sa_inspect(self.engine).get_table_names())

    # --- writing -------------------------------------------------------------------------

    def save(
        self,
        profiles: Iterable[Profile],
        incidents: Iterable[Incident],
        alerts: Iterable[Alert],
        volumes: Iterable[HourVolume] = (),
    ) -> None:
        """Write one batch in one transaction; ``volumes`` add to the stored hours' counts."""
        subject_rows, baseline_rows, origin_rows, recipient_rows = profile_rows(profiles, self.host)
        volume_rows = [volume_row(volume) for volume in volumes]
        incident_rows = [incident_row(incident) for incident in incidents]
        alert_rows = [
            {
                "incident_id": alert.incident,
                "ts": alert.ts,
                "host": alert.host,
                "subject_kind": alert.subject_kind,
                "subject": alert.subject,
                "severity": alert.severity,
                "score": alert.score,
                "payload": alert.to_json(),
            }
            for alert in alerts
        ]
        try:
            with self.engine.begin() as connection:
                self._upsert(
                    connection, schema.subjects, subject_rows, merge_subjects, "written_at"
                )
                self._upsert(connection, schema.baselines, baseline_rows)
                self._upsert(connection, schema.origins, origin_rows, merge=merge_seen)
                self._upsert(connection, schema.recipients, recipient_rows, merge=merge_seen)
                self._upsert(connection, schema.incidents, incident_rows)
                if alert_rows:
                    connection.execute(schema.alerts.insert(), alert_rows)
                self._upsert(connection, schema.volumes, volume_rows, merge=add_counts)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the state database: {exc}") from exc

    def _upsert(
        self,
        connection: Connection,
        table: Table,
        rows: list[dict[str, Any]],
        merge: Any = None,
        stamp: str = "",
    ) -> None:
        """Insert or merge ``rows``; ``stamp`` names a column set to the database's clock."""
        if not rows:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        keys = [column.name for column in table.primary_key.columns]
        statement = insert(table)
        excluded = statement.excluded
        values: dict[str, Any] = {name: excluded[name] for name in rows[0] if name not in keys}
        if merge is not None:
            values.update(merge(table, excluded))
        if stamp:
            statement = statement.values({stamp: func.now()})
            values[stamp] = func.now()
        for start in range(0, len(rows), 1000):
            connection.execute(
                statement.on_conflict_do_update(index_elements=keys, set_=values),
                rows[start : start + 1000],
            )

    # --- reading -------------------------------------------------------------------------

    def load_profiles(
        self, subjects: Collection[Subject] | None = None, *, recipients: bool = True
    ) -> list[Profile]:
        """The learned profiles of ``subjects`` (None: every subject, as at start), with
        their known recipients unless ``recipients`` is false."""
        profiles: dict[Subject, Profile] = {}
        try:
            with self.engine.connect() as connection:
                for chunk in _chunks(subjects):
                    profiles.update(read_profiles(connection, chunk, recipients))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc
        return list(profiles.values())

    def changed_subjects(self, since: datetime) -> tuple[list[Subject], datetime | None]:
        """The subjects whose rows were written after ``since`` (the database's clock), and
        the latest of those write times (None: none)."""
        table = schema.subjects
        query = select(table.c.kind, table.c.name, table.c.scope, table.c.written_at).where(
            table.c.written_at > since
        )
        subjects, newest = [], None
        try:
            with self.engine.connect() as connection:
                for kind, name, scope, written in connection.execute(query):
                    subjects.append(Subject(kind, name, scope))
                    written = when(written)
                    newest = written if newest is None or written > newest else newest
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc
        return subjects, newest

    def database_time(self) -> datetime:
        """The database's clock (what ``written_at`` is stamped with), UTC."""
        try:
            with self.engine.connect() as connection:
                return when(connection.execute(select(func.now())).scalar_one())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc

    def load_open_incidents(self) -> list[Incident]:
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(schema.incidents)
                    .where(schema.incidents.c.state == "open")
                    .order_by(schema.incidents.c.opened_at)
                )
                return [incident_from_row(row) for row in rows]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc

    def incidents(self, *, state: str | None = None) -> list[Incident]:
        query = select(schema.incidents).order_by(schema.incidents.c.opened_at)
        if state is not None:
            query = query.where(schema.incidents.c.state == state)
        with self.engine.connect() as connection:
            return [incident_from_row(row) for row in connection.execute(query)]

    def alerts(self, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Stored alerts as their JSON form, oldest first."""
        query = select(schema.alerts.c.payload).order_by(schema.alerts.c.ts, schema.alerts.c.id)
        if since is not None:
            query = query.where(schema.alerts.c.ts >= since)
        with self.engine.connect() as connection:
            return [dict(row.payload) for row in connection.execute(query)]

    def volumes(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> list[HourVolume]:
        """The hourly volumes from ``start`` to ``end`` (excluded), oldest hour first."""
        table = schema.volumes
        query = select(table).order_by(table.c.hour, table.c.host)
        if start is not None:
            query = query.where(table.c.hour >= start)
        if end is not None:
            query = query.where(table.c.hour < end)
        try:
            with self.engine.connect() as connection:
                return [volume_from_row(row) for row in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc

    def volume_history(self, before: datetime | None) -> tuple[datetime | None, dict[Subject, int]]:
        """The first hour stored, and the messages each subject sent before ``before``
        (None: no totals)."""
        table = schema.volumes
        subject = (table.c.subject_kind, table.c.subject, table.c.scope)
        totals: dict[Subject, int] = {}
        try:
            with self.engine.connect() as connection:
                first = connection.execute(select(func.min(table.c.hour))).scalar_one()
                if before is not None:
                    query = (
                        select(*subject, func.sum(table.c.messages))
                        .where(table.c.hour < before)
                        .group_by(*subject)
                    )
                    for kind, name, scope, messages in connection.execute(query):
                        totals[Subject(kind, name, scope)] = int(messages)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc
        return (when(first) if first is not None else None), totals

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(schema.TABLES[table])
                ).scalar_one()
            )

    # --- retention -----------------------------------------------------------------------

    def prune(self, now: datetime) -> dict[str, int]:
        """Delete what is older than the retention; return the rows removed per table."""
        cutoff = now - timedelta(seconds=self.retention)
        s, b = schema.subjects, schema.baselines
        statements = {
            "origins": delete(schema.origins).where(schema.origins.c.last_seen < cutoff),
            "recipients": delete(schema.recipients).where(schema.recipients.c.last_seen < cutoff),
            "baselines": delete(b).where(b.c.peak_at < cutoff),
            "subjects": delete(s).where(s.c.last_seen < cutoff),
            "alerts": delete(schema.alerts).where(schema.alerts.c.ts < cutoff),
            "volumes": delete(schema.volumes).where(schema.volumes.c.hour < cutoff),
            "incidents": delete(schema.incidents).where(
                and_(schema.incidents.c.state == "closed", schema.incidents.c.closed_at < cutoff)
            ),
        }
        removed = {}
        try:
            with self.engine.begin() as connection:
                for name, statement in statements.items():
                    removed[name] = connection.execute(statement).rowcount or 0
                removed["actions"] = prune_finished(connection, cutoff)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune the state database: {exc}") from exc
        return removed


def _chunks(subjects: Collection[Subject] | None) -> Iterator[list[Subject] | None]:
    """``subjects`` in lists short enough for one ``IN``; None (every subject) once."""
    if subjects is None:
        yield None
        return
    listed = list(subjects)
    for start in range(0, len(listed), IN_CHUNK):
        yield listed[start : start + IN_CHUNK]


def safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database URL>"


def open_engine(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL: ``postgresql://`` means psycopg 3, a SQLite
    file gets its folder, WAL and a busy timeout (watch, the action commands and reports
    share it)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url[len("sqlite:///") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {path.parent}: {exc}") from exc
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {safe_url(url)}") from exc
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql")
    try:
        engine = create_engine(url)
    except ImportError as exc:
        raise StoreError(f"the driver for {backend} is not installed: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
