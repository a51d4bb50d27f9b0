"""Log files as a source: compression, stdin, rotation order, years, errors, garbage."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import random
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
from annotated import read_samples
from conftest import MAILLOGS

from postwatch.clock import SteppedClock
from postwatch.errors import InputError
from postwatch.records import LogLine
from postwatch.sources.files import (
    BATCH_LINES,
    ReadStats,
    input_size,
    open_text,
    read_batches,
    read_lines,
    read_range,
    rotation_order,
)

FIXTURES = MAILLOGS / "sources"

COMPRESSORS = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


@dataclass(frozen=True)
class Fixture:
    """An annotated sample file: how to read it, its log lines, and what each must give."""

    name: str
    read: dict[str, str | int]
    lines: list[str]
    expected: list[dict[str, object]]

    @property
    def tz(self) -> tzinfo:
        return parse_offset(str(self.read["tz"]))

    def payload(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode()


def parse_offset(text: str) -> tzinfo:
    sign = -1 if text.startswith("-") else 1
    hours, minutes = text[1:].split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def load(name: str) -> Fixture:
    """An annotated fixture: its ``# read:`` options and its ``# expect:``-annotated lines."""
    path = FIXTURES / name
    headers = [
        row for row in path.read_text(encoding="utf-8").splitlines() if row.startswith("# read: ")
    ]
    assert len(headers) == 1, f"{name}: needs one '# read:' line"
    samples = list(read_samples(path, "expect"))
    return Fixture(
        name,
        json.loads(headers[0][len("# read: ") :]),
        [sample.text for sample in samples],
        [sample.expected for sample in samples],
    )


def write(path: Path, data: bytes, *, kind: str = "plain", mtime: datetime | None = None) -> str:
    path.write_bytes(COMPRESSORS[kind](data))
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return str(path)


def read_fixture(fixture: Fixture, path: str, **options: object) -> list[LogLine]:
    year = fixture.read.get("year")
    return list(read_lines([path], tz=fixture.tz, year=year, **options))  # type: ignore[arg-type]


def assert_matches(got: list[LogLine], fixture: Fixture, origin: str) -> None:
    assert len(got) == len(fixture.lines)
    for number, (line, raw, want) in enumerate(
        zip(got, fixture.lines, fixture.expected, strict=True), 1
    ):
        assert line.ts == datetime.fromisoformat(str(want["ts"])), raw
        assert line.ts.utcoffset() == timedelta(0), raw
        assert (line.host, line.program, line.pid) == (want["host"], want["program"], want["pid"])
        assert raw.endswith(": " + line.message) and line.message, raw
        assert (line.origin, line.lineno) == (origin, number)


# --- timestamp styles, end to end ------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["traditional.log", "maillog-file.log", "rfc3339.log", "year-boundary.log"]
)
def test_timestamp_styles_are_framed_as_annotated(tmp_path: Path, name: str) -> None:
    """Each real sample line yields the annotated UTC time, host, program and pid."""
    fixture = load(name)
    mtime = fixture.read.get("mtime")
    path = write(
        tmp_path / "mail.log",
        fixture.payload(),
        mtime=datetime.fromisoformat(str(mtime)) if mtime else None,
    )
    assert_matches(read_fixture(fixture, path), fixture, path)


def test_rfc3339_without_fraction(tmp_path: Path) -> None:
    """RFC 3339 stamps without fractional seconds, with ``Z`` or an offset, are read exactly."""
    fixture = load("rfc3339.log")
    lines = [re.sub(r"^(\S+T\d\d:\d\d:\d\d)\.\d+", r"\1", line) for line in fixture.lines]
    assert all(re.match(r"\S+T\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) ", line) for line in lines)
    assert any(line.split(" ", 1)[0].endswith("Z") for line in lines)
    expected = [
        {**want, "ts": datetime.fromisoformat(str(want["ts"])).replace(microsecond=0).isoformat()}
        for want in fixture.expected
    ]
    stripped = Fixture(fixture.name, fixture.read, lines, expected)
    path = write(tmp_path / "mail.log", stripped.payload())
    assert_matches(read_fixture(stripped, path), stripped, path)


