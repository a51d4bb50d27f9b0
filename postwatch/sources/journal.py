"""The systemd journal as a source: ``journalctl -o json`` output -> LogLines.

One JSON object per line.  The fields used::

    MESSAGE               the text; a list of byte values when it is not valid UTF-8
    SYSLOG_IDENTIFIER     the program (``postfix/submission/smtpd``); else _COMM
    _PID, SYSLOG_PID      the process ID (_PID is set by journald, SYSLOG_PID by the sender)
    __REALTIME_TIMESTAMP  microseconds since the epoch, as a decimal string
    _HOSTNAME             the host

A field logged more than once in one entry comes as a list of values; the first is used.
Entries whose MESSAGE is null (journalctl leaves out values over its size limit unless
``--all``) or missing are skipped and counted; a line that is not a usable entry is
counted as malformed and skipped.  Neither ever stops the stream.

``run_journal`` runs journalctl itself, from an argv list (never a shell string).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from postwatch.errors import InputError, UsageError
from postwatch.records import LogLine
from postwatch.sources.files import READ_BUFFER, ReadStats

JOURNALCTL = "journalctl"
JOURNAL_ORIGIN = "journal"
OUTPUT_FIELDS = ("MESSAGE", "SYSLOG_IDENTIFIER", "_COMM", "_PID", "SYSLOG_PID", "_HOSTNAME")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_new_line = tuple.__new__


class _Malformed(ValueError):
    """A JSON line that is not a usable journal entry."""


def _text(value: object) -> str | None:
    """A journal field value as text: a string, a byte list, or the first of several."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        if not value:
            return ""
        first = value[0]
        if isinstance(first, int):
            try:
                return bytes(value).decode("utf-8", errors="replace")
            except (TypeError, ValueError) as exc:
                raise _Malformed("not a byte list") from exc
        if isinstance(first, str | list) or first is None:
            return _text(first)  # a field logged several times: the first value
    raise _Malformed(f"unexpected field value {type(value).__name__}")


def _pid(entry: dict[str, object]) -> int | None:
    for name in ("_PID", "SYSLOG_PID"):
        text = _text(entry.get(name))
        if text and text.isascii() and text.isdigit():
            return int(text)
    return None


def _timestamp(entry: dict[str, object]) -> datetime:
    text = _text(entry.get("__REALTIME_TIMESTAMP"))
    if not text or not text.isascii() or not text.isdigit():
        raise _Malformed("no __REALTIME_TIMESTAMP")
    try:
        return _EPOCH + timedelta(microseconds=int(text))
    except OverflowError as exc:
        raise _Malformed("__REALTIME_TIMESTAMP out of range") from exc


def journal_entry(entry: object, origin: str = JOURNAL_ORIGIN, lineno: int = 0) -> LogLine | None:
    """One decoded journal entry as a LogLine; None when it has no MESSAGE.

    Raises ``ValueError`` when the entry is not usable (not an object, no timestamp,
    fields of the wrong type).
    """
    if not isinstance(entry, dict):
        raise _Malformed("not a JSON object")
    message = _text(entry.get("MESSAGE"))
    if message is None:
        return None
    if message.endswith("\n"):
        message = message.rstrip("\n")
    program = _text(entry.get("SYSLOG_IDENTIFIER"))
    if program is None:
        program = _text(entry.get("_COMM")) or ""
    host = _text(entry.get("_HOSTNAME")) or ""
    return _new_line(
        LogLine, (_timestamp(entry), host, program, _pid(entry), message, origin, lineno)
    )


def read_journal_json(
    stream: Iterable[str | bytes],
    *,
    origin: str = JOURNAL_ORIGIN,
    stats: ReadStats | None = None,
) -> Generator[LogLine, None, None]:
    """Yield a LogLine per entry of ``journalctl -o json`` output (text or bytes lines).

    ``lineno`` is the line number in the JSON stream.  Malformed lines and entries
    without a MESSAGE are counted in ``stats`` and skipped.
    """
    stats = stats if stats is not None else ReadStats()
    stats.files += 1
    decode = json.loads
    lineno = 0
    try:
        for lineno, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                line = journal_entry(decode(raw), origin, lineno)
            except ValueError:  # JSONDecodeError, UnicodeDecodeError, _Malformed
                stats.malformed += 1
                continue
            except RecursionError:  # absurdly nested JSON
                stats.malformed += 1
                continue
            if line is None:
                stats.skipped += 1
                continue
            yield line
    finally:
        stats.lines += lineno


# --- running journalctl -----------------------------------------------------------------


def _argument(option: str, value: str) -> str:
    if not value or "\0" in value or "\n" in value:
        raise UsageError(f"journal {option.strip('-')}: empty or invalid value {value!r}")
    return f"{option}={value}"


def _since_text(since: datetime | str) -> str:
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise UsageError("journal since: a datetime needs a time zone")
        return since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return since


def journalctl_command(
    units: Sequence[str] = (),
    identifiers: Sequence[str] = (),
    since: datetime | str | None = None,
    follow: bool = False,
    *,
    files: Sequence[str] = (),
    directory: str | None = None,
    executable: str = JOURNALCTL,
) -> list[str]:
    """The journalctl argv that prints the wanted entries as JSON, one per line.

    Several units match any of them, several identifiers likewise; units and
    identifiers together must both match, as journalctl combines them.  ``files`` and
    ``directory`` read journal files instead of the system journal.  Every value is one
    ``--option=value`` argument, so none can be taken for another option.  With
    ``follow`` and no ``since``, journalctl starts from its last 10 entries.
    """
    # --quiet: no hints on stderr; --all: long values in full, not null; --output-fields:
    # only what a LogLine needs (journalctl adds the __ fields), a much smaller stream.
    argv = [executable, "-o", "json", "--no-pager", "--quiet", "--all"]
    argv.append("--output-fields=" + ",".join(OUTPUT_FIELDS))
    argv += [_argument("--file", path) for path in files]
    if directory is not None:
        argv.append(_argument("--directory", directory))
    argv += [_argument("--unit", unit) for unit in units]
    argv += [_argument("--identifier", ident) for ident in identifiers]
    if since is not None:
        argv.append(_argument("--since", _since_text(since)))
    if follow:
        argv.append("--follow")
    return argv


def run_journal(
    units: Sequence[str] = (),
    identifiers: Sequence[str] = (),
    since: datetime | str | None = None,
    follow: bool = False,
    *,
    files: Sequence[str] = (),
    directory: str | None = None,
    executable: str = JOURNALCTL,
    stats: ReadStats | None = None,
) -> Generator[LogLine, None, None]:
    """Run journalctl and yield its entries as LogLines; stopping early ends journalctl.

    A missing journalctl, or one that exits with an error, raises :class:`InputError`
    with journalctl's first line of complaint.
    """
    argv = journalctl_command(
        units, identifiers, since, follow, files=files, directory=directory, executable=executable
    )
    program = shutil.which(executable)
    if program is None:
        raise InputError(f"cannot read the journal: {executable} not found")
    argv[0] = program
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                bufsize=READ_BUFFER,
            )
        except OSError as exc:
            raise InputError(f"cannot run {executable}: {exc.strerror or exc}") from exc
        assert process.stdout is not None  # stdout=PIPE guarantees it
        try:
            yield from read_journal_json(process.stdout, stats=stats)
            status = process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()
            process.stdout.close()
        if status != 0:
            errors.seek(0)
            complaint = errors.read(4096).decode("utf-8", errors="replace").strip()
            first = complaint.splitlines()[0] if complaint else "no message"
            raise InputError(
                f"cannot read the journal: {executable} exited with status {status}: {first}"
            )
