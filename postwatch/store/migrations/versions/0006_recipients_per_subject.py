"""Known recipients per subject: ``recipients`` is keyed like ``subjects`` and ``baselines``,
``(kind, name, scope, digest)``, so the recipients of a pickup uid (per host) or a sender
domain are kept apart from an account's and are read back into their own profile.

Before this revision every subject's recipients were written under its bare name, in a
column called ``account``: uid 33 of any host, a sender domain and an account all shared
that key, and only accounts read them back.  The column becomes ``name``; existing rows get
kind ``account`` and scope ``""``.  Rows that came from a uid or a sender domain cannot be
told apart from an account's: they stay as the account of that name (a login named ``33``,
if there is one, keeps a few extra known correspondents; uids and sender domains start
learning their recipients afresh).

Downgrading deletes the rows of other kinds and scopes: the old key cannot hold them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "recipients"
PRIMARY_KEY = "recipients_pkey"  # PostgreSQL's own name for the key 0002 created


def upgrade() -> None:
    # columns first, filled by their defaults, and the new name: in place on both
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="account"))
        batch.add_column(sa.Column("scope", sa.String(255), nullable=False, server_default=""))
    op.alter_column(TABLE, "account", new_column_name="name", existing_type=sa.String(320))
    # then the key: SQLite copies the table (a key naming a column renamed in the same
    # batch would be left out of that copy, hence the rename above).  PostgreSQL drops
    # the old key by its name; SQLite's has none, so its copy is made from the table as
    # it is, minus that key.
    bind = op.get_bind()
    existing = sa.inspect(bind).get_pk_constraint(TABLE).get("name")
    copy_from = None if existing else _without_key(bind)
    with op.batch_alter_table(TABLE, copy_from=copy_from) as batch:
        if existing:
            batch.drop_constraint(existing, type_="primary")
        batch.create_primary_key(PRIMARY_KEY, ["kind", "name", "scope", "digest"])
        # every writer names the kind from now on
        batch.alter_column("kind", server_default=None, existing_type=sa.String(16))


def _without_key(bind: sa.Connection) -> sa.Table:
    """The table as the database has it, without its primary key."""
    table = sa.Table(TABLE, sa.MetaData(), autoload_with=bind)
    return sa.Table(
        TABLE,
        sa.MetaData(),
        *(
            sa.Column(
                column.name,
                column.type,
                nullable=column.nullable,
                server_default=column.server_default,
            )
            for column in table.columns
        ),
        *(
            sa.Index(index.name, *(column.name for column in index.columns))
            for index in table.indexes
        ),
    )


def downgrade() -> None:
    table = sa.table(TABLE, sa.column("kind"), sa.column("scope"))
    op.execute(table.delete().where(sa.or_(table.c.kind != "account", table.c.scope != "")))
    op.alter_column(TABLE, "name", new_column_name="account", existing_type=sa.String(320))
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(PRIMARY_KEY, type_="primary")
        batch.drop_column("scope")
        batch.drop_column("kind")
        batch.create_primary_key(PRIMARY_KEY, ["account", "digest"])
