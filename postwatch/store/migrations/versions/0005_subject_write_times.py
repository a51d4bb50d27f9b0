"""When each subject's row was last written, by the database's clock: ``watch`` merges the
profiles other mail hosts changed since its last look (several hosts, one database).

Rows written before this revision have no time: they were loaded at start.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subjects") as batch:
        batch.add_column(sa.Column("written_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_subjects_written_at", "subjects", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_subjects_written_at", "subjects")
    with op.batch_alter_table("subjects") as batch:
        batch.drop_column("written_at")
