"""What crosses to the forked detector: every record and event the engine takes, packed flat,
pickled and unpacked, is the one the replay made (a message without its outcomes)."""

from __future__ import annotations

import pickle
from datetime import UTC

from conftest import MAILLOGS

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Detector
from postwatch.detect.wire import pack, unpack
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted, Delivered
from postwatch.sources.files import read_lines

LOGS = [MAILLOGS / "demo" / "mail.log", *sorted((MAILLOGS / "detect").glob("*.log"))]


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


def test_every_record_and_event_the_engine_takes_crosses_unchanged() -> None:
    """Each item of the shipped logs comes out of pack, pickle and unpack equal to what went
    in, of the same types all the way down, with only a message's outcomes left behind; and
    each is packed flat, none crossing as itself."""
    accepts = Detector(DetectSettings(), None, Geo(), SteppedClock()).accepts
    kept = Keeps(accepts)
    pipeline = Pipeline(detector=kept)
    pipeline.run(read_lines([str(log) for log in LOGS], tz=UTC, year=2025))
    pipeline.close()
    assert {type(item) for item in kept.items} == accepts  # every kind is tried
    with_outcomes = 0
    for item in kept.items:
        packed = pack(item)
        assert type(packed) is tuple and all(
            type(value) in (int, str, tuple) or value is None or hasattr(value, "tzinfo")
            for value in packed
        ), item
        crossed = unpack(pickle.loads(pickle.dumps(packed, protocol=5)))
        expected = item
        if isinstance(item, Accepted | Delivered) and item.message.outcomes:
            with_outcomes += 1
            expected = item._replace(message=item.message._replace(outcomes=()))
        assert crossed == expected
        assert type(crossed) is type(item)
        assert [type(value) for value in crossed] == [type(value) for value in expected]
    assert with_outcomes > 50


def test_what_the_engine_does_not_take_crosses_as_itself() -> None:
    """A float (the time of a record the engine would only take the time from) and anything
    else cross untouched."""
    assert unpack(pack(1700000000.5)) == 1700000000.5
    other = {"kind": "something else"}
    assert pack(other) is other and unpack(other) is other
