"""The lock protocol: one small interface for every way of stopping an account.

A backend (the Postfix SASL access map, the Dovecot deny file, an SQL statement, a command)
has a ``name`` used in the journal (``lock:postfix-map``) and three operations, all given a
username that :func:`postwatch.actions.subject.account` has already accepted:

``lock(user)``
    make the account unusable; idempotent (locking a locked account changes nothing) and
    returns one line saying what it did;
``unlock(user)``
    undo ``lock``; idempotent too;
``is_locked(user)``
    True/False when the backend can tell, None when it cannot (SQL, command).

:class:`RecordingLock` is the fake for unit tests: it records calls and can be told to fail.
"""

from __future__ import annotations

from typing import Protocol

from postwatch.errors import ActionError


class LockBackend(Protocol):
    name: str

    def lock(self, user: str) -> str:
        """Lock ``user``; returns what was done."""
        ...

    def unlock(self, user: str) -> str:
        """Unlock ``user``; returns what was done."""
        ...

    def is_locked(self, user: str) -> bool | None:
        """Whether ``user`` is locked here, or None if this backend cannot tell."""
        ...


class RecordingLock:
    """A lock backend that remembers instead of acting (unit tests)."""

    def __init__(self, name: str = "recording", *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.locked: set[str] = set()

    def lock(self, user: str) -> str:
        self.calls.append(("lock", user))
        if self.fail:
            raise ActionError(f"{self.name}: told to fail")
        if user in self.locked:
            return f"{user} was already locked"
        self.locked.add(user)
        return f"locked {user}"

    def unlock(self, user: str) -> str:
        self.calls.append(("unlock", user))
        if self.fail:
            raise ActionError(f"{self.name}: told to fail")
        if user not in self.locked:
            return f"{user} was not locked"
        self.locked.discard(user)
        return f"unlocked {user}"

    def is_locked(self, user: str) -> bool | None:
        return user in self.locked