def test_zone_is_used_for_stamps_without_one(tmp_path: Path) -> None:
    """The same traditional line read in two zones gives times that differ by the offset."""
    fixture = load("traditional.log")
    path = write(tmp_path / "mail.log", fixture.payload())
    east = list(read_lines([path], tz=parse_offset("+03:00"), year=2021))
    west = list(read_lines([path], tz=parse_offset("-04:00"), year=2021))
    assert [w.ts - e.ts for e, w in zip(east, west, strict=True)] == [timedelta(hours=7)] * len(
        east
    )


# --- compression, stdin ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_files_read_like_plain(tmp_path: Path, kind: str) -> None:
    """gzip, bzip2 and xz files are found by their content, whatever their name says."""
    fixture = load("traditional.log")
    misleading = tmp_path / ("mail.log.gz" if kind == "plain" else "mail.log.7")
    path = write(misleading, fixture.payload(), kind=kind)
    assert_matches(read_fixture(fixture, path), fixture, path)


def test_open_text_keeps_bare_carriage_returns_and_decodes_utf8(tmp_path: Path) -> None:
    """open_text splits on newlines only, decodes UTF-8 and replaces undecodable bytes."""
    path = write(tmp_path / "x.xz", b"caf\xc3\xa9 \r mid\nbad \xff\xfe byte\r\nlast", kind="xz")
    with open_text(path) as text:
        assert list(text) == ["café \r mid\n", "bad \ufffd\ufffd byte\r\n", "last"]


def _stdin_from(monkeypatch: pytest.MonkeyPatch, stream: Any) -> io.TextIOWrapper[Any]:
    stdin = io.TextIOWrapper(stream)
    monkeypatch.setattr(sys, "stdin", stdin)
    return stdin


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_stdin_is_read_and_left_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """``-`` reads stdin (compressed or not), takes the year from the clock, and leaves it open."""
    fixture = load("traditional.log")
    path = write(tmp_path / "piped", fixture.payload(), kind=kind)
    with open(path, "rb") as handle:
        stdin = _stdin_from(monkeypatch, handle)
        clock = SteppedClock(datetime(2022, 1, 5, tzinfo=UTC))
        got = list(read_lines(["-"], tz=fixture.tz, clock=clock))
        assert not stdin.closed and not handle.closed
        os.fstat(handle.fileno())  # the descriptor is still open
    assert_matches(got, fixture, "<stdin>")


