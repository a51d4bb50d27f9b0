"""Known recipients per account, and indexes for pruning by age.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recipients",
        sa.Column("account", sa.String(320), primary_key=True),
        sa.Column("digest", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_recipients_last_seen", "recipients", ["last_seen"])
    op.create_index("ix_origins_last_seen", "origins", ["last_seen"])
    op.create_index("ix_alerts_ts", "alerts", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_alerts_ts", "alerts")
    op.drop_index("ix_origins_last_seen", "origins")
    op.drop_table("recipients")
