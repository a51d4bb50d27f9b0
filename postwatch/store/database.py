"""The state store: SQLite by default, PostgreSQL through the same URL switch.

``Store(url)`` opens the database and upgrades its schema in place (Alembic, revisions in
``migrations/versions``).  The detector hands it batches (``save``), never single events;
each batch is one transaction of multi-row upserts that merge with what other mail hosts
wrote (first seen: earliest; last seen: latest; confirmed: either).  ``prune`` deletes rows
older than the retention.  The ``actions`` table is the actions stage's journal.

URL resolution (:func:`resolve_url`): ``--db URL``, else ``$POSTWATCH_DB``, else the config's
``[store] url``, else ``sqlite:///<state_dir>/postwatch.db``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from postwatch.config import StoreSettings
from postwatch.detect.alerts import Alert, Subject
from postwatch.detect.incidents import Incident
from postwatch.detect.profiles import Origin, Profile
from postwatch.errors import StoreError
from postwatch.store import schema
from postwatch.store.rows import (
    incident_from_row,
    incident_row,
    merge_seen,
    merge_subjects,
    ordered,
    profile_rows,
    slot_of,
    when,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ACTION_STATES = ("started", "done", "failed")


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


class ActionRecord(NamedTuple):
    """One row of the actions journal."""

    id: int
    incident_id: str | None
    subject_kind: str
    subject: str
    action: str
    state: str
    detail: str
    started_at: datetime
    updated_at: datetime
    host: str


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
            self.engine = self._connect(url)
            if upgrade:
                self.upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state database {self.safe_url}: {exc}") from exc

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
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            return "<database URL>"

    def _connect(self, url: str) -> Engine:
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
            raise StoreError(f"not a database URL: {self.safe_url}") from exc
        if backend not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql")
        try:
            engine = create_engine(url)
        except ImportError as exc:
            raise StoreError(f"the driver for {backend} is not installed: {exc}") from exc
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

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
        self, profiles: Iterable[Profile], incidents: Iterable[Incident], alerts: Iterable[Alert]
    ) -> None:
        """Write one batch in one transaction."""
        subject_rows, baseline_rows, origin_rows, recipient_rows = profile_rows(profiles, self.host)
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
                self._upsert(connection, schema.subjects, subject_rows, merge=merge_subjects)
                self._upsert(connection, schema.baselines, baseline_rows)
                self._upsert(connection, schema.origins, origin_rows, merge=merge_seen)
                self._upsert(connection, schema.recipients, recipient_rows, merge=merge_seen)
                self._upsert(connection, schema.incidents, incident_rows)
                if alert_rows:
                    connection.execute(schema.alerts.insert(), alert_rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the state database: {exc}") from exc

    def _upsert(
        self, connection: Connection, table: Table, rows: list[dict[str, Any]], merge: Any = None
    ) -> None:
        if not rows:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        keys = [column.name for column in table.primary_key.columns]
        statement = insert(table)
        excluded = statement.excluded
        values = {name: excluded[name] for name in rows[0] if name not in keys}
        if merge is not None:
            values.update(merge(table, excluded))
        for start in range(0, len(rows), 1000):
            connection.execute(
                statement.on_conflict_do_update(index_elements=keys, set_=values),
                rows[start : start + 1000],
            )

    # --- reading -------------------------------------------------------------------------

    def load_profiles(self) -> list[Profile]:
        """Every subject's learned profile (read once at start)."""
        profiles: dict[tuple[str, str, str], Profile] = {}
        try:
            with self.engine.connect() as connection:
                for row in connection.execute(select(schema.subjects)):
                    subject = Subject(row.kind, row.name, row.scope)
                    profile = Profile(subject, when(row.first_seen).timestamp())
                    profile.last_seen = when(row.last_seen).timestamp()
                    profile.learned = bool(row.learned)
                    if row.last_incident is not None:
                        profile.last_incident = when(row.last_incident).timestamp()
                    profiles[subject] = profile
                for row in connection.execute(select(schema.baselines)):
                    found = profiles.get((row.kind, row.name, row.scope))
                    slot = slot_of(row.metric, row.span)
                    if found is not None and slot is not None:
                        found.peaks[slot] = float(row.peak)
                        found.peak_times[slot] = when(row.peak_at).timestamp()
                accounts = {
                    profile.subject.name: profile
                    for profile in profiles.values()
                    if profile.subject.kind == "account"
                }
                query = select(schema.origins).order_by(schema.origins.c.last_seen)
                for row in connection.execute(query):
                    owner = accounts.get(row.account)
                    if owner is not None:
                        owner.origins.setdefault(row.kind, ordered())[row.value] = Origin(
                            when(row.first_seen).timestamp(),
                            when(row.last_seen).timestamp(),
                            int(row.seen),
                            bool(row.confirmed),
                        )
                query = select(schema.recipients).order_by(schema.recipients.c.last_seen)
                for row in connection.execute(query):
                    owner = accounts.get(row.account)
                    if owner is not None:
                        owner.recipients[int(row.digest)] = when(row.last_seen).timestamp()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the state database: {exc}") from exc
        return list(profiles.values())

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

    def count(self, table: str) -> int:
        from sqlalchemy import func

        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(schema.metadata.tables[table])
                ).scalar_one()
            )

    # --- actions journal -----------------------------------------------------------------

    def action_started(
        self,
        *,
        subject: str,
        action: str,
        ts: datetime,
        incident_id: str | None = None,
        subject_kind: str = "",
        detail: str = "",
    ) -> int:
        """Journal an action that begins; returns its id for :meth:`action_finished`."""
        row = {
            "incident_id": incident_id,
            "subject_kind": subject_kind,
            "subject": subject,
            "action": action,
            "state": "started",
            "detail": detail,
            "started_at": ts,
            "updated_at": ts,
            "host": self.host,
        }
        try:
            with self.engine.begin() as connection:
                result = connection.execute(schema.actions.insert().values(**row))
                return int(result.inserted_primary_key[0])  # type: ignore[index]  # one-column key
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot journal the action: {exc}") from exc

    def action_finished(
        self, action_id: int, *, state: str, ts: datetime, detail: str | None = None
    ) -> None:
        """Mark a journalled action ``done`` or ``failed``."""
        if state not in ACTION_STATES:
            raise ValueError(f"action state must be one of {ACTION_STATES}")
        values: dict[str, Any] = {"state": state, "updated_at": ts}
        if detail is not None:
            values["detail"] = detail
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    update(schema.actions).where(schema.actions.c.id == action_id).values(**values)
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot journal the action: {exc}") from exc

    def actions(self, *, incident_id: str | None = None) -> list[ActionRecord]:
        query = select(schema.actions).order_by(schema.actions.c.id)
        if incident_id is not None:
            query = query.where(schema.actions.c.incident_id == incident_id)
        with self.engine.connect() as connection:
            return [
                ActionRecord(
                    row.id,
                    row.incident_id,
                    row.subject_kind,
                    row.subject,
                    row.action,
                    row.state,
                    row.detail,
                    when(row.started_at),
                    when(row.updated_at),
                    row.host,
                )
                for row in connection.execute(query)
            ]

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
            "incidents": delete(schema.incidents).where(
                and_(schema.incidents.c.state == "closed", schema.incidents.c.closed_at < cutoff)
            ),
            "actions": delete(schema.actions).where(
                and_(schema.actions.c.state != "started", schema.actions.c.updated_at < cutoff)
            ),
        }
        removed = {}
        try:
            with self.engine.begin() as connection:
                for name, statement in statements.items():
                    removed[name] = connection.execute(statement).rowcount or 0
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune the state database: {exc}") from exc
        return removed


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
