"""postwatch watch: the loop, exactly-once commits, signals, sd_notify and postwatch status."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import MAILLOGS
from test_correlate import message_summary

import postwatch.watch
from postwatch.clock import SteppedClock
from postwatch.errors import ConfigError, StoreError, UsageError
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted, Completed, Delivered, LogLine, SessionEnded
from postwatch.sdnotify import Notifier
from postwatch.status import (
    CHECKPOINT_FILE,
    SUMMARY_FILE,
    JsonCheckpoint,
    problems,
    read_status,
    restore,
    status_check,
)
from postwatch.tally import Tally
from postwatch.watch import JournalOptions, check_reload, open_watch, restart_argv, watch_command
from postwatch.watcher import REFRESH_INTERVAL, FileSource, Waker, Watcher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def submissions(corpus: Path) -> list[str]:
    """20,000 real lines with 1,400 SASL submissions (tier C: read here, never copied)."""
    return (corpus / "pflgviewer" / "mail.log").read_text(errors="replace").splitlines()


def append(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write("".join(f"{line}\n" for line in lines))


def summary(state_dir: Path) -> list[dict[str, Any]]:
    text = (state_dir / SUMMARY_FILE).read_text()
    return [json.loads(line) for line in text.splitlines()]


def replay_summary(lines: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    """What an uninterrupted watcher reports for ``lines``."""
    state, log = tmp_path / "reference-state", tmp_path / "reference.log"
    log.write_bytes(b"")
    watcher = watch(log, state, SteppedClock())
    watcher.start()
    append(log, lines)
    while watcher.step():
        pass
    watcher.stop()
    return summary(state)


def watch(log: Path, state_dir: Path, clock: SteppedClock, **options: Any) -> Watcher:
    pipeline = Pipeline(tally=Tally())
    options.setdefault("batch_lines", 500)
    return open_watch(
        [str(log)], state_dir=state_dir, pipeline=pipeline, tz=None, clock=clock, **options
    )


# --- the loop, in process -----------------------------------------------------------------------


def test_lines_are_processed_and_reported(tmp_path: Path, submissions: list[str]) -> None:
    """Appended lines reach the pipeline; status.json and summary.jsonl describe them."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    clock = SteppedClock()
    watcher = watch(log, state, clock)
    watcher.start()
    append(log, submissions[:1000])
    assert watcher.step() == 500
    assert watcher.step() == 500
    clock.step(1)  # commit_interval: the next poll commits
    assert watcher.step() == 0
    status = read_status(state)
    assert status["state"] == "running" and status["lines"] == 1000
    [source] = status["sources"]
    assert source["lag_bytes"] == 0 and source["offset"] == log.stat().st_size
    assert summary(state)[-1]["lines"] == 1000
    watcher.stop()
    assert read_status(state)["state"] == "stopped"


def test_crash_before_commit_neither_loses_nor_double_counts(
    tmp_path: Path, submissions: list[str]
) -> None:
    """Lines processed after the last commit are processed again, from the committed state."""
    lines = submissions[:6000]
    expected = replay_summary(lines, tmp_path)
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    clock = SteppedClock()
    first = watch(log, state, clock, commit_interval=10)
    first.start()
    append(log, lines)
    for _ in range(3):  # 1,500 lines committed, a commit_interval apart
        clock.step(11)
        first.step()
    first.step()  # 1,000 more lines processed and not committed
    first.step()
    first.close()  # the crash: no commit, no stop
    committed = json.loads((state / CHECKPOINT_FILE).read_text())["positions"]
    assert 0 < next(iter(committed.values()))["offset"] < log.stat().st_size
    second = watch(log, state, clock)
    second.start()
    while second.step():
        pass
    second.stop()
    assert summary(state) == expected
    assert expected[-1]["lines"] == 6000


def test_first_start_commits_its_starting_point(tmp_path: Path, submissions: list[str]) -> None:
    """A crash before the first batch still resumes where the first run started, losing none."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    append(log, submissions[:10])  # before the first start: skipped, it starts at the end
    first = watch(log, state, SteppedClock())
    first.start()
    append(log, submissions[10:20])
    first.close()
    second = watch(log, state, SteppedClock())
    second.start()
    assert second.step() == 10


def test_a_second_watcher_on_the_same_state_is_refused(tmp_path: Path) -> None:
    """Two watchers never share a state directory."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    first = watch(log, state, SteppedClock())
    with pytest.raises(UsageError, match="another postwatch watch"):
        watch(log, state, SteppedClock())
    first.close()
    watch(log, state, SteppedClock()).close()


