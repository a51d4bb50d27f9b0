"""postwatch watch: the loop, exactly-once commits, signals, sd_notify and postwatch status."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from postwatch.clock import SteppedClock
from postwatch.errors import ConfigError, StoreError, UsageError
from postwatch.pipeline import Pipeline
from postwatch.records import LogLine
from postwatch.sdnotify import Notifier
from postwatch.status import (
    CHECKPOINT_FILE,
    SUMMARY_FILE,
    JsonCheckpoint,
    problems,
    read_status,
    status_check,
)
from postwatch.tally import Tally
from postwatch.watch import JournalOptions, Watcher, open_watch

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


def test_reload_keeps_the_old_config_when_the_new_one_is_broken(tmp_path: Path) -> None:
    """A broken config on reload is reported in the status; a good one is applied."""
    from postwatch.config import load_settings

    config = tmp_path / "postwatch.toml"
    config.write_text("[store]\nbatch_size = 100\n")
    applied = [load_settings(config)]
    watcher = watch(
        tmp_path / "mail.log",
        tmp_path / "state",
        SteppedClock(),
        reload=lambda: applied.append(load_settings(config)),
    )
    watcher.start()
    config.write_text("[store]\nbatch_size = -5\n")
    watcher.request_reload()
    watcher.step()
    assert len(applied) == 1
    last_error = read_status(tmp_path / "state")["last_error"]
    assert "old one is kept" in last_error["message"] and "batch_size" in last_error["message"]
    config.write_text("[store]\nbatch_size = 200\n")
    watcher.request_reload()
    watcher.step()
    assert [settings.store.batch_size for settings in applied] == [100, 200]
    watcher.stop()
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.toml")


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
    """Under systemd the watcher sends READY, STATUS per batch, WATCHDOG, RELOADING, STOPPING."""
    receiver, path = notify_socket
    clock = SteppedClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, clock=clock)
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    watcher = watch(log, tmp_path / "state", clock, notifier=notifier, reload=lambda: None)
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
        "STOPPING=1\nSTATUS=running: 20 lines read, 0 bytes behind, 0 errors"
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
    """``python -m postwatch.watch`` on one file, observed through its notify socket."""

    def __init__(
        self,
        started: list[subprocess.Popen[bytes]],
        log: Path,
        state: Path,
        receiver: socket.socket,
        notify: str,
        *extra: str,
    ) -> None:
        self.receiver = receiver
        self.state = state
        env = {**os.environ, "NOTIFY_SOCKET": notify, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "postwatch.watch",
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
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(self.process)
        while not self.next_message().startswith("READY=1"):
            pass  # what a killed predecessor sent and nobody read

    def next_message(self) -> str:
        try:
            return self.receiver.recv(4096).decode()
        except TimeoutError:
            self.process.kill()
            assert self.process.stderr is not None
            pytest.fail(f"no word from postwatch watch: {self.process.stderr.read().decode()}")

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


def test_sighup_with_a_broken_config_then_sigterm(
    tmp_path: Path,
    submissions: list[str],
    notify_socket: tuple[socket.socket, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """SIGHUP with a broken config keeps running with the old one; SIGTERM commits, exits 0."""
    receiver, notify = notify_socket
    log, state, config = tmp_path / "mail.log", tmp_path / "state", tmp_path / "postwatch.toml"
    log.write_bytes(b"")
    config.write_text("[store]\nbatch_size = 100\n")
    watcher = WatchProcess(processes, log, state, receiver, notify, "--config", str(config))
    config.write_text("[store\n")
    watcher.process.send_signal(signal.SIGHUP)
    assert watcher.next_message().startswith("RELOADING=1")
    assert watcher.next_message().startswith("READY=1")
    append(log, submissions[:120])
    watcher.wait_for_lines(120)
    assert watcher.terminate() == 0
    status = read_status(state)
    assert status["state"] == "stopped"
    assert "postwatch.toml" in status["last_error"]["message"]
    assert summary(state)[-1]["lines"] == 120
    position = next(iter(json.loads((state / CHECKPOINT_FILE).read_text())["positions"].values()))
    assert position["offset"] == log.stat().st_size
