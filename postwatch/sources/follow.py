"""Following live log files across rotation, truncation and restarts (``postwatch watch``).

A :class:`FileFollower` returns the complete lines appended to one path since it was last
asked; a partial last line is left where it is until its newline arrives.  What it does
when the file changes under it::

    rename + create   mail.log -> mail.log.1, a new   the open descriptor is read to its end;
                      mail.log                        once the new file has data (the writer
                                                      has moved) the old one is finished and
                                                      the new one read from byte 0
    copytruncate      mail.log copied to mail.log.1,  the copy is found by the hash of its first
                      then cut to 0 bytes             line and read from the old offset, then
                                                      the live file from byte 0
    truncation        cut without a copy, or the      a warning, and the live file from byte 0
                      copy is gone
    file missing      not created yet, or between     waits; a file that appears later is read
                      rename and create               from byte 0
    restart           (a :class:`Position`)           the file is found wherever it is now
                                                      (mail.log, mail.log.1, mail.log.2.gz) and
                                                      finished, then every newer rotation

A position is the device and inode, the byte offset of the first unread line and the SHA-256
of the file's first line (fail2ban's idea).  Inode numbers are reused as soon as a file is
deleted and a truncated file keeps its inode, so the inode alone never proves that a file is
the one that was being read; the first line does.

pygtail was evaluated for this and not used: it keys a file by inode and offset only (a
reused inode, or copytruncate followed by growth past the old offset, makes it resume mid-line
in the wrong file), it notices copytruncate only when constructed, and it stops at the first
byte that is not valid in its encoding.  Log lines carry attacker bytes; they are decoded
here as UTF-8 with replacement characters.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections import deque
from collections.abc import Sequence
from typing import IO, Any, BinaryIO, NamedTuple

from postwatch.clock import Clock, SystemClock
from postwatch.records import LogLine
from postwatch.sources.files import rotation_order
from postwatch.sources.journal import JOURNAL_ORIGIN, JOURNALCTL, journal_entry, journalctl_command

log = logging.getLogger(__name__)

HEAD_LIMIT = 4096  # bytes of the first line that identify a file
READ_CHUNK = 256 * 1024
MAX_LINE = 64 * 1024  # a longer run of bytes without a newline is cut into lines this long
MAX_JOURNAL_LINE = 16 * 1024 * 1024  # journalctl JSON lines are long with --all

_COMPRESSION = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
# What logrotate and friends append to a rotated file's name: .1  .2.gz  -20261101
# -2026110112.xz  -20261101-1730000000  .2026-11-01
_ROTATED_SUFFIX = re.compile(r"[.\-_]\d[\d\-]*(?:\.(?:gz|bz2|xz))?")

LIVE, DRAINING, FINISHING = "live", "draining", "finishing"


class RawLine(NamedTuple):
    """One complete line as read, before framing; ``origin`` names the file it came from."""

    text: str
    lineno: int
    origin: str


class Position(NamedTuple):
    """Where reading one followed path stands: what a checkpoint keeps for a file source."""

    device: int = 0
    inode: int = 0
    offset: int = 0  # bytes consumed: where the first unread line starts
    head: str = ""  # SHA-256 of the first line; "" while it is incomplete
    lineno: int = 0

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: object) -> Position:
        """A Position from :meth:`to_json` output; ``ValueError`` when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a file position must be an object")
        values = []
        for name, default in zip(cls._fields, cls._field_defaults.values(), strict=True):
            value = data.get(name, default)
            if type(value) is not type(default) or (isinstance(value, int) and value < 0):
                raise ValueError(f"bad {name} in a file position: {value!r}")
            values.append(value)
        return cls(*values)


def _decompressor(kind: str, raw: BinaryIO) -> io.BufferedIOBase:
    # the decompressors leave ``raw`` open when they are dropped: _Handle closes it
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    return lzma.LZMAFile(raw, mode="rb")