def test_a_failed_checkpoint_write_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash inside save (before the rename) leaves the last commit whole, and no temp file."""
    checkpoint = JsonCheckpoint(tmp_path)
    checkpoint.save({"file:/x": {"offset": 5}}, b"old state")

    def crash(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="No space left"):
        checkpoint.save({"file:/x": {"offset": 9}}, b"new state")
    monkeypatch.undo()
    saved = checkpoint.load()
    assert saved is not None and saved.positions == {"file:/x": {"offset": 5}}
    assert saved.state == b"old state"
    assert sorted(path.name for path in tmp_path.iterdir()) == [CHECKPOINT_FILE]


def test_checkpoint_that_others_could_write_is_refused(tmp_path: Path) -> None:
    """The state inside the checkpoint is only loaded from a file nobody else can write."""
    checkpoint = JsonCheckpoint(tmp_path)
    checkpoint.save({}, b"state")
    (tmp_path / CHECKPOINT_FILE).chmod(0o666)
    with pytest.raises(StoreError, match="writable by no one else"):
        checkpoint.load()


def test_damaged_checkpoint_stops_the_start(tmp_path: Path) -> None:
    """A damaged checkpoint is an error naming the file, never a silent fresh start."""
    (tmp_path / CHECKPOINT_FILE).write_text('{"version": 1, "positions": {}, "state": "!!"}')
    (tmp_path / CHECKPOINT_FILE).chmod(0o600)
    with pytest.raises(StoreError, match="damaged"):
        JsonCheckpoint(tmp_path).load()


def test_unreadable_state_keeps_positions_and_starts_counting_again(
    tmp_path: Path, submissions: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """State from another format is dropped with a warning; positions still hold."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    first = watch(log, state, SteppedClock())
    first.start()
    append(log, submissions[:300])
    first.step()
    first.stop()
    checkpoint = JsonCheckpoint(state)
    saved = checkpoint.load()
    assert saved is not None
    checkpoint.save(saved.positions, b"not a pickle")
    second = watch(log, state, SteppedClock())
    assert "cannot be read" in caplog.text
    second.start()
    append(log, submissions[300:310])
    assert second.step() == 10
    second.stop()
    assert summary(state)[-1]["lines"] == 10


class FullDisk(JsonCheckpoint):
    """A checkpoint whose next saves fail, as on a full disk."""

    failures = 0

    def save(self, positions: Any, state: bytes | None) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("cannot write checkpoint.json: No space left on device")
        super().save(positions, state)


def test_a_failed_commit_is_reported_and_retried(tmp_path: Path, submissions: list[str]) -> None:
    """A commit that fails does not stop the watcher; the next interval commits it all."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    clock = SteppedClock()
    checkpoint = FullDisk(state)
    watcher = watch(log, state, clock, checkpoint=checkpoint)
    watcher.start()
    checkpoint.failures = 1
    append(log, submissions[:20])
    clock.step(1)
    assert watcher.step() == 20
    assert watcher.errors["StoreError"] == 1
    clock.step(1)
    watcher.step()
    saved = checkpoint.load()
    assert saved is not None
    assert next(iter(saved.positions.values()))["offset"] == log.stat().st_size
    watcher.stop()


def test_the_same_file_given_twice_is_followed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two spellings of one path make one source."""
    log = tmp_path / "mail.log"
    monkeypatch.chdir(tmp_path)
    watcher = open_watch(
        [str(log), "mail.log", "./mail.log"],
        state_dir=tmp_path / "state",
        pipeline=Pipeline(tally=Tally()),
        clock=SteppedClock(),
    )
    assert [source.key for source in watcher.sources] == [f"file:{log}"]
    watcher.close()


class BrokenSource:
    key = "broken"

    def read(self, max_lines: int) -> list[LogLine]:
        raise OSError(5, "Input/output error")

    def position(self) -> dict[str, Any]:
        return {}

    def report(self) -> dict[str, Any]:
        return {"name": "broken", "lag_bytes": None, "error": ""}

    def fileno(self) -> None:
        return None

    def close(self) -> None:
        pass


def test_a_failing_source_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    """A source that raises is counted and reported; the loop keeps turning."""
    clock = SteppedClock()
    watcher = Watcher(
        [BrokenSource()], Pipeline(tally=Tally()), JsonCheckpoint(tmp_path), clock=clock
    )
    watcher.start()
    assert watcher.step() == 0
    assert watcher.step() == 0
    assert watcher.errors["OSError"] == 2
    assert watcher.last_error is not None and "Input/output error" in watcher.last_error["message"]


