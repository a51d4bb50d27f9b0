"""Lock backend: a configured command, run with an argv list (never a shell).

``{user}`` inside an argument is replaced by the username; the argument stays one argv
element whatever it holds, and the username has already passed
:func:`postwatch.actions.subject.account` (so it cannot start with ``-``).
"""

from __future__ import annotations

from collections.abc import Sequence

from postwatch.actions.program import DEFAULT_TIMEOUT, run_program
from postwatch.actions.subject import account
from postwatch.errors import ConfigError

PLACEHOLDER = "{user}"


class CommandLock:
    """Locks a login by running a site-specific program."""

    name = "command"

    def __init__(
        self, lock: Sequence[str], unlock: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        for key, argv in (("lock", lock), ("unlock", unlock)):
            if not argv or not all(isinstance(part, str) and part for part in argv):
                raise ConfigError("must be a non-empty list of arguments", key=key)
            if not any(PLACEHOLDER in part for part in argv):
                raise ConfigError(f"no argument holds {PLACEHOLDER}", key=key)
        self.lock_argv = tuple(lock)
        self.unlock_argv = tuple(unlock)
        self.timeout = timeout

    def argv(self, template: Sequence[str], user: str) -> list[str]:
        """The command line for ``user``: one element per template element."""
        user = account(user)
        return [part.replace(PLACEHOLDER, user) for part in template]

    def lock(self, user: str) -> str:
        user = account(user)
        return self._run(self.lock_argv, user)

    def unlock(self, user: str) -> str:
        user = account(user)
        return self._run(self.unlock_argv, user)

    def is_locked(self, user: str) -> bool | None:
        return None

    def _run(self, template: Sequence[str], user: str) -> str:
        result = run_program(self.argv(template, user), timeout=self.timeout)
        said = " ".join(result.stdout.split())[:200]
        return f"{template[0]} ran for {user}" + (f": {said}" if said else "")