class _Handle:
    """One open log file: positional reads when plain, a forward stream when compressed."""

    def __init__(self, path: str) -> None:
        self.name = path
        self._raw: BinaryIO = open(path, "rb", buffering=0)  # noqa: SIM115  # closed by close()
        try:
            info = os.fstat(self._raw.fileno())
            magic = os.pread(self._raw.fileno(), 6, 0)
        except OSError:
            self._raw.close()
            raise
        self.identity = (info.st_dev, info.st_ino)
        self._kind = next((kind for sig, kind in _COMPRESSION if magic.startswith(sig)), "")
        self._stream: io.BufferedIOBase | None = None
        self._stream_at = 0

    @property
    def compressed(self) -> bool:
        return bool(self._kind)

    def size(self) -> int | None:
        """Bytes in the file now; None for a compressed file (its text length is unknown)."""
        return None if self._kind else os.fstat(self._raw.fileno()).st_size

    def stat(self) -> os.stat_result:
        return os.fstat(self._raw.fileno())

    def read_at(self, offset: int, size: int) -> bytes:
        if not self._kind:
            return os.pread(self._raw.fileno(), size, offset)
        try:
            if self._stream is None or offset < self._stream_at:
                self._raw.seek(0)
                self._stream = _decompressor(self._kind, self._raw)
                self._stream_at = 0
            while self._stream_at < offset:
                skipped = self._stream.read(min(READ_CHUNK, offset - self._stream_at))
                if not skipped:
                    return b""
                self._stream_at += len(skipped)
            data = self._stream.read(size)
        except _DECOMPRESS_ERRORS as exc:
            log.warning("%s: cannot decompress past byte %d: %s", self.name, offset, exc)
            return b""
        self._stream_at += len(data)
        return data

    def head(self) -> str:
        """SHA-256 of the first line (at most HEAD_LIMIT bytes); "" while it is incomplete."""
        data = self.read_at(0, HEAD_LIMIT)
        newline = data.find(b"\n")
        if newline >= 0:
            return hashlib.sha256(data[: newline + 1]).hexdigest()
        return hashlib.sha256(data).hexdigest() if len(data) >= HEAD_LIMIT else ""

    def close(self) -> None:
        self._raw.close()


def _open(path: str) -> _Handle | None:
    try:
        return _Handle(path)
    except FileNotFoundError:
        return None