def test_run_loops_until_stopped_then_commits(tmp_path: Path, submissions: list[str]) -> None:
    """run() waits between idle polls and, once stopped, commits everything it read."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    clock = SteppedClock()
    watcher = watch(log, state, clock, commit_interval=3600)
    feed = iter([submissions[:40], submissions[40:50]])
    waits: list[float] = []

    def wait(seconds: float, fds: list[int]) -> None:
        if len(waits) > 10:
            pytest.fail("run() did not stop when asked to")
        waits.append(seconds)
        clock.step(seconds)
        chunk = next(feed, None)
        if chunk is None:
            watcher.request_stop()
        else:
            append(log, chunk)

    watcher.run(wait)
    assert waits == [watcher.poll_interval] * 3
    assert summary(state)[-1]["lines"] == 50
    position = next(iter(json.loads((state / CHECKPOINT_FILE).read_text())["positions"].values()))
    assert position["offset"] == log.stat().st_size


def test_reload_keeps_running_on_a_broken_config_and_ends_the_loop_on_a_good_one(
    tmp_path: Path, submissions: list[str]
) -> None:
    """A broken config on reload is reported and the loop goes on; a good one ends it like a
    stop (committed, no line read after it) with ``restart`` set, and no STOPPING sent."""
    from postwatch.config import load_settings

    config = tmp_path / "postwatch.toml"
    config.write_text("[store]\nbatch_size = 100\n")
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    sent: list[tuple[str, ...]] = []

    class Recording(Notifier):
        def send(self, *fields: str) -> bool:
            sent.append(fields)
            return True

    watcher = watch(
        log, state, SteppedClock(), reload=lambda: load_settings(config), notifier=Recording({})
    )
    watcher.start()
    config.write_text("[store]\nbatch_size = -5\n")
    watcher.request_reload()
    append(log, submissions[:10])
    assert watcher.step() == 10
    assert not watcher.restart
    last_error = read_status(state)["last_error"]
    assert "old one is kept" in last_error["message"]
    assert f"{config}:2: store.batch_size" in last_error["message"]
    config.write_text("[store]\nbatch_size = 200\n")
    watcher.request_reload()
    append(log, submissions[10:30])
    sent.clear()
    assert watcher.step() == 0
    assert watcher.restart
    watcher.stop()
    assert [fields[0].split("=")[0] for fields in sent] == ["RELOADING", "STATUS"]
    assert read_status(state)["state"] == "reloading"
    assert summary(state)[-1]["lines"] == 10
    saved = JsonCheckpoint(state).load()
    assert saved is not None
    assert next(iter(saved.positions.values()))["offset"] < log.stat().st_size


def test_a_stop_asked_during_a_reload_wins(tmp_path: Path) -> None:
    """A SIGTERM after a good config was checked stops the watcher: it does not start again."""
    watcher = watch(tmp_path / "mail.log", tmp_path / "state", SteppedClock(), reload=lambda: None)
    watcher.start()
    watcher.request_reload()
    watcher.step()
    assert watcher.restart
    watcher.request_stop()
    assert not watcher.restart
    watcher.stop()
    assert read_status(tmp_path / "state")["state"] == "stopped"


def test_check_reload_refuses_what_the_new_program_could_not_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload is checked like ``config check``, and a state directory or a database the
    new config changes must open; an unchanged good config passes."""
    monkeypatch.delenv("POSTWATCH_DB", raising=False)
    config, state = tmp_path / "postwatch.toml", tmp_path / "state"
    running_url = f"sqlite:///{state.absolute() / 'postwatch.db'}"
    running = (state, running_url)
    config.write_text(f'[store]\nstate_dir = "{state}"\n')
    check_reload(str(config), None, None, running=running)
    config.write_text("[store]\n\n[detect.auth]\nbrute_failures = 0\n")
    with pytest.raises(ConfigError, match=f"{config}:4: detect.auth.brute_failures"):
        check_reload(str(config), None, state, running=running)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config.write_text(f'[store]\nurl = "sqlite:///{blocker}/postwatch.db"\n')
    with pytest.raises(StoreError, match="a-file"):
        check_reload(str(config), None, state, running=running)
    other = tmp_path / "other-state"
    held = watch(tmp_path / "mail.log", other, SteppedClock())
    config.write_text(f'[store]\nstate_dir = "{other}"\n')
    with pytest.raises(UsageError, match="another postwatch watch"):
        check_reload(str(config), None, None, running=running)
    held.close()
    check_reload(str(config), None, None, running=running)


def test_restart_argv_is_the_start_command_with_this_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command run again keeps the interpreter's options, ``-m`` or the script, and
    every argument; its program is this interpreter's full path, so a virtualenv is kept."""
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python3")
    for started in (
        ["python3", "-X", "dev", "-m", "postwatch", "watch", "--config", "p.toml", "mail.log"],
        ["/opt/venv/bin/python3", "/opt/venv/bin/postwatch", "watch", "mail.log"],
    ):
        monkeypatch.setattr(sys, "orig_argv", started)
        assert restart_argv() == ["/opt/venv/bin/python3", *started[1:]]


def test_a_sighup_blocked_while_starting_reaches_the_watcher(tmp_path: Path) -> None:
    """A SIGHUP that arrived while the new program started (blocked across exec) is handled
    once its handler is installed: it asks for a reload instead of killing the process."""
    calls: list[int] = []
    watcher = watch(
        tmp_path / "mail.log", tmp_path / "state", SteppedClock(), reload=lambda: calls.append(1)
    )
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    waker = Waker()
    try:
        # to this thread: a process-wide signal could go to another thread of the test run,
        # where SIGHUP is not blocked, and end the run
        signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
        assert signal.SIGHUP in signal.sigpending()
        waker.install(watcher)
        assert signal.SIGHUP not in signal.sigpending()
    finally:
        waker.close()
        saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # drops it if still pending
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGHUP, saved)
    watcher.start()
    watcher.step()
    assert calls == [1]
    watcher.stop()


def test_refresh_interval_0_never_refreshes(tmp_path: Path) -> None:
    """With a refresh interval of 0 the shared state is never merged, however long it runs."""
    clock = SteppedClock()
    calls: list[float] = []
    watcher = watch(
        tmp_path / "mail.log",
        tmp_path / "state",
        clock,
        refresh=lambda: calls.append(clock.monotonic()),
        refresh_interval=0,
    )
    watcher.start()
    for _ in range(5):
        clock.step(REFRESH_INTERVAL)
        watcher.step()
    watcher.stop()
    assert calls == []


