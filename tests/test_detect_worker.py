"""The detector in a second process: same output as in one process, errors not swallowed.

Each case runs in a fresh interpreter (a forked child must not inherit the test runner's
threads), which prints what the test compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import MAILLOGS

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
    alerts included, and the detector really ran in the child."""
    program = f"""
        import sys
        from datetime import UTC
        from postwatch.clock import SystemClock
        from postwatch.config import load_settings
        from postwatch.detect.worker import DetectorProcess
        from postwatch.pipeline import build_pipeline
        from postwatch.sources.files import read_lines

        alerts = []
        stages = build_pipeline(
            load_settings(None), clock=SystemClock(), use_store=False, processes=2,
            on_alert=alerts.append,
        )
        assert isinstance(stages.pipeline.detector, DetectorProcess), stages.pipeline.detector
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


def test_bad_items_are_skipped_and_a_failing_close_is_raised_here() -> None:
    """An item the engine chokes on is logged once and skipped, later alerts still arrive in
    order, and an error at the end (a store that cannot be written) reaches the parent as the
    same exception type, after the alerts raised before it."""
    program = """
        from postwatch.detect import worker
        from postwatch.errors import StoreError

        class Picky:
            accepts = frozenset({int})
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
