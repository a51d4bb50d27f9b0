"""Log files as a source: plain or compressed files, rotation sets, and stdin.

``read_batches`` is the replay source: it puts the given files in rotation order (oldest
first), opens each one, frames every line with a fresh
:class:`~postwatch.parse.syslog.Framer` and yields lists of
:class:`~postwatch.records.LogLine`\\ s (``read_lines``: the same, one by one).

Compression is detected from the first bytes of the file, not from its name::

    1f 8b          gzip        BZh   bzip2        fd 37 7a 58 5a 00   xz

Text is decoded as UTF-8 with ``errors="replace"``: log lines carry attacker bytes, and
one bad byte must never stop a replay.  Every failure to open, read or decompress a
file becomes an :class:`~postwatch.errors.InputError` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import sys
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from itertools import chain, islice
from typing import BinaryIO, TextIO

from postwatch.clock import Clock, SystemClock
from postwatch.errors import InputError
from postwatch.parse.syslog import Framer
from postwatch.records import LogLine

STDIN = "-"
STDIN_ORIGIN = "<stdin>"
BATCH_LINES = 128  # lines framed at a time: the pipeline's batch (Pipeline.run_batches)
READ_BUFFER = 1 << 20  # bytes read from disk at a time
TEXT_CHUNK = 1 << 16  # bytes the text layer decodes at a time

_MAGIC_LENGTH = 6
_DECOMPRESSORS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_UNSUPPORTED = ((b"\x28\xb5\x2f\xfd", "zstd"),)  # detected only to name it in the error
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)

# Rotated names: "mail.log.1", "mail.log.2.gz" (numbered, higher is older) and
# "mail.log-20261101", "maillog-2026110112.gz", "mail.log-20261101-1730000000" (dateext,
# later is newer).  The compression suffix is optional; the base is everything before.
_COMPRESSED_SUFFIX = re.compile(r"\.(?:gz|bz2|xz)\Z")
_DATEEXT = re.compile(r"(?P<base>.+?)[-._](?P<date>(?:19|20)\d{6})(?P<more>\d{2}|-\d+)?\Z")
_NUMBERED = re.compile(r"(?P<base>.+)\.(?P<number>\d{1,6})\Z")


@dataclass(slots=True)
class ReadStats:
    """Counters a source fills while it reads; the CLI shows them and drives a progress bar.

    ``total_bytes`` is the on-disk size of the input files (compressed size for compressed
    files; stdin adds nothing), known before the first line is read.  ``bytes_read``
    counts the same on-disk bytes, so ``bytes_read / total_bytes`` is the fraction done.
    """

    files: int = 0
    lines: int = 0
    malformed: int = 0  # records a source could not read (journal JSON), skipped
    skipped: int = 0  # records without a message (journal), skipped
    total_bytes: int = 0
    done_bytes: int = 0  # on-disk bytes of the files already finished
    _current: BinaryIO | None = field(default=None, repr=False)

    @property
    def bytes_read(self) -> int:
        """On-disk bytes consumed so far; cheap enough to poll a few times a second."""
        current = self._current
        if current is None or current.closed:
            return self.done_bytes
        try:
            return self.done_bytes + current.tell()
        except (OSError, ValueError):  # a pipe has no position
            return self.done_bytes


class _Guarded(io.BufferedIOBase):
    """A binary reader that turns read and decompression errors into ``InputError``.

    It sits under the text layer, so the check runs once per chunk, not once per line.
    Closing it closes the decompressor and the on-disk stream under it.
    """

    # The text layer asks ``closed`` on every line; a plain attribute is much cheaper than
    # the inherited property (it took about a fifth of the text layer's time per line).
    closed = False

    def __init__(self, inner: BinaryIO, raw: BinaryIO, name: str) -> None:
        super().__init__()
        self._inner = inner
        self._raw = raw
        self._name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._inner.read(-1 if size is None else size)
        except _READ_ERRORS as exc:
            raise _input_error("cannot read", self._name, exc) from exc

    def read1(self, size: int = -1) -> bytes:
        try:
            return self._inner.read1(size)  # type: ignore[attr-defined]
        except _READ_ERRORS as exc:
            raise _input_error("cannot read", self._name, exc) from exc

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._inner.close()
            self._raw.close()
        finally:
            self.closed = True


class _Spliced(io.RawIOBase):
    """``head`` then the rest of a stream: puts back the bytes read to sniff a pipe.

    With ``owns_rest`` false, closing it leaves the stream open (stdin stays usable).
    """

    def __init__(self, head: bytes, rest: BinaryIO, *, owns_rest: bool) -> None:
        super().__init__()
        self._head = head
        self._rest = rest
        self._owns_rest = owns_rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read1(len(buffer))  # type: ignore[attr-defined]
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if self._owns_rest:
                self._rest.close()
        finally:
            super().close()


def _one_line(text: str) -> str:
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def _input_error(action: str, name: str, exc: BaseException) -> InputError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return InputError(_one_line(f"{action} {name}: {reason}"))


def _display_name(path: str) -> str:
    return STDIN_ORIGIN if path == STDIN else path


def _open_raw(path: str) -> BinaryIO:
    """The file (or stdin) as bytes, without closing the process's stdin when done."""
    if path != STDIN:
        return open(path, "rb", buffering=READ_BUFFER)
    buffer = sys.stdin.buffer
    try:
        descriptor = buffer.fileno()
    except (OSError, ValueError):  # an in-memory stdin (embedding, tests): borrow it
        return io.BufferedReader(_Spliced(b"", buffer, owns_rest=False), READ_BUFFER)
    return open(descriptor, "rb", buffering=READ_BUFFER, closefd=False)