def test_in_memory_stdin_is_read_and_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stdin without a file descriptor is read through and not closed."""
    fixture = load("rfc3339.log")
    stdin = _stdin_from(monkeypatch, io.BytesIO(bz2.compress(fixture.payload())))
    got = list(read_lines(["-"], tz=fixture.tz, clock=SteppedClock()))
    assert not stdin.buffer.closed
    assert_matches(got, fixture, "<stdin>")


# --- rotation order ---------------------------------------------------------------------


def test_numbered_rotation_set_is_ordered_oldest_first() -> None:
    """Numbered rotations sort highest number first and the live file last, from any order."""
    oldest_first = [
        "/var/log/mail.log.12.gz",
        "/var/log/mail.log.4.gz",
        "/var/log/mail.log.3.gz",
        "/var/log/mail.log.2.gz",
        "/var/log/mail.log.1",
        "/var/log/mail.log",
    ]
    shuffled = oldest_first[:]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert rotation_order(shuffled) == oldest_first


def test_dateext_rotation_set_is_ordered_oldest_first() -> None:
    """Dated rotations (logrotate dateext, daily and hourly) sort by date, the live file last."""
    oldest_first = [
        "maillog-20261030.gz",
        "maillog-20261101.bz2",
        "maillog-2026110123.xz",
        "maillog-20261102",
        "maillog",
    ]
    assert rotation_order(oldest_first[::-1]) == oldest_first
    assert (
        rotation_order(
            [oldest_first[2], oldest_first[4], oldest_first[0], oldest_first[3], oldest_first[1]]
        )
        == oldest_first
    )


def test_groups_and_stdin_keep_the_given_order() -> None:
    """Different base names keep the order they were given in, and stdin stays in place."""
    given = ["b.log", "a.log.1", "-", "a.log", "b.log.1", "mail.log-20261101.gz", "mail.log"]
    assert rotation_order(given) == [
        "b.log.1",
        "b.log",
        "a.log.1",
        "a.log",
        "-",
        "mail.log-20261101.gz",
        "mail.log",
    ]


def test_rotation_set_is_read_in_time_order(tmp_path: Path) -> None:
    """A rotation set given shuffled, mixing compressions, is read back in the original order."""
    fixture = load("traditional.log")
    parts = [
        fixture.lines[0:2],
        fixture.lines[2:3],
        fixture.lines[3:5],
        fixture.lines[5:7],
        fixture.lines[7:],
    ]
    names = ["mail.log.4.gz", "mail.log.3.bz2", "mail.log.2.xz", "mail.log.1", "mail.log"]
    kinds = ["gzip", "bzip2", "xz", "plain", "plain"]
    paths = [
        write(tmp_path / name, "".join(f"{line}\n" for line in part).encode(), kind=kind)
        for name, part, kind in zip(names, parts, kinds, strict=True)
    ]
    given = [paths[2], paths[4], paths[0], paths[3], paths[1]]
    got = list(read_lines(given, tz=fixture.tz, year=2021))
    assert [line.ts.isoformat() for line in got] == [str(w["ts"]) for w in fixture.expected]
    assert [(Path(line.origin).name, line.lineno) for line in got] == [
        ("mail.log.4.gz", 1), ("mail.log.4.gz", 2), ("mail.log.3.bz2", 1), ("mail.log.2.xz", 1),
        ("mail.log.2.xz", 2), ("mail.log.1", 1), ("mail.log.1", 2), ("mail.log", 1),
    ]  # fmt: skip


# --- years ------------------------------------------------------------------------------


def test_year_comes_from_the_file_mtime(tmp_path: Path) -> None:
    """Without a year, a file written in early January puts its June-December lines last year."""
    fixture = load("traditional.log")
    path = write(tmp_path / "mail.log", fixture.payload(), mtime=datetime(2022, 1, 5, tzinfo=UTC))
    got = list(read_lines([path], tz=fixture.tz))
    assert_matches(got, fixture, path)  # annotated for year 2021


def test_each_file_of_a_set_takes_its_own_mtime(tmp_path: Path) -> None:
    """The December file and the January file of a rotation set each get the right year."""
    fixture = load("year-boundary.log")
    december = write(
        tmp_path / "mail.log.1",
        "".join(f"{line}\n" for line in fixture.lines[:3]).encode(),
        mtime=datetime(2004, 12, 31, 12, tzinfo=UTC),
    )
    january = write(
        tmp_path / "mail.log",
        "".join(f"{line}\n" for line in fixture.lines[3:]).encode(),
        mtime=datetime(2005, 2, 1, tzinfo=UTC),
    )
    got = list(read_lines([january, december], tz=fixture.tz))
    assert [line.ts.isoformat() for line in got] == [str(w["ts"]) for w in fixture.expected]


def test_explicit_year_wins_over_mtime(tmp_path: Path) -> None:
    """A given year is used for the first line whatever the file's mtime says."""
    fixture = load("traditional.log")
    path = write(tmp_path / "mail.log", fixture.payload(), mtime=datetime(2030, 6, 1, tzinfo=UTC))
    assert_matches(read_fixture(fixture, path), fixture, path)


# --- errors -----------------------------------------------------------------------------


def _corrupt(kind: str) -> bytes:
    data = bytearray(COMPRESSORS[kind](load("traditional.log").payload()))
    middle = len(data) // 2
    data[middle : middle + 8] = b"\x00\xff" * 4
    return bytes(data)


@pytest.mark.parametrize(
    ("label", "content"),
    [
        ("corrupt gzip", _corrupt("gzip")),
        ("truncated gzip", gzip.compress(b"x" * 5000 + b"\n")[:30]),
        ("gzip header only", b"\x1f\x8b\x08\x00garbage"),
        ("corrupt bzip2", _corrupt("bzip2")),
        ("corrupt xz", _corrupt("xz")),
        ("zstd", bytes.fromhex("28b52ffd") + b"\x00" * 20),
    ],
)
def test_bad_compressed_file_raises_input_error_naming_it(
    tmp_path: Path, label: str, content: bytes
) -> None:
    """A corrupt, truncated or unsupported compressed file gives a one-line InputError."""
    path = tmp_path / "mail.log.2.gz"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        list(read_lines([str(path)], tz=UTC, year=2021))
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, label
    assert caught.value.exit_code == 2


