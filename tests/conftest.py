"""Shared fixtures: where the real-log corpus is, and the real programs the tests run."""

from __future__ import annotations

import shutil
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