def test_watch_command_refreshes_at_the_configured_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[store] refresh_interval`` reaches the watcher the command builds: it merges the
    shared store at that interval of its clock, not at the default one."""
    config = tmp_path / "postwatch.toml"
    config.write_text('[store]\nrefresh_interval = "90s"\n')
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    clock = SteppedClock()
    calls: list[float] = []

    def stepped_watch(paths: list[str], **options: Any) -> Watcher:
        """The command's own watcher, on a stepped clock and counting its refreshes."""
        refresh = options["refresh"]

        def counted() -> object:
            calls.append(clock.monotonic())
            return refresh()

        watcher = open_watch(paths, **{**options, "clock": clock, "refresh": counted})
        watcher.start()
        for _ in range(3):
            clock.step(45)
            watcher.step()
        watcher.request_stop()  # run() then only starts and stops
        return watcher

    monkeypatch.delenv("POSTWATCH_DB", raising=False)
    monkeypatch.setattr(postwatch.watch, "open_watch", stepped_watch)
    arguments = ["--config", str(config), "--state-dir", str(tmp_path / "state"), "--dry-run"]
    result = CliRunner().invoke(watch_command, [*arguments, str(log)])
    assert result.exit_code == 0, result.output
    assert calls == [90.0]


# --- open messages across a stop ----------------------------------------------------------------

# Real session blocks (zentyal, GPL-2.0: provenance in the file's header) and the messages the
# correlator must complete from them, each once and whole.
ZENTYAL = MAILLOGS / "correlate" / "zentyal.log"
# The SASL submission still open (client= seen, no removed) when the watcher stops
OPEN_QUEUE_ID = "A99A53D8DA"
CORRELATED = (Accepted, Delivered, Completed, SessionEnded)
# A live watcher's clock is just past the lines it reads: yearless stamps then get the same
# year whether a framer met the lines before them (no restart) or starts at them (a restart).
AFTER_ZENTYAL = datetime(2026, 3, 17, tzinfo=UTC)


def zentyal_lines() -> list[str]:
    return [line for line in ZENTYAL.read_text().splitlines() if line and not line.startswith("#")]


def zentyal_golden() -> dict[str, Any]:
    return json.loads(ZENTYAL.with_suffix(".golden.json").read_text())