def test_missing_and_unreadable_files_raise_input_error(tmp_path: Path) -> None:
    """A missing file, or a directory given as a file, gives an InputError naming it."""
    for path in (tmp_path / "no-such.log", tmp_path):
        with pytest.raises(InputError, match=re.escape(str(path))) as caught:
            list(read_lines([str(path)], tz=UTC))
        assert isinstance(caught.value.__cause__, OSError)
        with pytest.raises(InputError, match=re.escape(str(path))):
            open_text(str(path))


def test_error_in_a_later_file_comes_after_the_earlier_lines(tmp_path: Path) -> None:
    """Lines of a good file are yielded before a later corrupt file stops the read."""
    good = write(tmp_path / "mail.log.1", load("traditional.log").payload())
    bad = tmp_path / "mail.log"
    bad.write_bytes(_corrupt("gzip"))
    seen = []
    with pytest.raises(InputError, match=re.escape(f"{bad}:")):
        for line in read_lines([str(bad), good], tz=UTC, year=2021):
            seen.append(line)
    # data decompressed before the corruption was found may come through; then it stops
    assert [line.origin for line in seen[:8]] == [good] * 8
    assert {line.origin for line in seen[8:]} <= {str(bad)}


# --- hostile bytes ----------------------------------------------------------------------


def test_binary_garbage_lines_do_not_raise(tmp_path: Path) -> None:
    """Undecodable bytes, NULs, control characters and half stamps become lines, not errors."""
    real = load("traditional.log").lines[1].encode()
    garbage = [
        bytes(range(256)).replace(b"\n", b""),
        b"\x00" * 40,
        real[:16] + b"\xff\xfe\xfd host",
        real[:15],
        b"Feb 30 25:61:61 host postfix/smtpd[1]: impossible date",
        b"9999-99-99T99:99:99Z host postfix/smtpd[1]: impossible date",
        real.replace(b"poseidon", b"pos\xc3\x28idon"),
        b"\xef\xbb\xbf" + real,
        b"   ",
        b"",
        b"\r",
        b"<" + b"9" * 50 + b">1 " + b"-" * 10,
        b"@4000000" + b"f" * 20 + b" x",
        b"x" * 200_000,
        b"May  9 22:12:21 mx postfix/smtpd[\xc2\xb2]: superscript pid",
        b"May  9 22:12:21 mx postfix/smtpd[" + b"9" * 26 + b"]: huge pid",
    ]
    path = write(tmp_path / "garbage.log", b"\n".join(garbage) + b"\n", kind="gzip")
    got = list(read_lines([path], tz=UTC, year=2021))
    assert len(got) == len(garbage)
    assert all(isinstance(line, LogLine) for line in got)
    assert "\ufffd" in got[0].message + got[0].host + got[0].program
    assert [line.lineno for line in got] == list(range(1, len(garbage) + 1))


# --- counters and progress --------------------------------------------------------------


def test_stats_count_files_lines_and_bytes(tmp_path: Path) -> None:
    """ReadStats knows the total size first, and bytes read reaches it at the end."""
    fixture = load("traditional.log")
    paths = [
        write(tmp_path / "mail.log.1.gz", fixture.payload(), kind="gzip"),
        write(tmp_path / "mail.log", fixture.payload()),
    ]
    stats = ReadStats()
    lines = read_lines(paths, tz=UTC, year=2021, stats=stats)
    next(lines)
    assert stats.total_bytes == sum(os.path.getsize(path) for path in paths) == input_size(paths)
    assert stats.files == 1
    rest = list(lines)
    assert 1 + len(rest) == stats.lines == 16
    assert stats.files == 2
    assert stats.bytes_read == stats.total_bytes


def test_progress_moves_while_a_large_file_is_read(tmp_path: Path, corpus: Path) -> None:
    """Partway through a large real log, bytes read is more than none and less than all."""
    source = corpus / "pflgviewer" / "mail.log"
    path = write(tmp_path / "mail.log.1.gz", source.read_bytes(), kind="gzip")
    stats = ReadStats()
    lines = read_lines([path], tz=UTC, year=2012, stats=stats)
    next(lines)
    assert 0 < stats.bytes_read < stats.total_bytes
    for _line in lines:
        pass
    assert stats.bytes_read == stats.total_bytes
    assert stats.lines == source.read_bytes().count(b"\n")


