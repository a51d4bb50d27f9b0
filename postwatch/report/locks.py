"""Which accounts are locked now, read from the action journal without writing to it.

An account is locked in a backend when the last ``lock:<backend>`` or ``unlock:<backend>``
entry for it (``started`` or ``done``) is a lock: the rule ``postwatch unlock`` follows.
The journal is found where ``watch`` and the ``lock`` and ``unlock`` commands put it:
``[actions] journal``, else the state store's database (``--db``, ``$POSTWATCH_DB``,
``[store] url``, ``postwatch.db`` in the state directory).  A missing journal means nothing
was ever locked; a report never creates one.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from postwatch.actions.journal import JournalEntry, SqlJournal, journal_table
from postwatch.actions.settings import ActionsSettings
from postwatch.config import StoreSettings
from postwatch.errors import StoreError
from postwatch.report.model import LockRow
from postwatch.store.database import open_engine, resolve_url

LIVE_STATES = ("started", "done")


def journal_url(store: StoreSettings, actions: ActionsSettings, cli_url: str | None = None) -> str:
    """The action journal's database URL, found as watch and the action commands find it
    (``cli_url``: the report's ``--db``, the database watch was given)."""
    return actions.journal or resolve_url(cli_url, store)


def current_locks(entries: list[JournalEntry]) -> list[LockRow]:
    """The locks still in force after ``entries`` (any order), oldest lock first."""
    last: dict[tuple[str, str], JournalEntry] = {}
    for entry in sorted(entries, key=lambda item: item.id):
        verb, _, backend = entry.action.partition(":")
        if verb in ("lock", "unlock") and backend and entry.state in LIVE_STATES:
            last[(entry.subject, backend)] = entry
    held: dict[str, list[JournalEntry]] = {}
    for (subject, _backend), entry in last.items():
        if entry.action.startswith("lock:"):
            held.setdefault(subject, []).append(entry)
    rows = []
    for subject, locks in held.items():
        first = min(locks, key=lambda item: item.started)
        newest = max(locks, key=lambda item: item.id)
        rows.append(
            LockRow(
                account=subject,
                backends=tuple(sorted(entry.action.partition(":")[2] for entry in locks)),
                since=first.started,
                actor=newest.actor,
                reason=newest.reason,
                incident=newest.incident,
            )
        )
    return sorted(rows, key=lambda row: (row.since, row.account))


def read_locks(url: str) -> tuple[list[LockRow], str]:
    """The current locks in the journal at ``url``, and a note when there is no journal."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            return [], f"no action journal at {path}: no account was ever locked there"
    try:
        engine = open_engine(url)
    except StoreError as exc:
        raise StoreError(f"cannot open the action journal: {_first_line(exc)}") from exc
    try:
        if not sqlalchemy.inspect(engine).has_table(journal_table().name):
            return [], "the action journal database has no journal table yet: nothing was locked"
        journal = SqlJournal(url, engine=engine)
        entries = journal.entries(action="lock:") + journal.entries(action="unlock:")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the action journal: {_first_line(exc)}") from exc
    finally:
        engine.dispose()
    return current_locks(entries), ""


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
