"""Lock backend: a Postfix ``check_sasl_access`` map that postwatch owns.

The file holds one ``user REJECT text`` line per locked account.  After each change it is
compiled with ``postmap`` (for indexed types: hash, btree, lmdb, cdb; texthash is read as
text by Postfix and needs none) and the result is checked with ``postmap -q``, so a lock is
only reported once Postfix itself would answer REJECT for that login.

Postfix consults it when ``smtpd_sender_restrictions`` (or the recipient restrictions) of
every service that accepts SASL logins lists ``check_sasl_access type:path`` before
``permit_sasl_authenticated``.
"""

from __future__ import annotations

from pathlib import Path

from postwatch.actions.listfile import ListFile, advance_mtime, mtime_seconds
from postwatch.actions.program import run_program
from postwatch.actions.subject import account
from postwatch.errors import ActionError, ConfigError

INDEXED_TYPES = ("hash", "btree", "lmdb", "cdb")
TEXT_TYPES = ("texthash",)
DEFAULT_REJECT = "REJECT 5.7.1 Account disabled after suspected compromise; contact the postmaster"
HEADER = (
    "# Postfix check_sasl_access map maintained by postwatch: do not edit by hand, use\n"
    "# `postwatch lock USER` and `postwatch unlock USER` (changes here are overwritten)."
)


class PostfixSaslMap:
    """Locks a login by listing it in a ``check_sasl_access`` map."""

    name = "postfix-map"

    def __init__(
        self,
        path: str | Path,
        *,
        map_type: str = "hash",
        reject: str = DEFAULT_REJECT,
        postmap: str = "postmap",
        config_dir: str | Path | None = None,
    ) -> None:
        if map_type not in INDEXED_TYPES + TEXT_TYPES:
            raise ConfigError(
                f"unsupported map type {map_type!r}: use one of "
                f"{', '.join(INDEXED_TYPES + TEXT_TYPES)}",
                key="type",
            )
        if not reject.startswith(
            ("REJECT", "DEFER", "421 ", "450 ", "454 ", "550 ", "554 ")
        ) or any(not char.isprintable() for char in reject):
            raise ConfigError(
                "must be one printable line starting with REJECT, DEFER or an SMTP code",
                key="reject",
            )
        self.path = Path(path)
        self.map_type = map_type
        self.reject = reject
        self.postmap = postmap
        self.config_args = ["-c", str(config_dir)] if config_dir else []
        self.file = ListFile(self.path, render=lambda user: f"{user} {self.reject}", header=HEADER)

    @property
    def map_name(self) -> str:
        """The name Postfix knows it by: ``hash:/etc/postfix/postwatch_sasl_access``."""
        return f"{self.map_type}:{self.path}"

    def lock(self, user: str) -> str:
        user = account(user)
        added = self.file.add(user)
        if added or self._stale() or self._lookup(user) is None:
            self._compile()
        answer = self._lookup(user)
        if answer is None or not answer.startswith(self.reject.split()[0]):
            raise ActionError(
                f"{self.map_name}: postmap -q {user} answered {answer!r} after the lock was written"
            )
        return (
            f"{user} added to {self.map_name}"
            if added
            else f"{user} was already in {self.map_name}"
        )

    def unlock(self, user: str) -> str:
        user = account(user)
        removed = self.file.remove(user)
        if removed or self._stale() or self._lookup(user) is not None:
            self._compile()
        if self._lookup(user) is not None:
            raise ActionError(
                f"{self.map_name}: postmap -q {user} still answers after the unlock was written"
            )
        return (
            f"{user} removed from {self.map_name}"
            if removed
            else f"{user} was not in {self.map_name}"
        )

    def is_locked(self, user: str) -> bool | None:
        user = account(user)
        return self.file.contains(user)

    def _stale(self) -> bool:
        """Whether the map is missing, or its index is missing or older than the text."""
        if not self.path.exists():
            return True
        if self.map_type not in INDEXED_TYPES:
            return False
        index = _index_path(self.path, self.map_type)
        try:
            return index.stat().st_mtime_ns < self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return True

    def _compile(self) -> None:
        if not self.path.exists():
            self.file.write([])
        if self.map_type in INDEXED_TYPES:
            index = _index_path(self.path, self.map_type)
            before = mtime_seconds(index)
            run_program([self.postmap, *self.config_args, self.map_name])
            # Postfix daemons restart when an index's whole-second mtime changes.
            advance_mtime(index, before)

    def _lookup(self, user: str) -> str | None:
        """What Postfix answers for ``user`` (None: not found)."""
        if not self.path.exists():
            return None
        if self.map_type in INDEXED_TYPES and not _index_path(self.path, self.map_type).exists():
            return None
        result = run_program(
            [self.postmap, *self.config_args, "-q", user, self.map_name], ok=(0, 1)
        )
        return result.stdout.strip() if result.returncode == 0 else None


def _index_path(path: Path, map_type: str) -> Path:
    suffix = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}[map_type]
    return path.with_name(path.name + suffix)