class RecordingDetector:
    """A detector with no ``accepts`` set: the pipeline hands it every item, and it keeps the
    correlated records in ``seen`` (shared by the watchers of one test)."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def feed(self, item: object) -> list[Any]:
        if isinstance(item, CORRELATED):
            self.seen.append(item)
        return []

    def close(self, now: object) -> list[Any]:
        return []


def run_watch(log: Path, state: Path, seen: list[Any], lines: list[str]) -> None:
    """One start of a watcher recording into ``seen``: ``lines`` are appended and read, then
    it stops as on SIGTERM."""
    watcher = open_watch(
        [str(log)],
        state_dir=state,
        pipeline=Pipeline(tally=Tally(), detector=RecordingDetector(seen)),
        tz=UTC,
        clock=SteppedClock(AFTER_ZENTYAL),
        batch_lines=4,
    )
    watcher.start()
    append(log, lines)
    while watcher.step():
        pass
    watcher.stop()


def flushed_incomplete(seen: list[Any]) -> list[Any]:
    """The messages and sessions in ``seen`` that left memory without their last line."""
    return [
        record
        for record in seen
        if (isinstance(record, Completed) and not record.message.complete)
        or (isinstance(record, SessionEnded) and not record.session.complete)
    ]


def of_message(seen: list[Any], queue_id: str) -> list[Any]:
    """The records in ``seen`` about the message ``queue_id``."""
    return [
        record
        for record in seen
        if not isinstance(record, SessionEnded) and record.message.queue_id == queue_id
    ]


def completed_summaries(seen: list[Any]) -> list[dict[str, Any]]:
    return [message_summary(record.message) for record in seen if isinstance(record, Completed)]


def test_a_stop_carries_open_messages_and_the_restart_completes_them_once(
    tmp_path: Path,
) -> None:
    """Stopped after any line of a real log and started again, the watcher emits exactly the
    records of an uninterrupted run: each message completed once, whole, none flushed at stop."""
    lines, golden = zentyal_lines(), zentyal_golden()
    reference: list[Any] = []
    run_watch(tmp_path / "reference.log", tmp_path / "reference-state", reference, lines)
    assert completed_summaries(reference) == golden["completed"]
    assert flushed_incomplete(reference) == []
    for cut in range(1, len(lines)):
        log, state = tmp_path / f"mail{cut}.log", tmp_path / f"state{cut}"
        seen: list[Any] = []
        log.write_bytes(b"")
        run_watch(log, state, seen, lines[:cut])
        run_watch(log, state, seen, lines[cut:])
        assert seen == reference, f"stopped after line {cut}: {lines[cut - 1]}"
        assert summary(state) == summary(tmp_path / "reference-state")


def test_the_open_submission_is_in_the_checkpoint_not_in_the_records_at_stop(
    tmp_path: Path,
) -> None:
    """A SASL submission with client= but no removed at stop is in the committed state and
    emitted nothing; the lines after the restart count it once, with its user and recipient."""
    lines = zentyal_lines()
    cut = next(n for n, line in enumerate(lines, 1) if f"{OPEN_QUEUE_ID}: client=" in line)
    log, state = tmp_path / "mail.log", tmp_path / "state"
    seen: list[Any] = []
    log.write_bytes(b"")
    run_watch(log, state, seen, lines[:cut])
    assert of_message(seen, OPEN_QUEUE_ID) == [] and flushed_incomplete(seen) == []
    saved = JsonCheckpoint(state).load()
    assert saved is not None and saved.state is not None
    carried = Pipeline(tally=Tally())
    assert restore(carried, saved.state)
    held = carried.correlator.messages[("kif", OPEN_QUEUE_ID)]
    assert (held.sasl_username, held.client_ip) == ("baboon@zzz.com", "95.16.163.205")
    run_watch(log, state, seen, lines[cut:])
    ours = of_message(seen, OPEN_QUEUE_ID)
    assert [type(record) for record in ours] == [Accepted, Delivered, Completed]
    accepted, _, completed = (record.message for record in ours)
    assert (accepted.sasl_username, accepted.sender, accepted.nrcpt) == (
        "baboon@zzz.com",
        "baboon@zzz.com",
        1,
    )
    assert completed.complete and completed.sasl_username == "baboon@zzz.com"
    assert [(o.recipient, o.status) for o in completed.outcomes] == [("lazaro@yyy.es", "sent")]
    [account] = [row for row in summary(state) if row.get("subject") == "baboon@zzz.com"]
    assert (account["messages"], account["recipients"]) == (1, 1)


def test_watch_command_stopped_with_an_open_message_feeds_the_detector_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``postwatch watch`` with its real detector and store, stopped while a SASL submission
    is open and run again: the detector sees its message once, whole, and no record flushed
    as incomplete at either stop."""
    from postwatch.detect import Detector

    lines = zentyal_lines()
    cut = next(n for n, line in enumerate(lines, 1) if f"{OPEN_QUEUE_ID}: client=" in line)
    config, log, state = tmp_path / "postwatch.toml", tmp_path / "mail.log", tmp_path / "state"
    config.write_text("[geo]\nbuiltin = false\n")
    log.write_bytes(b"")
    fed: list[Any] = []
    detector_feed = Detector.feed

    def recording_feed(self: Detector, item: object) -> list[Any]:
        if isinstance(item, CORRELATED):
            fed.append(item)
        return detector_feed(self, item)

    monkeypatch.setattr(Detector, "feed", recording_feed)
    monkeypatch.delenv("POSTWATCH_DB", raising=False)
    arguments = ["--config", str(config), "--state-dir", str(state), "--dry-run", "--tz", "UTC"]
    for part in (lines[:cut], lines[cut:]):

        def stepped_watch(paths: list[str], part: list[str] = part, **options: Any) -> Watcher:
            """The command's own watcher on a stepped clock: reads ``part``, then is stopped."""
            watcher = open_watch(paths, **{**options, "clock": SteppedClock(AFTER_ZENTYAL)})
            watcher.start()
            append(log, part)
            while watcher.step():
                pass
            watcher.request_stop()  # as SIGTERM: run() then commits and stops
            return watcher

        monkeypatch.setattr(postwatch.watch, "open_watch", stepped_watch)
        result = CliRunner().invoke(watch_command, [*arguments, str(log)])
        assert result.exit_code == 0, result.output
    assert [record for record in fed if isinstance(record, Completed)] == []
    assert flushed_incomplete(fed) == []
    ours = of_message(fed, OPEN_QUEUE_ID)
    assert [type(record) for record in ours] == [Accepted, Delivered]
    accepted, delivered = ours
    assert (accepted.message.sasl_username, accepted.message.nrcpt) == ("baboon@zzz.com", 1)
    assert delivered.outcome.recipient == "lazaro@yyy.es"
    assert [
        row["messages"] for row in summary(state) if row.get("subject") == "baboon@zzz.com"
    ] == [1]


def test_journal_cursor_is_committed_and_resumed(tmp_path: Path, submissions: list[str]) -> None:
    """With --journal the cursor of the last entry processed is committed and resumed after."""
    from test_follow import fake_journalctl, journal_entry

    messages = [line.split(": ", 1)[1] for line in submissions[:4]]
    script = fake_journalctl(tmp_path, [journal_entry(n, m) for n, m in enumerate(messages)])
    state = tmp_path / "state"
    journal = JournalOptions(executable=str(script))
    first = open_watch(
        [],
        state_dir=state,
        pipeline=Pipeline(tally=Tally()),
        journal=journal,
        clock=SteppedClock(),
        from_start=True,
        batch_lines=3,
    )
    first.start()
    step_until(first, 3)
    first.stop()
    saved = JsonCheckpoint(state).load()
    assert saved is not None
    assert saved.positions == {"journal": {"cursor": f"s=1;i={first.lines - 1}"}}
    second = open_watch(
        [], state_dir=state, pipeline=Pipeline(tally=Tally()), journal=journal, clock=SteppedClock()
    )
    second.start()
    step_until(second, 4 - first.lines)
    second.stop()
    assert summary(state)[-1]["lines"] == 4


