"""The journal as a source: ``journalctl -o json`` lines, the argv, and the real journalctl."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import MAILLOGS, require_program

from postwatch.errors import InputError, UsageError
from postwatch.records import LogLine
from postwatch.sources.files import ReadStats, read_lines
from postwatch.sources.journal import (
    journalctl_command,
    read_journal_json,
    run_journal,
)

FIXTURES = MAILLOGS / "sources"

# Fields as journalctl -o json prints them for a Postfix syslog() call; the message is a
# real line from fixtures/maillogs/sources/rfc3339.log (SSHGuard tests, ISC licence).
SASL_FAILURE: dict[str, Any] = {
    "__CURSOR": "s=34a665268aab41248f481056af4c54bd;i=1;b=0123456789abcdef0123456789abcdef",
    "__REALTIME_TIMESTAMP": "1649896563150000",
    "__MONOTONIC_TIMESTAMP": "1",
    "_BOOT_ID": "0123456789abcdef0123456789abcdef",
    "_TRANSPORT": "syslog",
    "_HOSTNAME": "mailhub",
    "SYSLOG_IDENTIFIER": "postfix/smtps/smtpd",
    "SYSLOG_PID": "30543",
    "_PID": "30543",
    "_COMM": "smtpd",
    "MESSAGE": "warning: unknown[122.166.249.154]:48123: SASL LOGIN authentication failed:"
    " UGFzc3dvcmQ6",
}
SASL_FAILURE_TS = datetime(2022, 4, 14, 0, 36, 3, 150000, tzinfo=UTC)


def json_lines(*entries: dict[str, Any]) -> list[str]:
    return [json.dumps(entry) + "\n" for entry in entries]


def without(entry: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key not in names}


# --- reading JSON -----------------------------------------------------------------------


def test_normal_entry_becomes_a_log_line() -> None:
    """An entry gives its UTC time, host, identifier, pid and message, numbered by JSON line."""
    stats = ReadStats()
    (line,) = read_journal_json(json_lines(SASL_FAILURE), stats=stats)
    assert line == LogLine(
        SASL_FAILURE_TS,
        "mailhub",
        "postfix/smtps/smtpd",
        30543,
        str(SASL_FAILURE["MESSAGE"]),
        "journal",
        1,
    )
    assert (line.service, line.daemon) == ("postfix/smtps", "smtpd")
    assert (stats.lines, stats.malformed, stats.skipped) == (1, 0, 0)


def test_bytes_lines_are_read_like_text() -> None:
    """Lines as bytes, as they come from journalctl's pipe, give the same LogLines."""
    as_bytes = [line.encode() for line in json_lines(SASL_FAILURE)]
    assert list(read_journal_json(as_bytes, origin="j")) == [
        line._replace(origin="j") for line in read_journal_json(json_lines(SASL_FAILURE))
    ]


def test_byte_list_message_is_decoded_with_replacement() -> None:
    """A MESSAGE that is not valid UTF-8 comes as a byte list and is decoded with U+FFFD."""
    raw = str(SASL_FAILURE["MESSAGE"]).encode() + b" \xc3\x28 \xff"
    (line,) = read_journal_json(json_lines({**SASL_FAILURE, "MESSAGE": list(raw)}))
    assert line.message == str(SASL_FAILURE["MESSAGE"]) + " \ufffd( \ufffd"


def test_repeated_field_takes_its_first_value() -> None:
    """A field logged twice in one entry comes as a list of values; the first one is used."""
    entry = {**SASL_FAILURE, "SYSLOG_IDENTIFIER": ["postfix/smtpd", "other"]}
    entry["MESSAGE"] = [list(b"first \xff"), "second"]
    (line,) = read_journal_json(json_lines(entry))
    assert (line.program, line.message) == ("postfix/smtpd", "first \ufffd")


def test_missing_fields_fall_back() -> None:
    """Without _PID the SYSLOG_PID is used, without an identifier _COMM, without a host ""."""
    entries: list[dict[str, Any]] = [
        without(SASL_FAILURE, "_PID"),
        without(SASL_FAILURE, "_PID", "SYSLOG_PID"),
        without(SASL_FAILURE, "SYSLOG_IDENTIFIER"),
        without(SASL_FAILURE, "SYSLOG_IDENTIFIER", "_COMM", "_HOSTNAME"),
        {**SASL_FAILURE, "_PID": "12x", "SYSLOG_PID": "\u0661\u0662"},
    ]
    got = list(read_journal_json(json_lines(*entries)))
    assert [(line.host, line.program, line.pid) for line in got] == [
        ("mailhub", "postfix/smtps/smtpd", 30543),
        ("mailhub", "postfix/smtps/smtpd", None),
        ("mailhub", "smtpd", 30543),
        ("", "", 30543),
        ("mailhub", "postfix/smtps/smtpd", None),
    ]


