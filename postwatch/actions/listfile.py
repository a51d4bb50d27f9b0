"""A text file that postwatch owns: one entry per line, replaced atomically.

The Postfix ``check_sasl_access`` map and the Dovecot deny passwd-file are both lists of
accounts that postwatch rewrites.  A reader (postmap, Dovecot) must never see half a file,
so every change writes a temporary file in the same directory, flushes it to disk, gives it
the old file's mode and owner, and renames it over the old one.

Readers notice a change by the file's modification time in whole seconds (Dovecot's
passwd-file, Postfix's indexed maps), so two changes within one second could look like
none: :func:`advance_mtime` moves the new version's time past the old one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from postwatch.errors import ActionError

DEFAULT_MODE = 0o644


class ListFile:
    """Entries keyed by their first word; lines starting with ``#`` are comments.

    ``render`` turns a key into its line (``alice@example.com REJECT ...``); ``header`` is
    written at the top of every version of the file.
    """

    def __init__(self, path: str | Path, *, render: Callable[[str], str], header: str = "") -> None:
        self.path = Path(path)
        self.render = render
        self.header = header

    def keys(self) -> list[str]:
        """The keys now in the file, in file order (an absent file has none)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ActionError(f"{self.path}: cannot read: {exc}") from exc
        keys = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                keys.append(stripped.split()[0])
        return keys

    def contains(self, key: str) -> bool:
        return key in self.keys()

    def add(self, key: str) -> bool:
        """Add ``key``; False (and the file untouched) if it was already there."""
        keys = self.keys()
        if key in keys:
            return False
        self.write([*keys, key])
        return True

    def remove(self, key: str) -> bool:
        """Remove ``key``; False (and the file untouched) if it was not there."""
        keys = self.keys()
        if key not in keys:
            return False
        self.write([k for k in keys if k != key])
        return True

    def write(self, keys: Iterable[str]) -> None:
        """Replace the file with ``keys``, atomically, keeping its mode and owner."""
        lines = [self.header.rstrip("\n")] if self.header else []
        lines += [self.render(key) for key in keys]
        text = "\n".join(lines) + "\n"
        directory = self.path.parent
        try:
            old = self.path.stat()
        except FileNotFoundError:
            old = None
        except OSError as exc:
            raise ActionError(f"{self.path}: cannot stat: {exc}") from exc
        try:
            fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        except OSError as exc:
            raise ActionError(f"{self.path}: cannot create a file in {directory}: {exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if old is not None:
                os.chmod(temp_name, old.st_mode & 0o7777)
                if (old.st_uid, old.st_gid) != _owner(temp_name):
                    os.chown(temp_name, old.st_uid, old.st_gid)
            else:
                os.chmod(temp_name, DEFAULT_MODE)
            os.replace(temp_name, self.path)
        except OSError as exc:
            _unlink_quietly(temp_name)
            raise ActionError(f"{self.path}: cannot replace: {exc}") from exc
        _fsync_directory(directory)
        advance_mtime(self.path, int(old.st_mtime) if old is not None else None)


def mtime_seconds(path: Path) -> int | None:
    """``path``'s modification time in whole seconds, None if it does not exist."""
    try:
        return int(path.stat().st_mtime)
    except FileNotFoundError:
        return None


def advance_mtime(path: Path, previous: int | None) -> None:
    """Make ``path``'s whole-second modification time later than ``previous``."""
    if previous is None:
        return
    current = mtime_seconds(path)
    if current is not None and current <= previous:
        try:
            os.utime(path, (previous + 1, previous + 1))
        except OSError as exc:
            raise ActionError(f"{path}: cannot set its modification time: {exc}") from exc


def _owner(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
