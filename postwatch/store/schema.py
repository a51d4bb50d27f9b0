"""The state database's tables, as of the newest migration (``migrations/versions``).

::

    subjects    (kind, name, scope) -> first/last seen, learned, last incident, host,
                written_at (the database's clock at the last write)  [written_at: 0005]
    baselines   (kind, name, scope, metric, span) -> peak, peak_at
    origins     (account, kind, value) -> first/last seen, seen, confirmed, host
                (accounts only: where a login comes from)
    recipients  (kind, name, scope, digest) -> first/last seen    [revision 0002; keyed
                by subject since 0006: an account, a uid per host, a sender domain]
    incidents   id -> subject, host, state, severity, score, opened/updated/closed, reasons,
                evidence
    alerts      id -> incident, ts, host, subject, severity, score, payload (the alert JSON)
    volumes     (host, hour, subject_kind, subject, scope) -> messages, recipients accepted
                in that hour (UTC) on that host              [revision 0004]
    postwatch_actions  id -> action, subject, state, incident, actor, reason, detail, result,
                started/finished (naive UTC)    [revision 0003: the action journal's table,
                defined in ``postwatch.actions.journal``, which also creates it in a database
                of its own]

Times are UTC.  No raw log line is stored.  Several mail hosts may share one database:
rows carry the host that wrote them, and an account's rows are shared by all hosts.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from postwatch.actions.journal import journal_table

metadata = MetaData()

NAME = 320  # an address: 64 + 1 + 255
HOST = 255

subjects = Table(
    "subjects",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(NAME), primary_key=True),
    Column("scope", String(HOST), primary_key=True, server_default=""),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("learned", Boolean, nullable=False, server_default="0"),
    Column("last_incident", DateTime(timezone=True)),
    Column("host", String(HOST), nullable=False, server_default=""),
    Column("written_at", DateTime(timezone=True)),
    Index("ix_subjects_written_at", "written_at"),
)

baselines = Table(
    "baselines",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(NAME), primary_key=True),
    Column("scope", String(HOST), primary_key=True, server_default=""),
    Column("metric", String(16), primary_key=True),
    Column("span", String(8), primary_key=True),
    Column("peak", Float, nullable=False),
    Column("peak_at", DateTime(timezone=True), nullable=False),
)

origins = Table(
    "origins",
    metadata,
    Column("account", String(NAME), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(HOST), primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("seen", Integer, nullable=False, server_default="1"),
    Column("confirmed", Boolean, nullable=False, server_default="0"),
    Column("host", String(HOST), nullable=False, server_default=""),
    Index("ix_origins_last_seen", "last_seen"),
)

recipients = Table(
    "recipients",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(NAME), primary_key=True),
    Column("scope", String(HOST), primary_key=True, server_default=""),
    Column("digest", BigInteger, primary_key=True, autoincrement=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Index("ix_recipients_last_seen", "last_seen"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("host", String(HOST), nullable=False, server_default=""),
    Column("subject_kind", String(16), nullable=False),
    Column("subject", String(NAME), nullable=False),
    Column("scope", String(HOST), nullable=False, server_default=""),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("reasons", JSON, nullable=False),
    Column("evidence", JSON, nullable=False),
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_subject", "subject_kind", "subject"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("host", String(HOST), nullable=False, server_default=""),
    Column("subject_kind", String(16), nullable=False),
    Column("subject", String(NAME), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_alerts_ts", "ts"),
)

volumes = Table(
    "volumes",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("subject_kind", String(16), primary_key=True),
    Column("subject", String(NAME), primary_key=True),
    Column("scope", String(HOST), primary_key=True, server_default=""),
    Column("messages", Integer, nullable=False),
    Column("recipients", Integer, nullable=False),
    Index("ix_volumes_hour", "hour"),
)

# The action journal's table, in this schema since revision 0003 (see the docstring).
journal = journal_table()
TABLES: dict[str, Table] = {**metadata.tables, journal.name: journal}