def test_entries_without_message_are_skipped_and_counted() -> None:
    """A null or missing MESSAGE skips the entry, counts it, and the next entry still comes."""
    stats = ReadStats()
    lines = json_lines(
        {**SASL_FAILURE, "MESSAGE": None}, without(SASL_FAILURE, "MESSAGE"), SASL_FAILURE
    )
    got = list(read_journal_json(lines, stats=stats))
    assert [line.lineno for line in got] == [3]
    assert (stats.lines, stats.skipped, stats.malformed) == (3, 2, 0)


@pytest.mark.parametrize(
    "bad",
    [
        '{"MESSAGE": "cut off',
        "not json at all",
        "[1, 2, 3]",
        '"a string"',
        json.dumps(without(SASL_FAILURE, "__REALTIME_TIMESTAMP")),
        json.dumps({**SASL_FAILURE, "__REALTIME_TIMESTAMP": "soon"}),
        json.dumps({**SASL_FAILURE, "__REALTIME_TIMESTAMP": "9" * 40}),
        json.dumps({**SASL_FAILURE, "MESSAGE": [300, 1]}),
        json.dumps({**SASL_FAILURE, "MESSAGE": {"nested": "object"}}),
        json.dumps({**SASL_FAILURE, "_HOSTNAME": 7}),
        "[" * 100_000,
    ],
)
def test_malformed_line_is_counted_and_skipped(bad: str) -> None:
    """A line that is not a usable entry is counted as malformed and never stops the stream."""
    stats = ReadStats()
    got = list(read_journal_json([bad + "\n", *json_lines(SASL_FAILURE), "\n"], stats=stats))
    assert [line.lineno for line in got] == [2]
    assert stats.malformed == 1


def test_undecodable_json_bytes_are_malformed() -> None:
    """Bytes that are not UTF-8 JSON count as malformed."""
    stats = ReadStats()
    assert list(read_journal_json([b"\xff\xfe{}\n"], stats=stats)) == []
    assert stats.malformed == 1


# --- the journalctl command ---------------------------------------------------------------


def test_command_is_an_argv_list_with_one_argument_per_value() -> None:
    """Units, identifiers, files and since each become one ``--option=value`` argument."""
    since = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    argv = journalctl_command(
        units=["postfix@-.service", "dovecot.service"],
        identifiers=["postfix/submission/smtpd", "-f"],
        since=since,
        follow=True,
        files=["/var/log/journal/x.journal"],
    )
    assert argv[:4] == ["journalctl", "-o", "json", "--no-pager"]
    for expected in (
        "--unit=postfix@-.service",
        "--unit=dovecot.service",
        "--identifier=postfix/submission/smtpd",
        "--identifier=-f",
        "--since=2026-10-31 23:30:00 UTC",
        "--file=/var/log/journal/x.journal",
        "--follow",
    ):
        assert expected in argv
    assert "--directory" not in " ".join(argv)
    assert "--follow" not in journalctl_command()
    assert "--directory=/srv/journal" in journalctl_command(directory="/srv/journal")
    assert "--since=-1h" in journalctl_command(since="-1h")


@pytest.mark.parametrize(
    "options",
    [
        {"units": [""]},
        {"identifiers": ["postfix\nsmtpd"]},
        {"files": ["a\0b"]},
        {"since": datetime(2026, 1, 1)},  # no zone: the point of the case
    ],
)
def test_command_rejects_unusable_values(options: dict[str, object]) -> None:
    """Empty values, newlines, NULs and a since without a zone are usage errors."""
    with pytest.raises(UsageError):
        journalctl_command(**options)  # type: ignore[arg-type]


def test_missing_journalctl_is_an_input_error() -> None:
    """A journalctl that cannot be found gives a one-line InputError naming it."""
    with pytest.raises(InputError, match="no-such-journalctl-program not found"):
        list(run_journal(executable="no-such-journalctl-program"))


# --- the real journalctl -------------------------------------------------------------------


def journal_remote() -> str:
    return require_program(
        "systemd-journal-remote",
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    )


def require_journalctl() -> None:
    require_program("journalctl")


