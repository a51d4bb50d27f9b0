"""The detector in a second process: same output as in one process, errors not swallowed.

Each case runs in a fresh interpreter (a forked child must not inherit the test runner's
threads), which prints what the test compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import MAILLOGS

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Alert, Detector
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.sources.files import read_lines

DEMO = MAILLOGS / "demo" / "mail.log"
REPLAY = ["replay", "--json", "--year", "2025", "--tz", "UTC"]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postwatch", *args], capture_output=True, text=True, timeout=300
    )


def test_replay_in_two_processes_prints_the_same_stream(tmp_path: Path) -> None:
    """The demo replay with the detector forked prints byte for byte what one process prints,
    alerts included, and the detector really ran in the child, behind a pipe that holds a few
    batches (the default 64 KiB held less than one: the replay waited at each send)."""
    program = f"""
        import fcntl
        import sys
        from datetime import UTC
        from postwatch.clock import SystemClock
        from postwatch.config import load_settings
        from postwatch.detect.worker import PIPE_BYTES, DetectorProcess
        from postwatch.pipeline import build_pipeline
        from postwatch.sources.files import read_lines

        alerts = []
        stages = build_pipeline(
            load_settings(None), clock=SystemClock(), use_store=False, processes=2,
            on_alert=alerts.append,
        )
        detector = stages.pipeline.detector
        assert isinstance(detector, DetectorProcess), detector
        with open("/proc/sys/fs/pipe-max-size") as limit:
            wanted = min(int(limit.read()), PIPE_BYTES)
        held = fcntl.fcntl(detector._to_child.fileno(), fcntl.F_GETPIPE_SZ)
        assert held >= wanted, (held, wanted)
        stages.pipeline.run(read_lines([{str(DEMO)!r}], tz=UTC, year=2025))
        stages.close()
        print(len(alerts), sorted({{alert.subject for alert in alerts}}))
    """
    forked = run_python(program)
    assert forked.returncode == 0, forked.stderr
    count, subjects = forked.stdout.split(" ", 1)
    assert int(count) >= 5 and "'" in subjects
    one = replay(*REPLAY, "--jobs", "1", str(DEMO))
    two = replay(*REPLAY, "--jobs", "2", str(DEMO))
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert two.stdout == one.stdout
    alerts = [json.loads(line) for line in two.stdout.splitlines() if '"type":"alert"' in line]
    assert len(alerts) == int(count)


PROFILE_FIELDS = ("first_seen", "last_seen", "peaks", "pending", "pending_total", "origins")


class LettingGo:
    """The engine fed as the forked detector feeds it: items it would only take the time
    from (``relevant`` false) arrive as that time, through ``tick``."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.accepts = detector.accepts
        self.let_go = 0

    def feed(self, item: object) -> list[Alert]:
        if self.detector.relevant(item):
            return self.detector.feed(item)
        self.let_go += 1
        self.detector.tick(item.ts.timestamp())  # type: ignore[attr-defined]
        return []

    def close(self, now: datetime | None) -> list[Alert]:
        return self.detector.close(now)


@pytest.mark.parametrize(
    "log", [DEMO, *sorted((MAILLOGS / "detect").glob("*.log"))], ids=lambda p: p.name
)
def test_what_the_child_is_not_sent_would_have_changed_nothing(log: Path) -> None:
    """Feeding the engine only what it calls relevant, and the time of the rest, raises the
    same alerts and leaves the same per-subject state as feeding it everything."""
    runs = []
    for wrap in (lambda detector: detector, LettingGo):
        detector = Detector(DetectSettings(), None, Geo(), SteppedClock())
        fed = wrap(detector)
        alerts: list[Alert] = []
        pipeline = Pipeline(detector=fed, on_alert=alerts.append)
        pipeline.run(read_lines([str(log)], tz=UTC, year=2025))
        pipeline.close()
        state = {
            subject: (
                list(subject_state.queue_ids),
                *(getattr(subject_state.profile, name) for name in PROFILE_FIELDS),
            )
            for subject, subject_state in detector.states.items()
        }
        runs.append(([alert.to_json() for alert in alerts], state, getattr(fed, "let_go", 0)))
    (alerts, state, _), (filtered_alerts, filtered_state, let_go) = runs
    assert filtered_alerts == alerts
    assert filtered_state == state
    if log == DEMO:
        assert len(alerts) >= 5 and len(state) >= 5
        assert let_go > 100