def test_corpus_rotation_set_round_trips(tmp_path: Path, corpus: Path) -> None:
    """A real 20,000-line log split into a mixed rotation set reads back line for line."""
    source = corpus / "pflgviewer" / "mail.log"
    raw_lines = source.read_bytes().splitlines(keepends=True)
    quarter = len(raw_lines) // 4
    chunks = [raw_lines[i * quarter : (i + 1) * quarter] for i in range(3)]
    chunks.append(raw_lines[3 * quarter :])
    names = ["mail.log.3.xz", "mail.log.2.bz2", "mail.log.1.gz", "mail.log"]
    kinds = ["xz", "bzip2", "gzip", "plain"]
    paths = [
        write(tmp_path / name, b"".join(chunk), kind=kind)
        for name, chunk, kind in zip(names, chunks, kinds, strict=True)
    ]
    plain = write(tmp_path / "whole.log", source.read_bytes())
    expected = [
        (line.ts, line.host, line.program, line.pid, line.message)
        for line in read_lines([plain], tz=UTC, year=2012)
    ]
    got = [
        (line.ts, line.host, line.program, line.pid, line.message)
        for line in read_lines(paths[::-1], tz=UTC, year=2012)
    ]
    assert len(got) == len(raw_lines) == 20000
    assert got == expected


def test_batches_are_full_and_never_span_two_files(tmp_path: Path, corpus: Path) -> None:
    """The replay reads lists of BATCH_LINES lines, a short one only at a file's end."""
    raw_lines = (corpus / "pflgviewer" / "mail.log").read_bytes().splitlines(keepends=True)
    sizes = [1000, 1, BATCH_LINES, 3 * BATCH_LINES + 7]
    paths, start = [], 0
    for number, size in enumerate(sizes):
        name = f"mail.log.{len(sizes) - 1 - number}" if number < len(sizes) - 1 else "mail.log"
        paths.append(write(tmp_path / name, b"".join(raw_lines[start : start + size])))
        start += size
    stats = ReadStats()
    batches = list(read_batches(paths[::-1], tz=UTC, year=2012, stats=stats))
    per_file = [size // BATCH_LINES + (size % BATCH_LINES > 0) for size in sizes]
    assert len(batches) == sum(per_file)
    origins = [{line.origin for line in batch} for batch in batches]
    assert all(len(names) == 1 for names in origins)
    lengths = [len(batch) for batch in batches]
    assert lengths[: per_file[0]] == [BATCH_LINES] * 7 + [1000 - 7 * BATCH_LINES]
    assert lengths[per_file[0] :] == [1, BATCH_LINES, BATCH_LINES, BATCH_LINES, BATCH_LINES, 7]
    assert [line for batch in batches for line in batch] == list(
        read_lines(paths, tz=UTC, year=2012)
    )
    assert stats.lines == sum(sizes) and stats.files == len(sizes)


def test_a_range_reads_on_where_the_file_left_off(tmp_path: Path) -> None:
    """Bytes from a line's start on, numbered from that line, with the caller's framer (its
    year carried on), frame as the same lines of the whole file do (C and Python)."""
    from postwatch.parse import syslog

    text = (FIXTURES / "year-boundary.log").read_text()
    log = tmp_path / "mail.log"
    log.write_text(text * 3)
    whole = list(read_lines([str(log)], tz=UTC, year=2025))
    cut = len(text.encode()) + text.index("\n") + 1  # the second line of the second copy
    for fast in (syslog.FrameStream, None):
        framer = syslog.Framer(UTC, year=2025)
        first = [line for batch in read_range(str(log), 0, cut, framer=framer) for line in batch]
        syslog.FrameStream, saved = fast, syslog.FrameStream
        try:
            rest = read_range(str(log), cut, None, framer=framer, first_lineno=len(first) + 1)
            assert first + [line for batch in rest for line in batch] == whole
        finally:
            syslog.FrameStream = saved
    assert len(first) == len(text.splitlines()) + 1
