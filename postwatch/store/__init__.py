"""The state store: what detection needs across restarts (SQLAlchemy; SQLite or PostgreSQL).

``Store`` opens and upgrades the database; ``resolve_url`` picks the URL from the command
line, ``POSTWATCH_DB``, the config or the state directory.  Tables: ``schema``.
"""

from postwatch.store.database import Store, resolve_url

__all__ = ["Store", "resolve_url"]
