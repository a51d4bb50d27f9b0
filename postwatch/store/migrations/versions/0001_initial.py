"""Initial schema: subjects, baselines, origins, incidents, alerts, actions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(320), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True, server_default=""),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("learned", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("last_incident", TZ),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
    )
    op.create_table(
        "baselines",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(320), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True, server_default=""),
        sa.Column("metric", sa.String(16), primary_key=True),
        sa.Column("span", sa.String(8), primary_key=True),
        sa.Column("peak", sa.Float, nullable=False),
        sa.Column("peak_at", TZ, nullable=False),
    )
    op.create_table(
        "origins",
        sa.Column("account", sa.String(320), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("seen", sa.Integer, nullable=False, server_default="1"),
        sa.Column("confirmed", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_index("ix_incidents_subject", "incidents", ["subject_kind", "subject"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("ts", TZ, nullable=False),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32)),
        sa.Column("subject_kind", sa.String(16), nullable=False, server_default=""),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("ix_actions_incident_id", "actions", ["incident_id"])


def downgrade() -> None:
    for table in ("actions", "alerts", "incidents", "origins", "baselines", "subjects"):
        op.drop_table(table)
