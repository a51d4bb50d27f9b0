"""The pipeline: batches keep log order, and one bad line never stops it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import MAILLOGS

from postwatch.parse.events import Unparsed
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted, LogLine
from postwatch.sources.files import BATCH_LINES, read_batches, read_lines

DEMO = MAILLOGS / "demo" / "mail.log"


class Recorder:
    """A detector that keeps everything it is fed, in order, and may fail on one item."""

    def __init__(self, fail_on: type | None = None, fail_at: int = 0) -> None:
        self.items: list[Any] = []
        self.fail_on, self.fail_at = fail_on, fail_at  # the fail_at-th item of that type
        self.seen = 0

    def feed(self, item: object) -> list[Any]:
        self.items.append(item)
        if type(item) is self.fail_on:
            self.seen += 1
            if self.seen == self.fail_at:
                raise RuntimeError("a detector bug")
        return []

    def close(self, now: datetime | None) -> list[Any]:
        return []


def demo_lines() -> list[LogLine]:
    return list(read_lines([str(DEMO)], tz=UTC, year=2025))


def test_batches_feed_the_detector_in_the_order_lines_do() -> None:
    """Whole files in batches give the detector the very sequence line-by-line runs give:
    each line's event, then the records it completed, before the next line's."""
    lines = demo_lines()
    assert len(lines) > 20 * BATCH_LINES
    one_by_one = Recorder()
    pipeline = Pipeline(detector=one_by_one)
    for line in lines:
        pipeline.run([line])
    batched = Recorder()
    pipeline = Pipeline(detector=batched)
    pipeline.run_batches(read_batches([str(DEMO)], tz=UTC, year=2025))
    assert batched.items == one_by_one.items
    events = [item for item in batched.items if hasattr(item, "line")]
    assert [event.line for event in events] == lines
    assert sum(type(item) is Accepted for item in batched.items) > 100


def test_a_failing_detector_loses_one_item_not_the_batch(caplog: Any) -> None:
    """An error is logged once with the file and line, and every later line still runs."""
    lines = demo_lines()
    clean = Pipeline(detector=Recorder())
    clean.run(lines)
    failing = Recorder(fail_on=Accepted, fail_at=300)
    pipeline = Pipeline(detector=failing)
    with caplog.at_level(logging.ERROR, logger="postwatch.pipeline"):
        pipeline.run(lines)
    assert pipeline.errors == {"RuntimeError": 1}
    assert pipeline.tally.events == clean.tally.events
    assert pipeline.tally.account_records() == clean.tally.account_records()
    # the failing line's other records are lost, no other line's
    assert len(clean.detector.items) - len(failing.items) <= 3  # type: ignore[union-attr]
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{DEMO}:") and "RuntimeError" in message
    lineno = int(message[len(f"{DEMO}:") :].split(":")[0])
    assert lineno > 10 * BATCH_LINES
    assert lines[lineno - 1].message.endswith("(queue active)")


def test_a_parser_error_makes_one_line_unparsed(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Should the parser ever raise, that line counts as unparsed and the batch goes on."""
    lines = demo_lines()
    clean = Pipeline()
    clean.run(lines)
    pipeline = Pipeline()
    bad = lines[300]
    real = pipeline.parser.__class__.__call__

    def parse(parser: Any, line: LogLine) -> Any:
        if line is bad:
            raise ValueError("a parser bug")
        return real(parser, line)

    monkeypatch.setattr(type(pipeline.parser), "__call__", parse)
    monkeypatch.setattr(
        type(pipeline.parser), "parse_all", lambda parser, batch: [parser(x) for x in batch]
    )
    with caplog.at_level(logging.ERROR, logger="postwatch.pipeline"):
        pipeline.run(lines)
    assert pipeline.errors == {"ValueError": 1}
    assert f"{DEMO}:301: ValueError" in caplog.text
    assert pipeline.tally.lines == clean.tally.lines == len(lines)
    assert pipeline.tally.unparsed[bad.program] == clean.tally.unparsed[bad.program] + 1
    assert sum(pipeline.tally.by_type.values()) == len(lines)
    assert pipeline.tally.by_type[Unparsed] == clean.tally.by_type[Unparsed] + 1


def test_last_time_is_the_last_lines() -> None:
    lines = demo_lines()
    pipeline = Pipeline()
    pipeline.run(iter(lines))
    assert pipeline.last_ts == lines[-1].ts
