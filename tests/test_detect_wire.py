"""What crosses to the forked detector: every record and event the engine takes, packed flat,
pickled and unpacked, keeps each field the engine reads; the engine reads no other."""

from __future__ import annotations

import pickle
import re
from datetime import UTC
from pathlib import Path

from conftest import MAILLOGS

import postwatch.detect
from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Detector
from postwatch.detect.wire import LINE, MESSAGE, OUTCOME, SESSION, pack, unpack
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted, Delivered, LogLine, Message, Outcome, Session, SessionEnded
from postwatch.sources.files import read_lines

LOGS = [MAILLOGS / "demo" / "mail.log", *sorted((MAILLOGS / "detect").glob("*.log"))]
KEPT: dict[type, tuple[str, ...]] = {
    Message: MESSAGE,
    Outcome: OUTCOME,
    Session: SESSION,
    LogLine: LINE,
}
# the fields left behind: a date becomes the record's time, the rest these blanks
DATES = {"first_seen", "last_seen", "started", "ended", "ts"}
BLANKS: dict[type, dict[str, object]] = {
    Message: {
        "service": "",
        "sasl_method": "",
        "sasl_sender": "",
        "size": None,
        "outcomes": (),
        "session_pid": None,
        "complete": True,
    },
    Outcome: {"dsn": "", "orig_to": "", "deferrals": 0},
    Session: {
        "service": "",
        "pid": 0,
        "tls": "",
        "auth_failures": 0,
        "failed_usernames": (),
        "queue_ids": (),
        "rejects": 0,
        "counters": (),
        "complete": True,
    },
    LogLine: {"program": "", "pid": None, "message": "", "origin": "", "lineno": 0},
}


class Keeps:
    """Takes what the engine takes, and keeps it."""

    def __init__(self, accepts: frozenset[type]) -> None:
        self.accepts = accepts
        self.items: list[object] = []

    def feed(self, item: object) -> list[object]:
        self.items.append(item)
        return []

    def close(self, now: object) -> list[object]:
        return []


def assert_view(crossed: tuple, original: tuple, ts: object) -> None:
    """``crossed`` holds the kept fields of ``original``, of the same types, and blanks."""
    kind = type(original)
    assert type(crossed) is kind
    kept, blanks = KEPT[kind], BLANKS[kind]
    for name in kind._fields:  # type: ignore[attr-defined]
        value, before = getattr(crossed, name), getattr(original, name)
        if name in kept:
            assert value == before and type(value) is type(before), (kind, name)
        elif name in DATES:
            assert value == ts, (kind, name)
        else:
            assert value == blanks[name], (kind, name)


def test_every_record_and_event_the_engine_takes_crosses_with_the_fields_it_reads() -> None:
    """Each item of the shipped logs comes out of pack, pickle and unpack of its own type,
    with every field the engine reads equal to what went in; and each is packed flat."""
    accepts = Detector(DetectSettings(), None, Geo(), SteppedClock()).accepts
    kept = Keeps(accepts)
    pipeline = Pipeline(detector=kept)
    pipeline.run(read_lines([str(log) for log in LOGS], tz=UTC, year=2025))
    pipeline.close()
    assert {type(item) for item in kept.items} == accepts  # every kind is tried
    for item in kept.items:
        packed = pack(item)
        assert type(packed) is tuple and all(
            type(value) in (int, str, tuple) or hasattr(value, "tzinfo") for value in packed
        ), item
        crossed = unpack(pickle.loads(pickle.dumps(packed, protocol=5)))
        assert type(crossed) is type(item)
        if isinstance(item, Accepted | Delivered | SessionEnded):
            assert crossed.ts == item.ts and crossed.ts.tzinfo is item.ts.tzinfo
            assert_view(crossed[1], item[1], item.ts)
            if isinstance(item, Delivered):
                assert_view(crossed.outcome, item.outcome, item.ts)
        else:  # a parse event: its line, then its own fields
            assert_view(crossed.line, item.line, item.line.ts)  # type: ignore[attr-defined]
            assert crossed[1:] == item[1:]  # type: ignore[index]


def test_every_field_is_kept_or_blanked() -> None:
    """A field added to a record must be sent or given its blank here."""
    for kind, kept in KEPT.items():
        fields = set(kind._fields)  # type: ignore[attr-defined]
        assert set(kept) | set(BLANKS[kind]) | (fields & DATES) == fields, kind
        assert not set(kept) & set(BLANKS[kind])


def test_the_engine_reads_no_field_left_behind() -> None:
    """Every ``message.``, ``outcome.``, ``session.`` and ``.line.`` field the detect package
    reads is one that crosses (the engine names its records so; a mutation that reads
    ``message.size`` fails here)."""
    names = {"message": Message, "outcome": Outcome, "session": Session, "line": LogLine}
    pattern = re.compile(r"\b(message|outcome|session|(?<=\.)line)\.([a-z_]+)")
    package = Path(postwatch.detect.__file__).parent
    read: dict[type, set[str]] = {kind: set() for kind in names.values()}
    for path in package.glob("*.py"):
        if path.name == "wire.py":
            continue
        for name, field in pattern.findall(path.read_text()):
            read[names[name]].add(field)
    assert read[Message] >= {"sasl_username", "message_id"} and read[LogLine] == {"ts", "host"}
    for kind, fields in read.items():
        assert fields <= set(KEPT[kind]), kind


def test_what_the_engine_does_not_take_crosses_as_itself() -> None:
    """A float (the time of a record the engine would only take the time from) and anything
    else cross untouched."""
    assert unpack(pack(1700000000.5)) == 1700000000.5
    other = {"kind": "something else"}
    assert pack(other) is other and unpack(other) is other
