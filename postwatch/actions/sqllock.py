"""Lock backend: configured SQL statements with bound parameters (Postfixadmin, ViMbAdmin ...).

For example, with Postfixadmin::

    lock   = "UPDATE mailbox SET active = 0 WHERE username = :user"
    unlock = "UPDATE mailbox SET active = 1 WHERE username = :user"
    check  = "SELECT active = 0 FROM mailbox WHERE username = :user"

The username is always a bound parameter (``:user``), never text pasted into the statement.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from postwatch.actions.subject import account
from postwatch.errors import ActionError, ConfigError

PARAMETER = "user"


class SqlLock:
    """Locks a login by running a statement against the account database."""

    name = "sql"

    def __init__(
        self,
        url: str,
        *,
        lock: str,
        unlock: str,
        check: str = "",
        engine: sqlalchemy.Engine | None = None,
    ) -> None:
        for key, statement in (("lock", lock), ("unlock", unlock), ("check", check)):
            if statement and f":{PARAMETER}" not in statement:
                raise ConfigError(
                    f"the statement must use the bound parameter :{PARAMETER}", key=key
                )
        try:
            self.engine = engine or sqlalchemy.create_engine(url)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ConfigError(f"cannot use database URL: {exc}", key="url") from exc
        self.lock_statement = sqlalchemy.text(lock)
        self.unlock_statement = sqlalchemy.text(unlock)
        self.check_statement = sqlalchemy.text(check) if check else None

    def lock(self, user: str) -> str:
        user = account(user)
        rows = self._execute(self.lock_statement, user)
        if rows == 0:
            raise ActionError(f"sql: the lock statement changed no row for {user}")
        return f"sql lock statement ran for {user} ({_rows(rows)})"

    def unlock(self, user: str) -> str:
        user = account(user)
        rows = self._execute(self.unlock_statement, user)
        return f"sql unlock statement ran for {user} ({_rows(rows)})"

    def is_locked(self, user: str) -> bool | None:
        user = account(user)
        if self.check_statement is None:
            return None
        try:
            with self.engine.connect() as connection:
                value = connection.execute(self.check_statement, {PARAMETER: user}).scalar()
        except SQLAlchemyError as exc:
            raise ActionError(f"sql: check statement failed: {_short(exc)}") from exc
        return None if value is None else bool(value)

    def _execute(self, statement: Any, user: str) -> int:
        try:
            with self.engine.begin() as connection:
                result = connection.execute(statement, {PARAMETER: user})
                return int(result.rowcount)
        except SQLAlchemyError as exc:
            raise ActionError(f"sql: statement failed: {_short(exc)}") from exc


def _rows(count: int) -> str:
    return "row count unknown" if count < 0 else f"{count} row{'s' if count != 1 else ''}"


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]