def rotated_siblings(path: str) -> list[str]:
    """The rotated copies of ``path`` in its folder (``mail.log.1``, ...), oldest first."""
    folder, base = os.path.split(path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    found = [
        os.path.join(folder, name)
        for name in names
        if name.startswith(base) and _ROTATED_SUFFIX.fullmatch(name, len(base))
    ]
    return rotation_order(found)


class FileFollower:
    """Follow one path: each :meth:`read` returns the complete lines written since the last.

    ``start`` is a :class:`Position` saved by an earlier run; without one, reading starts at
    the end of the file (its last complete line), or at its first byte with ``from_start``.
    """

    def __init__(
        self, path: str, start: Position | None = None, *, from_start: bool = False
    ) -> None:
        self.path = path
        self.mode = LIVE
        self.error = ""  # why the file cannot be read now, "" when it can
        self._handle: _Handle | None = None
        self._offset = 0
        self._head = ""
        self._lineno = 0
        self._pending: list[str] = []  # files to read after the current one; the live path last
        self._seen: tuple[int, int] | None = None  # (size, mtime) at the last truncation check
        self._start: Position | None = None  # a saved position not placed yet
        self._at_end = not from_start and start is None
        if start is None:
            self._open_live(at_end=self._at_end)
        else:
            self._resume(start)

    # --- the public face -------------------------------------------------------------------

    def read(self, max_lines: int) -> list[RawLine]:
        """Up to ``max_lines`` new complete lines, in file order."""
        out: list[RawLine] = []
        while len(out) < max_lines:
            if self._handle is None and not self._reopen():
                break
            if self.mode == LIVE and self._truncated():
                continue
            if self._read_lines(out, max_lines) or len(out) >= max_lines:
                continue
            if not self._next_file(out):
                break
        return out

    def position(self) -> Position:
        """Where the next :meth:`read` starts; saved with the state the lines produced."""
        if self._handle is None:
            return Position()
        device, inode = self._handle.identity
        return Position(device, inode, self._offset, self._head, self._lineno)

    def lag(self) -> int:
        """Bytes written to the followed files and not read yet (compressed ones excluded)."""
        lag = 0
        if self._handle is not None and not self._handle.compressed:
            lag += max(0, (self._handle.size() or 0) - self._offset)
        waiting = list(self._pending)
        if self.mode == DRAINING:
            waiting.append(self.path)
        for name in waiting:
            try:
                info = os.stat(name)
            except OSError:
                continue
            if self._handle is None or (info.st_dev, info.st_ino) != self._handle.identity:
                lag += info.st_size
        return lag

    @property
    def current(self) -> str:
        """The file being read now (a rotated name while finishing one)."""
        return self._handle.name if self._handle is not None else self.path

    @property
    def offset(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # --- reading ---------------------------------------------------------------------------

    def _read_lines(self, out: list[RawLine], max_lines: int) -> bool:
        """Read complete lines into ``out``; False when the current file has no more."""
        assert self._handle is not None
        data = self._handle.read_at(self._offset, READ_CHUNK)
        end = data.rfind(b"\n")
        origin = self._handle.name
        if end < 0:
            if len(data) < MAX_LINE:
                return False
            self._emit(out, data[:MAX_LINE], origin, newline=False)  # a runaway line: cut it
            return True
        for part in data[:end].split(b"\n"):
            self._emit(out, part, origin)
            if len(out) >= max_lines:
                break
        return True

    def _emit(self, out: list[RawLine], part: bytes, origin: str, *, newline: bool = True) -> None:
        self._lineno += 1
        self._offset += len(part) + newline
        text = part.decode("utf-8", errors="replace")
        out.append(RawLine(text[:-1] if text.endswith("\r") else text, self._lineno, origin))
        if not self._head and self._handle is not None:
            self._head = self._handle.head()

    def _finish_partial(self, out: list[RawLine]) -> None:
        """A file nobody writes any more may end without a newline: that is its last line."""
        assert self._handle is not None
        rest = self._handle.read_at(self._offset, MAX_LINE)
        if rest:
            self._emit(out, rest, self._handle.name, newline=False)

    # --- changing files --------------------------------------------------------------------

    def _next_file(self, out: list[RawLine]) -> bool:
        """At the end of the current file: move on if it was rotated; True when moved."""
        assert self._handle is not None
        if self.mode == FINISHING:
            self._finish_partial(out)
            following = self._pending.pop(0) if self._pending else self.path
            self._switch(None if following == self.path else following, at_end=False)
            return True
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self.mode = DRAINING  # renamed away, not created again yet
            return False
        except OSError as exc:
            self._fail(f"cannot stat {self.path}: {exc.strerror or exc}")
            return False
        if (info.st_dev, info.st_ino) == self._handle.identity:
            self.mode = LIVE
            return False
        if info.st_size == 0:
            self.mode = DRAINING  # the writer still writes to the renamed file
            return False
        # The writer has moved to the new file: finish the renamed one, then read the new one.
        self.mode = FINISHING
        self._pending = [self.path]
        return True

    def _switch(
        self, name: str | None, *, at_end: bool, offset: int = 0, start: Position | None = None
    ) -> None:
        """Close the current file and open ``name`` (a rotated file) or the live path."""
        self.close()
        self._offset, self._head, self._lineno, self._seen = offset, "", 0, None
        if start is not None:
            self._head, self._lineno = start.head, start.lineno
        if name is None:
            self._pending = []
            self.mode = LIVE
            self._open_live(at_end=at_end)
            return
        self._handle = _open(name)
        self.mode = FINISHING
        if self._handle is None:  # rotated away again: go on with the next one
            following = self._pending.pop(0) if self._pending else self.path
            self._switch(None if following == self.path else following, at_end=False)

    def _reopen(self) -> bool:
        """No file open: resume a saved position, or open the live path; True when open."""
        if self._start is not None:
            self._resume(self._start)
            return self._handle is not None
        return self._open_live(at_end=self._at_end)

    def _open_live(self, *, at_end: bool) -> bool:
        try:
            handle = _Handle(self.path)
        except FileNotFoundError:
            self._at_end = False  # a file that appears later is read from its first byte
            self.error = ""
            return False
        except OSError as exc:
            self._fail(f"cannot open {self.path}: {exc.strerror or exc}")
            return False
        self.error = ""
        self._handle, self.mode, self._at_end = handle, LIVE, False
        self._offset = self._lineno = 0
        self._head, self._seen = "", None
        if at_end:
            size = handle.size() or 0
            tail = handle.read_at(max(0, size - MAX_LINE), MAX_LINE)
            self._offset = size - len(tail) + tail.rfind(b"\n") + 1
            if self._offset:
                self._head = handle.head()
        return True

    def _truncated(self) -> bool:
        """Check the live file for truncation; True when reading moved elsewhere."""
        assert self._handle is not None
        info = self._handle.stat()
        seen = (info.st_size, info.st_mtime_ns)
        if seen == self._seen:
            return False
        self._seen = seen
        if not self._offset or (info.st_size >= self._offset and self._handle.head() == self._head):
            return False
        try:
            copy = self._find(Position(0, 0, self._offset, self._head), rotated_siblings(self.path))
        except OSError as exc:
            log.warning("%s: cannot look for its rotated copy: %s", self.path, exc)
            copy = None
        if copy is None:
            log.warning(
                "%s was truncated and no rotated copy starts with its first line:"
                " reading it from the start; lines after byte %d may be lost",
                self.path,
                self._offset,
            )
            self._switch(None, at_end=False)
        else:
            log.info("%s was truncated (copytruncate): finishing %s first", self.path, copy)
            self._switch(
                copy,
                at_end=False,
                offset=self._offset,
                start=Position(0, 0, self._offset, self._head, self._lineno),
            )
        return True

    def _resume(self, start: Position) -> None:
        """Find the file a saved position belongs to, wherever rotation has put it.

        While a candidate cannot be read (permissions), the position is kept and the search
        retried at the next read: reading from the start instead would count lines twice.
        """
        self._start = start
        chain = [*rotated_siblings(self.path), self.path]
        try:
            found = self._find(start, chain, by_inode=True)
            handle = _open(found) if found is not None else None
        except OSError as exc:
            self._fail(f"cannot resume {self.path}: {exc.strerror or exc}")
            return
        self._start = None
        if found is None or handle is None:
            if start.offset or start.head:
                log.warning(
                    "%s: the file being read at the last checkpoint (byte %d) is gone:"
                    " reading %s from the start",
                    self.path,
                    start.offset,
                    self.path,
                )
            self._open_live(at_end=False)
            return
        self.error = ""
        self._pending = chain[chain.index(found) + 1 :]
        self._handle, self.mode = handle, LIVE if found == self.path else FINISHING
        self._offset, self._head, self._lineno = start.offset, start.head, start.lineno

    def _find(self, start: Position, names: list[str], *, by_inode: bool = False) -> str | None:
        """The file among ``names`` that ``start`` was reading: the same inode with the same
        first line first, then the same first line (plain files, then compressed ones) in a
        file at least as long as the offset.  Without a first line only the inode can tell.

        ``OSError`` other than a missing file is raised: the search cannot conclude.
        """
        plain: list[str] = []
        packed: list[str] = []
        for name in reversed(names):  # newest first: the likeliest place
            try:
                info = os.stat(name)
            except FileNotFoundError:
                continue
            same_inode = (info.st_dev, info.st_ino) == (start.device, start.inode)
            if by_inode and same_inode and self._matches(name, start):
                return name
            if start.head:
                (packed if name.endswith((".gz", ".bz2", ".xz")) else plain).append(name)
        for name in plain + packed:
            if self._matches(name, start):
                return name
        return None

    @staticmethod
    def _matches(name: str, start: Position) -> bool:
        handle = _open(name)
        if handle is None:
            return False
        try:
            if not start.head:
                return start.offset == 0
            if handle.head() != start.head:
                return False
            size = handle.size()
            return size is None or size >= start.offset
        finally:
            handle.close()

    def _fail(self, message: str) -> None:
        if message != self.error:
            log.error("%s", message)
        self.error = message


class JournalFollower:
    """Follow the systemd journal with ``journalctl -o json --follow``, resuming by cursor.

    journalctl runs from an argv list (never a shell); its output is read without blocking,
    so the watch loop polls it like a file.  Each entry's ``__CURSOR`` is the position: a
    restart passes ``--after-cursor``.  When journalctl exits it is started again after
    ``restart_delay`` seconds, from the last cursor read.
    """

    def __init__(
        self,
        cursor: str | None = None,
        *,
        units: Sequence[str] = (),
        identifiers: Sequence[str] = (),
        from_start: bool = False,
        executable: str = JOURNALCTL,
        clock: Clock | None = None,
        restart_delay: float = 5.0,
    ) -> None:
        self.cursor = cursor if cursor and _valid_cursor(cursor) else None
        self.error = ""
        self.malformed = 0  # lines that were not usable journal entries
        self._argv = journalctl_command(units, identifiers, follow=True, executable=executable)
        if self.cursor:
            self._argv += [f"--after-cursor={self.cursor}", "--no-tail"]
        else:
            self._argv.append("--no-tail" if from_start else "--lines=0")
        self._clock = clock or SystemClock()
        self._restart_delay = restart_delay
        self._restart_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._partial = b""
        self._lines: deque[bytes] = deque()
        self._count = 0

    def read(self, max_lines: int) -> list[LogLine]:
        """Up to ``max_lines`` new entries as LogLines; never waits for journalctl."""
        out: list[LogLine] = []
        while len(out) < max_lines:
            if not self._lines and not self._fill():
                break
            raw = self._lines.popleft()
            try:
                entry = json.loads(raw)
                cursor = entry.get("__CURSOR") if isinstance(entry, dict) else None
                line = journal_entry(entry, JOURNAL_ORIGIN, self._count + 1)
            except (ValueError, RecursionError):
                self.malformed += 1
                continue
            if isinstance(cursor, str) and _valid_cursor(cursor):
                self.cursor = cursor
            if line is not None:
                self._count += 1
                out.append(line)
        return out

    def _fill(self) -> bool:
        """Read what journalctl has written; True when there are whole lines to take."""
        process = self._process
        if process is None:
            if self._clock.monotonic() < self._restart_at:
                return False
            process = self._start()
            if process is None:
                return False
        assert process.stdout is not None
        try:
            chunk = os.read(process.stdout.fileno(), READ_CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            self._ended()
            return False
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_JOURNAL_LINE:  # not JSON lines any more: drop it
            self.malformed += 1
            self._partial = b""
        self._lines.extend(part for part in parts if part.strip())
        return bool(self._lines)

    def _start(self) -> subprocess.Popen[bytes] | None:
        program = shutil.which(self._argv[0])
        if program is None:
            self._failed(f"cannot read the journal: {self._argv[0]} not found")
            return None
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115  # closed in _ended()/close()
        try:
            process = subprocess.Popen(
                [program, *self._argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._errors,
            )
        except OSError as exc:
            self._failed(f"cannot run {self._argv[0]}: {exc.strerror or exc}")
            return None
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self._process = process
        self.error = ""
        return process

    def _ended(self) -> None:
        status = self._stop()
        complaint = ""
        if self._errors is not None:
            self._errors.seek(0)
            complaint = self._errors.read(4096).decode("utf-8", errors="replace").strip()
            self._errors.close()
            self._errors = None
        first = complaint.splitlines()[0] if complaint else "no message"
        self._failed(f"{self._argv[0]} exited with status {status}: {first}")

    def _failed(self, message: str) -> None:
        if message != self.error:
            log.error("%s", message)
        self.error = message
        self._restart_at = self._clock.monotonic() + self._restart_delay
        if self.cursor:  # start again after the last entry read, not from the tail
            self._argv = [
                arg
                for arg in self._argv
                if not arg.startswith(("--after-cursor=", "--lines=", "--no-tail"))
            ]
            self._argv += [f"--after-cursor={self.cursor}", "--no-tail"]

    key = "journal"  # where a checkpoint keeps its position

    def position(self) -> dict[str, str]:
        return {"cursor": self.cursor} if self.cursor else {}

    def report(self) -> dict[str, Any]:
        """What ``postwatch status`` shows about it."""
        return {
            "name": "journal",
            "kind": "journal",
            "cursor": self.cursor,
            "lag_bytes": None,
            "malformed": self.malformed,
            "error": self.error,
        }

    def fileno(self) -> int | None:
        """The descriptor to wait on for new entries, while journalctl runs."""
        if self._process is None or self._process.stdout is None:
            return None
        return self._process.stdout.fileno()

    def close(self) -> int | None:
        """Stop journalctl and drop what it said on stderr; its exit status."""
        status = self._stop()
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        return status

    def _stop(self) -> int | None:
        """Stop journalctl; its exit status."""
        process, self._process = self._process, None
        self._partial = b""
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        status = process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return status


def _valid_cursor(cursor: str) -> bool:
    return len(cursor) <= 1024 and cursor.isprintable() and cursor.isascii()
