"""postwatch's one exception tree.

::

    PostwatchError                 anything postwatch reports to the user (exit 1)
     +-- UsageError                bad command line or arguments (exit 2)
     |    +-- InputError           a log source that cannot be opened or read (exit 2)
     +-- ConfigError               a bad config file: names the file, line and key (exit 2)
     +-- StoreError                the state database failed
     +-- ActionError               a lock/hold/notify/ban action failed
     |    +-- UnsafeSubjectError   a subject that must never reach a map, SQL, command or message
     +-- AuditError                postconf could not be run or its output read

Third-party errors are wrapped at the boundary with ``raise ... from exc`` so the
CLI maps every failure to a one-line message and an exit code.
"""

from __future__ import annotations


class PostwatchError(Exception):
    """Base of every error postwatch reports to the user."""

    exit_code = 1


class UsageError(PostwatchError):
    """Bad command line or arguments."""

    exit_code = 2


class InputError(UsageError):
    """A log source that cannot be opened or read; the message names the file."""


class ConfigError(PostwatchError):
    """A bad config file or setting; the message names the file, line and key."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = ":".join(str(part) for part in (path, line) if part is not None)
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")
        self.path = path
        self.line = line
        self.key = key


class StoreError(PostwatchError):
    """The state database failed."""


class ActionError(PostwatchError):
    """A lock, hold, notify or ban action failed."""


class UnsafeSubjectError(ActionError):
    """A subject (username, IP) that must never reach a map file, SQL, a command or a message."""


class AuditError(PostwatchError):
    """postconf could not be run, or its saved output could not be read."""