def _sniff(raw: BinaryIO) -> tuple[bytes, BinaryIO]:
    """Read the magic bytes and return them with a stream that still starts at byte 0."""
    if raw.seekable():
        start = raw.tell()
        head = raw.read(_MAGIC_LENGTH)
        raw.seek(start)
        return head, raw
    head = raw.read(_MAGIC_LENGTH)
    return head, io.BufferedReader(_Spliced(head, raw, owns_rest=True), READ_BUFFER)


def is_compressed(raw: BinaryIO) -> bool:
    """Whether the file read from here on is compressed (in any format named here)."""
    head = raw.read(_MAGIC_LENGTH)
    return any(head.startswith(magic) for magic, _ in (*_DECOMPRESSORS, *_UNSUPPORTED))


def _decompressed(raw: BinaryIO, name: str) -> BinaryIO:
    head, stream = _sniff(raw)
    for magic, kind in _UNSUPPORTED:
        if head.startswith(magic):
            raise InputError(
                f"cannot read {name}: {kind}-compressed files are not supported;"
                f" decompress it and read it from stdin"
            )
    for magic, kind in _DECOMPRESSORS:
        if head.startswith(magic):
            if kind == "gzip":
                return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
            if kind == "bzip2":
                return bz2.BZ2File(stream, mode="rb")  # type: ignore[return-value]
            return lzma.LZMAFile(stream, mode="rb")  # type: ignore[return-value]
    return stream


class _Range(io.RawIOBase):
    """Bytes ``start`` to ``end`` of a file (``end`` None: to its end, however long)."""

    def __init__(self, path: str, start: int, end: int | None) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115  # closed by close()
        self._file.seek(start)
        self._left = end - start if end is not None else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._left is not None:
            view = view[: self._left]
        count = self._file.readinto(view) or 0
        if self._left is not None:
            self._left -= count
        return count

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def _open(path: str, span: tuple[int, int | None] | None = None) -> tuple[TextIO, BinaryIO]:
    """Open ``path`` as text; also return the on-disk stream, whose position is progress.

    With ``span`` (start, end), only those bytes of a plain file: the caller knows that it
    is one, and that ``start`` begins a line.
    """
    name = _display_name(path)
    try:
        raw: BinaryIO = (
            _open_raw(path) if span is None else io.BufferedReader(_Range(path, *span), READ_BUFFER)
        )
    except _READ_ERRORS as exc:
        raise _input_error("cannot open", name, exc) from exc
    try:
        binary = _decompressed(raw, name) if span is None else raw
    except _READ_ERRORS as exc:
        raw.close()
        raise _input_error("cannot read", name, exc) from exc
    except InputError:
        raw.close()
        raise
    guarded = _Guarded(binary, raw, name)
    text = io.TextIOWrapper(
        guarded,  # type: ignore[type-var]  # a BufferedIOBase, without a file name
        encoding="utf-8",
        errors="replace",
        newline="\n",
    )
    text._CHUNK_SIZE = TEXT_CHUNK  # type: ignore[attr-defined]  # default 8 KiB is slow
    return text, raw


def open_text(path: str) -> TextIO:
    """Open a log file (``-`` for stdin, gzip/bzip2/xz by content) as UTF-8 text.

    Lines keep their ``\\n``; a bare ``\\r`` does not end a line.  Errors while opening
    or reading raise :class:`InputError` with a one-line message naming the file.
    """
    return _open(path)[0]


# --- rotation order ------------------------------------------------------------------


def _rotation_key(path: str) -> tuple[str, tuple[int, ...]]:
    """``(group, sort key)``: files of one group sort oldest first by their key."""
    stem = _COMPRESSED_SUFFIX.sub("", path)
    dated = _DATEEXT.match(stem)
    if dated:
        more = (dated["more"] or "").lstrip("-")
        return dated["base"], (0, int(dated["date"]), int(more or 0))
    numbered = _NUMBERED.match(stem)
    if numbered:
        return numbered["base"], (1, -int(numbered["number"]), 0)
    return stem, (2, 0, 0)


def rotation_order(paths: Sequence[str]) -> list[str]:
    """Put rotation sets oldest first: dateext ascending, numbered descending, live last.

    Files are grouped by base name (``mail.log``, ``mail.log.1``, ``mail.log.2.gz`` and
    ``mail.log-20261101.gz`` are one group); groups keep the order in which their first
    file was given, and ``-`` (stdin) stays where it was given.  A path given twice is
    read twice.
    """
    groups: dict[str, list[tuple[tuple[int, ...], int, str]]] = {}
    for position, path in enumerate(paths):
        if path == STDIN:
            groups[f"\0stdin{position}"] = [((0,), position, path)]
            continue
        base, key = _rotation_key(path)
        groups.setdefault(base, []).append((key, position, path))
    return [path for members in groups.values() for _key, _pos, path in sorted(members)]


