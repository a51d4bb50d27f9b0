"""One actions table: the action journal's ``postwatch_actions`` joins the schema; the unused
``actions`` table goes, its rows moved into the journal.

The journal (``postwatch.actions.journal``) created ``postwatch_actions`` itself on first
use, so a database may have it already, with rows: then it is left as it is.  Otherwise it
is created here with exactly the journal's columns and indexes.  Its times are naive UTC
(``timestamp without time zone``), as the journal has always written them.

Rows of the old table are copied into the journal: ``detail`` (a result text there) becomes
``result``, ``updated_at`` the finish time; a row left ``started`` becomes ``failed``, so the
runner never tries to finish an action it did not journal itself.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JOURNAL = "postwatch_actions"
JOURNAL_INDEXES = {
    "ix_postwatch_actions_subject_started": ["subject", "started_at"],
    "ix_postwatch_actions_state": ["state"],
}


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(JOURNAL):
        op.create_table(
            JOURNAL,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("subject", sa.String(320), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("incident", sa.String(64), nullable=False),
            sa.Column("actor", sa.String(128), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("detail", sa.Text, nullable=False),
            sa.Column("result", sa.Text, nullable=False),
            sa.Column("started_at", sa.DateTime(), nullable=False),
            sa.Column("finished_at", sa.DateTime(), nullable=True),
        )
    present = {index["name"] for index in sa.inspect(bind).get_indexes(JOURNAL)}
    for name, columns in JOURNAL_INDEXES.items():
        if name not in present:
            op.create_index(name, JOURNAL, columns)
    if inspector.has_table("actions"):
        _move_old_rows(bind)
        op.drop_index("ix_actions_incident_id", "actions")
        op.drop_table("actions")


def _move_old_rows(bind: sa.Connection) -> None:
    old = sa.Table("actions", sa.MetaData(), autoload_with=bind)
    journal = sa.table(
        JOURNAL,
        *(
            sa.column(name)
            for name in (
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
            )
        ),
    )
    rows = []
    for row in bind.execute(sa.select(old).order_by(old.c.id)):
        interrupted = row.state == "started"
        rows.append(
            {
                "action": row.action[:64],
                "subject": row.subject,
                "state": "failed" if interrupted else row.state[:16],
                "incident": (row.incident_id or "")[:64],
                "actor": f"postwatch on {row.host}"[:128] if row.host else "postwatch",
                "reason": "",
                "detail": "{}",
                "result": row.detail or ("interrupted" if interrupted else ""),
                "started_at": _naive_utc(row.started_at),
                "finished_at": _naive_utc(row.updated_at),
            }
        )
    if rows:
        bind.execute(journal.insert(), rows)


def _naive_utc(value: datetime) -> datetime:
    """The journal's time format: UTC without a zone (SQLite hands stored times back naive)."""
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def downgrade() -> None:
    # The journal's table stays: the journal creates it on first use at any revision.
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32)),
        sa.Column("subject_kind", sa.String(16), nullable=False, server_default=""),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("ix_actions_incident_id", "actions", ["incident_id"])
