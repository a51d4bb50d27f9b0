"""Alembic environment: run the migrations on the connection the store hands over.

The store builds the Alembic ``Config`` in code and passes its open connection in
``config.attributes["connection"]``, so no ``alembic.ini`` and no second engine are needed.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the store always passes one
    raise RuntimeError("postwatch migrations run through postwatch.store.Store.upgrade()")

context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
