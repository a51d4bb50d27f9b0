"""Hourly volumes: the messages and recipients each account and uid submitted, per host and
hour, so a report from the store has message counts and charts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("subject_kind", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(320), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True, server_default=""),
        sa.Column("messages", sa.Integer, nullable=False),
        sa.Column("recipients", sa.Integer, nullable=False),
    )
    op.create_index("ix_volumes_hour", "volumes", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_volumes_hour", "volumes")
    op.drop_table("volumes")