def export_entry(line: LogLine, message: bytes | None = None) -> bytes:
    """One entry in journal export format, as journald would have stored a syslog() call."""
    micros = (line.ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    fields = [
        ("__REALTIME_TIMESTAMP", str(micros)),
        ("__MONOTONIC_TIMESTAMP", "1"),
        ("_BOOT_ID", "0123456789abcdef0123456789abcdef"),
        ("_TRANSPORT", "syslog"),
        ("_HOSTNAME", line.host),
        ("SYSLOG_IDENTIFIER", line.program),
    ]
    if line.pid is not None:
        fields.append(("_PID", str(line.pid)))
    body = b"".join(f"{name}={value}\n".encode() for name, value in fields)
    data = line.message.encode() if message is None else message
    return body + b"MESSAGE\n" + struct.pack("<Q", len(data)) + data + b"\n\n"


def make_journal(directory: Path, entries: list[bytes]) -> Path:
    journal = directory / "postwatch-test.journal"
    subprocess.run(
        [journal_remote(), f"--output={journal}", "-"],
        input=b"".join(entries),
        check=True,
        capture_output=True,
    )
    return journal


def sample_lines(tmp_path: Path) -> list[LogLine]:
    """The real sample lines of the fixtures, framed from their log files."""
    lines: list[LogLine] = []
    for name, year in (
        ("traditional.log", 2021),
        ("maillog-file.log", 2020),
        ("rfc3339.log", 2021),
    ):
        text = [
            row
            for row in (FIXTURES / name).read_text(encoding="utf-8").splitlines()
            if row and not row.startswith("#")
        ]
        path = tmp_path / name
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        lines += read_lines([str(path)], tz=UTC, year=year)
    return sorted(lines, key=lambda line: line.ts)


def key(line: LogLine) -> tuple[object, ...]:
    return (line.ts, line.host, line.program, line.pid, line.message)


@pytest.mark.system
def test_real_journalctl_output_matches_the_syslog_lines(tmp_path: Path) -> None:
    """Lines stored in a real journal file read back through journalctl as the same LogLines."""
    require_journalctl()
    lines = sample_lines(tmp_path)
    invalid = str(lines[0].message).encode() + b" \xc3\x28"
    entries = [export_entry(line) for line in lines] + [export_entry(lines[0], invalid)]
    journal = make_journal(tmp_path, entries)
    stats = ReadStats()
    got = list(run_journal(files=[str(journal)], stats=stats))
    assert [key(line) for line in got[:-1]] == [key(line) for line in lines]
    assert got[-1].message == lines[0].message + " \ufffd("
    assert [line.origin for line in got] == ["journal"] * len(got)
    assert (stats.lines, stats.malformed, stats.skipped) == (len(entries), 0, 0)


@pytest.mark.system
def test_real_journalctl_filters_by_identifier(tmp_path: Path) -> None:
    """``identifiers`` reaches journalctl and only matching entries come back."""
    require_journalctl()
    lines = sample_lines(tmp_path)
    journal = make_journal(tmp_path, [export_entry(line) for line in lines])
    got = list(run_journal(identifiers=["postfix/postscreen"], files=[str(journal)]))
    assert [key(line) for line in got] == [
        key(line) for line in lines if line.program == "postfix/postscreen"
    ]
    assert len(got) == 3


@pytest.mark.system
def test_journalctl_failure_is_an_input_error(tmp_path: Path) -> None:
    """journalctl exiting non-zero gives a one-line InputError with its complaint."""
    require_journalctl()
    with pytest.raises(InputError, match="exited with status 1") as caught:
        list(run_journal(files=[str(tmp_path / "missing.journal")]))
    assert "\n" not in str(caught.value)


@pytest.mark.system
def test_closing_a_followed_journal_ends_journalctl(tmp_path: Path) -> None:
    """Stopping a ``follow`` read early terminates the journalctl it started."""
    require_journalctl()
    lines = sample_lines(tmp_path)
    journal = make_journal(tmp_path, [export_entry(line) for line in lines[:3]])
    stream = run_journal(files=[str(journal)], follow=True)
    assert key(next(stream)) == key(lines[0])
    assert running_with(str(journal))
    stream.close()
    assert not running_with(str(journal))


def running_with(argument: str) -> bool:
    """Whether some live process has ``argument`` inside one of its arguments."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argument.encode() in cmdline:
            return True
    return False


def test_replay_says_how_many_journal_entries_it_skipped() -> None:
    """Entries replay could not use are not dropped silently: one line on stderr says how
    many, and the usable entry is still read."""
    stream = "".join(
        [
            "not json at all\n",
            *json_lines({**SASL_FAILURE, "MESSAGE": None}),
            *json_lines(SASL_FAILURE),
        ]
    )
    done = subprocess.run(
        [sys.executable, "-m", "postwatch", "replay", "--json", "--journal-json", "-"],
        input=stream,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        "postwatch: skipped 1 unreadable journal entries and 1 without a message"
    )
    totals = json.loads(done.stdout.splitlines()[-1])
    assert totals["events"] == {"sasl_failure": 1}