def test_learning_into_a_store_from_the_child_keeps_every_row(tmp_path: Path) -> None:
    """replay --learn --db writes the same learned state whether the detector ran forked or
    not: the store report from either database is the same."""
    reports = []
    for jobs in ("1", "2"):
        database = f"sqlite:///{tmp_path / f'state-{jobs}.db'}"
        learned = replay(
            "replay", "--learn", "--db", database, "--jobs", jobs, "--year", "2025",
            "--tz", "UTC", str(DEMO),
        )  # fmt: skip
        assert learned.returncode == 0, learned.stderr
        report = replay(
            "report",
            "--format",
            "json",
            "--db",
            database,
            "--since",
            "2025-11-25",
            "--until",
            "2025-11-26",
        )
        assert report.returncode == 0, report.stderr
        reports.append(json.loads(report.stdout))
    accounts = [{row["account"]: row["messages"] for row in r["accounts"]} for r in reports]
    assert sum(accounts[0].values()) > 50
    assert accounts[1] == accounts[0]


def test_a_child_that_dies_is_an_error_not_a_silent_replay() -> None:
    """When the detector process dies, the parent keeps a DetectError for the pipeline to
    raise instead of finishing a replay with alerts missing."""
    program = """
        import os
        from postwatch.detect import worker
        from postwatch.pipeline import Pipeline

        class Dies:
            accepts = frozenset({int})
            def relevant(self, item):
                return True
            def tick(self, now):
                pass
            def feed(self, item):
                if item == 1500:
                    os._exit(3)
                return []
            def close(self, now):
                return []

        detector = worker.start(Dies(), None)
        assert detector is not None
        for number in range(5000):
            detector.feed(number)
        detector.close(None)
        print(f"{type(detector.failure).__name__}: {detector.failure}")

        class DiesAtTheEnd(Dies):
            def close(self, now):
                os._exit(4)

        pipeline = Pipeline(detector=worker.start(DiesAtTheEnd(), None))
        try:
            pipeline.close()
        except worker.DetectError as exc:
            print(f"close: {exc}")
    """
    result = run_python(program)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "DetectError: the detector process ended unexpectedly",
        "close: the detector process ended unexpectedly",
    ]


def test_a_child_gone_before_the_end_does_not_hang_the_close() -> None:
    """A child that is gone before the parent sends its last batch: the send fails, the
    parent takes what the child left, and ``close`` returns with a DetectError at once
    instead of waiting for replies that never come."""
    program = """
        import os, time
        from postwatch.detect import worker

        class GoneAtOnce:
            accepts = frozenset({int})
            def relevant(self, item):
                return True
            @property
            def feed(self):
                os._exit(5)  # the child reads this first

        detector = worker.start(GoneAtOnce(), None)
        time.sleep(0.5)
        for number in range(10):
            detector.feed(number)
        detector.close(None)
        print(f"{type(detector.failure).__name__}: {detector.failure}")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DetectError: the detector process ended unexpectedly"


def test_bad_items_are_skipped_and_a_failing_close_is_raised_here() -> None:
    """An item the engine chokes on is logged once and skipped, later alerts still arrive in
    order, and an error at the end (a store that cannot be written) reaches the parent as the
    same exception type, after the alerts raised before it."""
    program = """
        from postwatch.detect import worker
        from postwatch.errors import StoreError

        class Picky:
            accepts = frozenset({int})
            def relevant(self, item):
                return True
            def tick(self, now):
                pass
            def feed(self, item):
                if item % 1000 == 7:
                    raise ValueError(f"cannot judge {item}")
                return [item] if item % 700 == 0 else []
            def close(self, now):
                raise StoreError("postwatch.db: database is locked")

        detector = worker.start(Picky(), None)
        assert detector is not None
        alerts = []
        for number in range(3000):
            alerts += detector.feed(number)
        alerts += detector.close(None)
        print(alerts, f"{type(detector.failure).__name__}: {detector.failure}")
    """
    result = run_python(program)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "[0, 700, 1400, 2100, 2800] StoreError: postwatch.db: database is locked"
    )
    assert result.stderr.count("ValueError while detecting") == 1
