"""Shared fixtures: where the real-log corpus is, the real programs the tests run, and the
store's database on each backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
MAILLOGS = FIXTURES / "maillogs"
# The real Postfix/Dovecot corpus lives beside the repository, in shared/corpus/real.
CORPUS = REPO.parent / "shared" / "corpus" / "real"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real-log corpus folder; its absence fails the test instead of skipping it."""
    if not (CORPUS / "INDEX.md").is_file():
        pytest.fail(f"the real-log corpus is missing: expected {CORPUS}/INDEX.md")
    return CORPUS


def require_program(name: str, *candidates: str) -> str:
    """Path of a real program the test runs; fail (never skip) when it is not installed."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    pytest.fail(f"{name} is not installed: run `make test` (it installs the Debian packages)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for each backend: a file for SQLite, a fresh database on PostgreSQL
    (the test module imports ``postgres_url`` from ``pg``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'postwatch.db'}"
    else:
        yield request.getfixturevalue("postgres_url")
