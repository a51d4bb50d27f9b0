"""Alembic migrations of the state database (run by ``Store.upgrade``; no alembic.ini)."""
