"""Lock backend: a Dovecot deny passdb that postwatch owns, then ``doveadm kick``.

The file is a passwd-file with one username per line, consulted by a ``deny = yes`` passdb
placed before the real one::

    passdb {
      driver = passwd-file
      args = /etc/dovecot/postwatch-deny
      deny = yes
    }

Dovecot re-reads a passwd-file when its size or modification time changes, checking at most
once a second; postwatch then flushes the user from the auth cache (``doveadm auth cache
flush``) and ends the user's open IMAP/POP3 sessions (``doveadm kick``).
"""

from __future__ import annotations

from pathlib import Path

from postwatch.actions.listfile import ListFile
from postwatch.actions.program import run_program
from postwatch.actions.subject import account
from postwatch.errors import ActionError

HEADER = (
    "# Dovecot deny passdb (passwd-file, deny = yes) maintained by postwatch: use\n"
    "# `postwatch lock USER` and `postwatch unlock USER` (changes here are overwritten)."
)
# doveadm exits with EX_NOUSER when kick found no session of that user: an answer, not an error.
EX_NOUSER = 68


class DovecotDeny:
    """Locks a login by listing it in Dovecot's deny passdb and kicking its sessions."""

    name = "dovecot"

    def __init__(
        self,
        path: str | Path,
        *,
        doveadm: str = "doveadm",
        config: str | Path | None = None,
        kick: bool = True,
        flush_cache: bool = True,
    ) -> None:
        self.path = Path(path)
        self.doveadm = doveadm
        self.config_args = ["-c", str(config)] if config else []
        self.kick = kick
        self.flush_cache = flush_cache
        self.file = ListFile(self.path, render=lambda user: user, header=HEADER)

    def lock(self, user: str) -> str:
        user = account(user)
        added = self.file.add(user)
        done = [f"{user} added to {self.path}" if added else f"{user} was already in {self.path}"]
        try:
            if self.flush_cache:
                done.append(self._flush(user))
            if self.kick:
                done.append(self._kick(user))
        except ActionError as exc:
            raise ActionError(f"{'; '.join(done)}; but {exc}") from exc
        return "; ".join(done)

    def unlock(self, user: str) -> str:
        user = account(user)
        removed = self.file.remove(user)
        done = [f"{user} removed from {self.path}" if removed else f"{user} was not in {self.path}"]
        if self.flush_cache:
            try:
                done.append(self._flush(user))
            except ActionError as exc:
                raise ActionError(f"{'; '.join(done)}; but {exc}") from exc
        return "; ".join(done)

    def is_locked(self, user: str) -> bool | None:
        user = account(user)
        return self.file.contains(user)

    def _doveadm(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        result = run_program([self.doveadm, *self.config_args, *args], ok=ok)
        # doveadm reports some failures (auth-master unreachable) on stderr with status 0.
        errors = [
            line for line in result.stderr.splitlines() if line.startswith(("Error:", "Fatal:"))
        ]
        if errors:
            raise ActionError(f"doveadm {args[0]}: {errors[-1]}")
        return " ".join(result.stdout.split())

    def _flush(self, user: str) -> str:
        answer = self._doveadm("auth", "cache", "flush", user)
        return f"auth cache: {answer}" if answer else "auth cache flushed"

    def _kick(self, user: str) -> str:
        answer = self._doveadm("kick", user, ok=(0, EX_NOUSER))
        return f"kick: {answer}" if answer else "kicked"