def step_until(watcher: Watcher, lines: int) -> None:
    """Step until ``lines`` lines are read, waiting on the journal's pipe between steps."""
    for _ in range(100):
        watcher.step()
        if watcher.lines >= lines:
            return
        fds = [fd for fd in (source.fileno() for source in watcher.sources) if fd is not None]
        select.select(fds, [], [], 5)
    pytest.fail(f"only {watcher.lines} of {lines} lines read")


# --- systemd notifications -------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    assert len(path) < 100, "unix socket path too long"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the sender's pid, as systemd
    receiver.settimeout(20)
    yield receiver, path
    receiver.close()


def messages(receiver: socket.socket) -> list[str]:
    out = []
    receiver.setblocking(False)
    try:
        while True:
            out.append(receiver.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        receiver.settimeout(20)
    return out


def test_sd_notify_ready_status_watchdog_reloading_stopping(
    tmp_path: Path, submissions: list[str], notify_socket: tuple[socket.socket, str]
) -> None:
    """Under systemd the watcher sends READY, STATUS per batch, WATCHDOG, RELOADING (then READY
    again, the broken config kept), STOPPING."""
    receiver, path = notify_socket
    clock = SteppedClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, clock=clock)
    log = tmp_path / "mail.log"
    log.write_bytes(b"")

    def broken() -> None:
        raise ConfigError("must be an integer >= 1, not 0", path="p.toml", line=2, key="x")

    watcher = watch(log, tmp_path / "state", clock, notifier=notifier, reload=broken)
    watcher.start()
    assert messages(receiver) == ["READY=1\nSTATUS=running: 0 lines read, 0 bytes behind, 0 errors"]
    append(log, submissions[:20])
    watcher.step()
    assert messages(receiver) == [
        "STATUS=running: 20 lines read, 0 bytes behind, 0 errors",
        "WATCHDOG=1",
    ]
    clock.step(4)
    watcher.step()  # idle: a last STATUS, no WATCHDOG before 5 s
    assert messages(receiver) == ["STATUS=running: 20 lines read, 0 bytes behind, 0 errors"]
    clock.step(1)
    watcher.request_reload()
    watcher.step()
    sent = messages(receiver)
    assert sent[0].startswith("RELOADING=1\nMONOTONIC_USEC=") and sent[1].startswith("READY=1")
    assert sent[2:] == ["WATCHDOG=1"]
    watcher.stop()
    assert messages(receiver) == [
        "STOPPING=1\nSTATUS=running: 20 lines read, 0 bytes behind, 1 errors"  # the config
    ]