# --- reading ---------------------------------------------------------------------------


def input_size(paths: Sequence[str]) -> int:
    """The on-disk size of the regular files among ``paths`` (stdin and missing: 0)."""
    total = 0
    for path in paths:
        if path == STDIN:
            continue
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # reported when the file is opened
    return total


def _reference(raw: BinaryIO, path: str, tz: tzinfo | None, clock: Clock) -> datetime:
    """What a yearless stamp is judged against: the file's mtime, or now for a pipe."""
    if path != STDIN:
        try:
            return datetime.fromtimestamp(os.fstat(raw.fileno()).st_mtime, tz)
        except (OSError, ValueError):
            pass
    now = clock.now()
    return now.astimezone(tz) if tz is not None else now.astimezone()


def batched(lines: Iterable[LogLine]) -> Iterator[list[LogLine]]:
    """``lines`` in lists of up to ``BATCH_LINES``: what ``Pipeline.run_batches`` takes."""
    stream = iter(lines)
    return iter(lambda: list(islice(stream, BATCH_LINES)), [])


def read_file(
    path: str,
    *,
    tz: tzinfo | None,
    year: int | None = None,
    clock: Clock | None = None,
    stats: ReadStats | None = None,
) -> Generator[list[LogLine], None, None]:
    """Frame the lines of one file (or ``-``), numbered from 1, ``origin`` its name, in
    lists of up to ``BATCH_LINES`` lines (with the C framer, no Python step per line).

    The line ending (LF or CRLF) is stripped before framing; nothing else is.
    """
    text, raw = _open(path)
    with text:
        yield from _framed(text, raw, path, _framer(raw, path, tz, year, clock), 1, stats)


def read_range(
    path: str,
    start: int,
    end: int | None,
    *,
    framer: Framer,
    first_lineno: int = 1,
    stats: ReadStats | None = None,
) -> Generator[list[LogLine], None, None]:
    """:func:`read_file` over bytes ``start`` (where line ``first_lineno`` begins) to
    ``end`` (None: the end) of the plain file ``path``, with the caller's ``framer``, whose
    year carries on from range to range (see :mod:`postwatch.halves`)."""
    text, raw = _open(path, (start, end))
    with text:
        yield from _framed(text, raw, path, framer, first_lineno, stats)


def framer_for(path: str, *, tz: tzinfo | None, year: int | None, clock: Clock) -> Framer:
    """The framer :func:`read_file` would make for the plain file ``path``."""
    with open(path, "rb") as raw:
        return _framer(raw, path, tz, year, clock)


def _framer(
    raw: BinaryIO, path: str, tz: tzinfo | None, year: int | None, clock: Clock | None
) -> Framer:
    """A framer for the file ``raw``: yearless stamps take ``year``, else its mtime's."""
    if year is not None:
        return Framer(tz, year=year)
    return Framer(tz, reference=_reference(raw, path, tz, clock or SystemClock()))


def _framed(
    text: TextIO,
    raw: BinaryIO,
    path: str,
    framer: Framer,
    first_lineno: int,
    stats: ReadStats | None,
) -> Generator[list[LogLine], None, None]:
    stats = stats if stats is not None else ReadStats()
    stats.files += 1
    stats._current = raw if path != STDIN else None  # stdin's size is not in the total
    stream = framer.frame_stream(text, _display_name(path), first_lineno)
    last: LogLine | None = None
    try:
        for lines in batched(stream):
            last = lines[-1]
            yield lines
    finally:
        stats.lines += last.lineno - first_lineno + 1 if last is not None else 0
        stats.done_bytes = stats.bytes_read
        stats._current = None


def read_batches(
    paths: Sequence[str],
    *,
    tz: tzinfo | None,
    year: int | None = None,
    clock: Clock | None = None,
    stats: ReadStats | None = None,
) -> Generator[list[LogLine], None, None]:
    """Frame every line of ``paths``, files in rotation order, each with its own Framer, in
    lists of up to ``BATCH_LINES`` lines (a list never spans two files).

    A yearless stamp takes ``year`` when given, else the year of the file's mtime (stdin:
    the clock's now), see :class:`~postwatch.parse.syslog.Framer`.  ``stats``, when
    given, is filled as the lines are read (``total_bytes`` before the first one).
    """
    ordered = rotation_order(paths)
    stats = stats if stats is not None else ReadStats()
    stats.total_bytes += input_size(ordered)
    for path in ordered:
        yield from read_file(path, tz=tz, year=year, clock=clock, stats=stats)


def read_lines(
    paths: Sequence[str],
    *,
    tz: tzinfo | None,
    year: int | None = None,
    clock: Clock | None = None,
    stats: ReadStats | None = None,
) -> Iterator[LogLine]:
    """The lines of :func:`read_batches`, one by one."""
    return chain.from_iterable(read_batches(paths, tz=tz, year=year, clock=clock, stats=stats))