def test_notifier_watchdog_only_for_its_own_pid() -> None:
    """WATCHDOG_PID naming another process turns the watchdog off; no socket, no sends."""
    assert (
        Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, pid=2).watchdog_interval is None
    )
    assert (
        Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "2"}, pid=2).watchdog_interval == 2.0
    )
    assert not Notifier({}).send("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "relative"}).enabled


# --- postwatch status --------------------------------------------------------------------------


def test_status_is_healthy_while_fresh_and_unhealthy_when_stale(
    tmp_path: Path, submissions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """status exits 0 while the heartbeat is fresh; 1 when it is old or a source stalls."""
    log, state = tmp_path / "mail.log", tmp_path / "state"
    log.write_bytes(b"")
    clock = SteppedClock()
    watcher = watch(log, state, clock, batch_lines=10)
    watcher.start()
    append(log, submissions[:30])
    watcher.step()
    clock.step(5)
    status_check(state, 60, False, clock)
    assert capsys.readouterr().out.splitlines()[-1] == "healthy"
    status = read_status(state)
    [source] = status["sources"]
    assert source["lag_bytes"] > 0
    later = clock.now() + timedelta(seconds=61)
    found = problems(status, later, 60)
    assert any("no heartbeat" in problem for problem in found)
    assert any("bytes unread" in problem for problem in found)
    clock.step(61)
    with pytest.raises(SystemExit) as exit_info:
        status_check(state, 60, True, clock)
    assert exit_info.value.code == 1
    assert json.loads(capsys.readouterr().out)["healthy"] is False
    while watcher.step():
        pass
    watcher.stop()
    assert problems(read_status(state), clock.now(), 60) == [
        "postwatch watch is not running (state: stopped)"
    ]


# --- a real process: kill -9, SIGTERM, SIGHUP -------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The watch processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


class WatchProcess:
    """``python -m postwatch.watch`` (or ``launch``) on one file, observed through its notify
    socket; its alerts go to the file ``alerts`` when given."""

    def __init__(
        self,
        started: list[subprocess.Popen[bytes]],
        log: Path,
        state: Path,
        receiver: socket.socket,
        notify: str,
        *extra: str,
        launch: list[str] | None = None,
        alerts: Path | None = None,
    ) -> None:
        self.receiver = receiver
        self.state = state
        self.sender: int | None = None  # the pid that sent the last message
        env = {**os.environ, "NOTIFY_SOCKET": notify, "PYTHONPATH": str(REPO)}
        env.pop("POSTWATCH_DB", None)
        with alerts.open("wb") if alerts is not None else open(os.devnull, "wb") as output:
            self.process = subprocess.Popen(
                [
                    *(launch or [sys.executable, "-m", "postwatch.watch"]),
                    str(log),
                    "--state-dir",
                    str(state),
                    "--tz",
                    "UTC",
                    "--batch-lines",
                    "50",
                    "--commit-interval",
                    "0.2",
                    "--poll-interval",
                    "0.05",
                    *extra,
                ],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.PIPE,
            )
        started.append(self.process)
        while not self.next_message().startswith("READY=1"):
            pass  # what a killed predecessor sent and nobody read

    def next_message(self) -> str:
        try:
            data, ancillary, _, _ = self.receiver.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            self.process.kill()
            assert self.process.stderr is not None
            pytest.fail(f"no word from postwatch watch: {self.process.stderr.read().decode()}")
        for level, kind, credentials in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self.sender = struct.unpack("iII", credentials[:12])[0]  # struct ucred
        return data.decode()

    def wait_for_lines(self, count: int) -> str:
        """Until it says it has read ``count`` lines or more; that message."""
        while True:
            message = self.next_message()
            if message.startswith("STATUS=") and int(message.split()[1]) >= count:
                return message

    def wait_until_caught_up(self, total: int) -> None:
        """Until it is idle with ``total`` lines counted in its committed summary."""
        while True:
            message = self.next_message()
            if " 0 bytes behind" in message and summary(self.state)[-1]["lines"] == total:
                return

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


def test_kill_9_mid_stream_gives_the_same_counts_as_an_uninterrupted_run(
    tmp_path: Path,
    submissions: list[str],
    notify_socket: tuple[socket.socket, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """SIGKILLed twice while busy and restarted, watch counts every line exactly once."""
    receiver, notify = notify_socket
    chunks = [submissions[start : start + 2500] for start in range(0, 20000, 2500)]
    results = []
    for kills in (False, True):
        log, state = tmp_path / f"mail{kills}.log", tmp_path / f"state{kills}"
        log.write_bytes(b"")
        watcher = WatchProcess(processes, log, state, receiver, notify)
        for number, chunk in enumerate(chunks, 1):
            append(log, chunk)
            if kills and number in (3, 6):
                watcher.wait_for_lines(500)
                watcher.kill()
                committed = json.loads((state / CHECKPOINT_FILE).read_text())["positions"]
                assert next(iter(committed.values()))["offset"] < log.stat().st_size
                watcher = WatchProcess(processes, log, state, receiver, notify)
        watcher.wait_until_caught_up(20000)
        assert watcher.terminate() == 0
        results.append(summary(state))
    uninterrupted, interrupted = results
    assert interrupted == uninterrupted
    assert uninterrupted[0]["messages"] == 1415


# 12 SASL failures each in pflgviewer/mail.log, the first client's all before the second's
GUESSER, LATER_GUESSER = "24.234.109.177", "24.180.247.54"


def sasl_failures(lines: list[str], client_ip: str) -> list[str]:
    """The Postfix smtpd warnings of failed SASL logins from ``client_ip``."""
    return [line for line in lines if f"[{client_ip}]: SASL " in line and "failed" in line]


def alerts_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def open_files(pid: int) -> list[str]:
    """What process ``pid`` has open; sockets and pipes without their inode numbers."""
    folder, found = Path(f"/proc/{pid}/fd"), []
    for name in os.listdir(folder):
        with contextlib.suppress(FileNotFoundError):  # closed since the listing
            found.append(re.sub(r":\[\d+\]\Z", "", os.readlink(folder / name)))
    return sorted(found)


def config_with(brute_failures: int, extra: str = "") -> str:
    """A config that judges password guessing by ``brute_failures`` a client IP an hour."""
    return f"[geo]\nbuiltin = false\n\n[detect.auth]\nbrute_failures = {brute_failures}\n{extra}"


def console_script(tmp_path: Path) -> list[str]:
    """A ``postwatch`` script as pip writes it (this interpreter in its #! line)."""
    script = tmp_path / "postwatch"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n\nfrom postwatch.cli import main\n\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return [str(script), "watch"]


@pytest.mark.parametrize("launch", ["python -m postwatch", "postwatch script"])
def test_sighup_with_a_good_config_applies_it_in_the_same_process(
    launch: str,
    tmp_path: Path,
    submissions: list[str],
    notify_socket: tuple[socket.socket, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """SIGHUP with a good config commits, runs the same command again in the same pid
    (RELOADING, then READY from it), which resumes from the checkpoint with the new config:
    password guessing the old thresholds let pass now alerts, and nothing is read twice."""
    receiver, notify = notify_socket
    log, state, config = tmp_path / "mail.log", tmp_path / "state", tmp_path / "postwatch.toml"
    alerts = tmp_path / "alerts.jsonl"
    log.write_bytes(b"")
    config.write_text(config_with(1000))
    command = (
        [sys.executable, "-m", "postwatch", "watch"]
        if launch == "python -m postwatch"
        else console_script(tmp_path)
    )
    watcher = WatchProcess(
        processes,
        log,
        state,
        receiver,
        notify,
        "--config",
        str(config),
        "--dry-run",
        launch=command,
        alerts=alerts,
    )
    pid = watcher.process.pid
    assert watcher.sender == pid
    files = open_files(pid)
    assert files.count(str(state / "watch.lock")) == 1
    first = sasl_failures(submissions, GUESSER)
    append(log, first)
    watcher.wait_until_caught_up(len(first))
    assert alerts_in(alerts) == []  # 12 failures: under the old 1,000
    config.write_text(config_with(4))
    watcher.process.send_signal(signal.SIGHUP)
    assert watcher.next_message().startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert watcher.sender == pid
    while not (message := watcher.next_message()).startswith("READY=1"):
        assert message.startswith("STATUS=reloading: ")
    assert watcher.sender == pid and watcher.process.poll() is None
    status = read_status(state)
    assert (status["pid"], status["state"]) == (pid, "running")
    assert summary(state)[-1]["lines"] == len(first)  # resumed from the commit
    assert open_files(pid) == files  # nothing left open across the exec
    second = sasl_failures(submissions, LATER_GUESSER)
    append(log, second)
    watcher.wait_until_caught_up(len(first) + len(second))
    raised = alerts_in(alerts)
    assert {alert["subject"] for alert in raised} == {LATER_GUESSER}
    assert [alert["severity"] for alert in raised] == ["notice", "warning"]  # 4, then 12
    assert watcher.terminate() == 0
    assert summary(state)[-1]["lines"] == len(first) + len(second)
    position = next(iter(json.loads((state / CHECKPOINT_FILE).read_text())["positions"].values()))
    assert position["offset"] == log.stat().st_size
    assert watcher.process.stderr is not None
    assert watcher.process.stderr.read().decode().count("config checked") == 1


def test_sighup_with_a_broken_config_keeps_the_old_one_then_sigterm(
    tmp_path: Path,
    submissions: list[str],
    notify_socket: tuple[socket.socket, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """SIGHUP with a broken config keeps the same process running with the old config whole,
    says why in one line (file, line, key); SIGTERM then commits and exits 0."""
    receiver, notify = notify_socket
    log, state, config = tmp_path / "mail.log", tmp_path / "state", tmp_path / "postwatch.toml"
    alerts = tmp_path / "alerts.jsonl"
    log.write_bytes(b"")
    config.write_text(config_with(4))
    watcher = WatchProcess(
        processes, log, state, receiver, notify, "--config", str(config), "--dry-run", alerts=alerts
    )
    pid = watcher.process.pid
    config.write_text(config_with(1000, "\n[store]\nbatch_size = -5\n"))  # line 8 is wrong
    watcher.process.send_signal(signal.SIGHUP)
    assert watcher.next_message().startswith("RELOADING=1")
    assert watcher.next_message().startswith("READY=1")
    assert watcher.sender == pid
    guesses = sasl_failures(submissions, LATER_GUESSER)
    append(log, guesses)
    watcher.wait_until_caught_up(len(guesses))
    raised = alerts_in(alerts)
    assert [alert["severity"] for alert in raised] == ["notice", "warning"]  # still 4, not 1,000
    assert watcher.terminate() == 0
    assert watcher.process.stderr is not None
    complaints = [
        line
        for line in watcher.process.stderr.read().decode().splitlines()
        if "config not reloaded" in line
    ]
    assert len(complaints) == 1
    assert f"{config}:8: store.batch_size: must be an integer >= 1" in complaints[0]
    status = read_status(state)
    assert status["state"] == "stopped" and status["pid"] == pid
    assert "postwatch.toml:8" in status["last_error"]["message"]
    position = next(iter(json.loads((state / CHECKPOINT_FILE).read_text())["positions"].values()))
    assert position["offset"] == log.stat().st_size


def test_a_backlog_over_new_year_keeps_its_years_across_a_restart(tmp_path: Path) -> None:
    """Yearless stamps of a backlog that spans New Year, read on January 1st: December lines
    take the old year and January lines the new one, whether the watcher read the December
    lines before them or was restarted between the two."""
    log = tmp_path / "mail.log"
    log.write_text(
        "Dec 31 23:59:58 mail postfix/qmgr[1201]: 8AA5D13B009: removed\n"
        "Jan  1 00:00:03 mail postfix/qmgr[1201]: 9BB6E24C01A: removed\n"
    )
    clock = SteppedClock(datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    whole = FileSource(str(log), None, tz=UTC, clock=clock, from_start=True)
    first = FileSource(str(log), None, tz=UTC, clock=clock, from_start=True)
    december = first.read(1)
    restarted = FileSource(str(log), first.position(), tz=UTC, clock=clock)
    years = [line.ts.year for line in whole.read(10)]
    assert years == [2025, 2026]
    assert [line.ts.year for line in december + restarted.read(10)] == years
    for source in (whole, first, restarted):
        source.close()
