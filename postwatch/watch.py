"""``postwatch watch``: follow the live mail log forever, and never count a line twice.

The loop::

    read a batch from every source -> frame -> Pipeline.run -> commit? -> status.json
    (sleep poll_interval when nothing came; a signal or journal output wakes it early)

Exactly once.  A commit writes, in one atomic replacement of ``checkpoint.json`` (temporary
file, fsync, rename, fsync of the folder), the position of every source *and* a snapshot of
the pipeline state those lines produced (correlator, counters, detector).  After a crash or
``kill -9`` at any moment, the next start restores the state of the last commit and reads
again from that commit's positions: a line read after the commit is counted by the restored
state exactly once, as it was not in it.  A commit follows the first batch, or the first
idle poll, ``commit_interval`` seconds after the last commit (a commit costs a pickle and an
fsync: tens of milliseconds), and one ends every run.  Alerts raised after the last commit
are raised again on the replay: alerts are at least once, within that window, and the
incident store keys them.

:class:`~postwatch.status.Checkpoint` is the seam for another backing (the state database,
the positions written in the transaction that writes the store's batch): ``save(positions,
state)`` must replace both together, ``load()`` returns the last pair saved.

Signals: SIGTERM/SIGINT finish the batch, commit and exit 0; SIGHUP reloads the config
(a broken one is reported, the old one kept).  Under systemd (``Type=notify``) it sends
READY, STATUS, RELOADING, STOPPING and WATCHDOG (:mod:`postwatch.sdnotify`).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import click

from postwatch.clock import Clock, SystemClock, zone
from postwatch.errors import PostwatchError, StoreError, UsageError
from postwatch.parse.syslog import Framer
from postwatch.pipeline import Pipeline
from postwatch.records import LogLine
from postwatch.sdnotify import Notifier
from postwatch.sources.follow import FileFollower, JournalFollower, Position
from postwatch.status import (
    Checkpoint,
    JsonCheckpoint,
    StatusFile,
    lock_state_dir,
    restore,
    snapshot,
)

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1  # seconds between polls of quiet sources: the bulk of alert latency

# --- sources -------------------------------------------------------------------------------


class Source(Protocol):
    """What the loop reads: a :class:`FileSource` or a :class:`JournalFollower`."""

    key: str  # where its position is kept in the checkpoint

    def read(self, max_lines: int) -> list[LogLine]: ...
    def position(self) -> dict[str, Any]: ...
    def report(self) -> dict[str, Any]: ...
    def fileno(self) -> int | None: ...
    def close(self) -> object: ...


class FileSource:
    """A followed file, framed with its own :class:`Framer` (yearless stamps: now's year)."""

    def __init__(
        self, path: str, saved: object, *, tz: tzinfo | None, clock: Clock, from_start: bool = False
    ) -> None:
        self.path = path
        self.key = f"file:{os.path.abspath(path)}"
        try:
            start = Position.from_json(saved) if saved is not None else None
        except ValueError as exc:
            raise StoreError(f"checkpoint position of {path}: {exc}") from exc
        self.follower = FileFollower(path, start, from_start=from_start)
        now = clock.now()
        self._framer = Framer(tz, reference=now.astimezone(tz) if tz else now.astimezone())

    def read(self, max_lines: int) -> list[LogLine]:
        frame = self._framer
        return [frame(raw.text, raw.lineno, raw.origin) for raw in self.follower.read(max_lines)]

    def position(self) -> dict[str, Any]:
        return self.follower.position().to_json()

    def report(self) -> dict[str, Any]:
        follower = self.follower
        return {
            "name": self.path,
            "kind": "file",
            "mode": follower.mode,
            "file": follower.current,
            "offset": follower.offset,
            "lag_bytes": follower.lag(),
            "error": follower.error,
        }

    def fileno(self) -> None:
        return None  # files are polled

    def close(self) -> None:
        self.follower.close()


# --- the loop ---------------------------------------------------------------------------------


class Watcher:
    """Drive sources into a pipeline; commit positions with state; keep the status fresh.

    Tests call :meth:`start`, :meth:`step` and :meth:`stop` on a stepped clock; :meth:`run`
    is the forever loop around them.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        pipeline: Pipeline,
        checkpoint: Checkpoint,
        *,
        clock: Clock,
        status: StatusFile | None = None,
        notifier: Notifier | None = None,
        reload: Callable[[], object] | None = None,
        batch_lines: int = 2000,
        poll_interval: float = POLL_INTERVAL,
        commit_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        on_close: Callable[[], object] | None = None,
        on_step: Callable[[], object] | None = None,
    ) -> None:
        self.sources = list(sources)
        self.pipeline = pipeline
        self.checkpoint = checkpoint
        self.clock = clock
        self.status = status
        self.notifier = notifier or Notifier({})
        self._reload = reload
        self.batch_lines = batch_lines
        self.poll_interval = poll_interval
        self.commit_interval = commit_interval
        self.heartbeat_interval = heartbeat_interval
        self._on_close = on_close
        self._on_step = on_step
        self.lines = 0
        self.state = "starting"
        self.config: dict[str, Any] = {}
        self.errors: Counter[str] = Counter()
        self.last_error: dict[str, str] | None = None
        self.committed: datetime | None = None
        self._stop = self._reload_wanted = self._dirty = self._busy = False
        self._last_commit = self._last_status = float("-inf")
        self._progress: dict[str, dict[str, Any]] = {
            source.key: {"lines": 0, "last_line_at": None} for source in self.sources
        }

    # --- control, safe to call from a signal handler ---------------------------------------

    def request_stop(self) -> None:
        self._stop = True

    def request_reload(self) -> None:
        self._reload_wanted = True

    # --- the steps -------------------------------------------------------------------------

    def start(self) -> None:
        """Commit where the sources start (a first run starts at the end), then READY."""
        self.state = "running"
        self.commit()
        self.write_status()
        self.notifier.ready(self.status_line())

    def step(self) -> int:
        """Read one batch from every source and process it; the number of lines read."""
        if self._reload_wanted:
            self._reload_wanted = False
            self.reload()
        count = 0
        for source in self.sources:
            try:
                lines = source.read(self.batch_lines)
            except (OSError, PostwatchError) as exc:
                self.fail(f"{source.key}: {exc}", type(exc).__name__)
                continue
            if lines:
                self.pipeline.run(lines)
                progress = self._progress[source.key]
                progress["lines"] += len(lines)
                progress["last_line_at"] = self.clock.now().isoformat()
                count += len(lines)
        self.lines += count
        now = self.clock.monotonic()
        self._dirty = self._dirty or count > 0
        committed = self._dirty and now - self._last_commit >= self.commit_interval
        if committed:
            try:
                self.commit()
            except PostwatchError as exc:  # disk full, say: keep going, retry next interval
                self.fail(str(exc), type(exc).__name__)
                self._last_commit = now
                committed = False
        if count or now - self._last_status >= self.heartbeat_interval:
            self.write_status()
        if count or self._busy or committed:
            self.notifier.status(self.status_line())
        self._busy = count > 0
        self.notifier.watchdog()
        if self._on_step is not None:
            self._on_step()  # due notifications and retries
        return count

    def commit(self) -> None:
        """Save every source's position with the state its lines produced, atomically."""
        positions = {source.key: source.position() for source in self.sources}
        flush = getattr(self.pipeline.detector, "flush", None)
        if flush is not None:
            flush()  # the store is never behind the checkpoint
        self.checkpoint.save(positions, snapshot(self.pipeline))
        self._dirty = False
        self._last_commit = self.clock.monotonic()
        self.committed = self.clock.now()
        if self.status is not None:
            tally = self.pipeline.tally
            try:
                self.status.write_summary([*tally.account_records(), tally.totals_record()])
            except OSError as exc:
                self.fail(f"cannot write {self.status.summary_path}: {exc}", "OSError")

    def reload(self) -> None:
        """Reload the config; a broken one is reported and the old one kept."""
        if self._reload is None:
            return
        self.notifier.reloading()
        try:
            self._reload()
        except PostwatchError as exc:
            self.fail(f"config not reloaded, the old one is kept: {exc}", "ConfigError")
        else:
            self.config["reloaded_at"] = self.clock.now().isoformat()
            log.info("config reloaded")
        self.write_status()
        self.notifier.ready(self.status_line())

    def stop(self) -> None:
        """Commit the last batch, say so, close the sources."""
        self.notifier.stopping(self.status_line())
        try:
            self.commit()
        finally:
            self.state = "stopped"
            self.write_status()
            self.close()

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.notifier.close()
        if self._on_close is not None:
            self._on_close()

    def run(self, wait: Callable[[float, list[int]], object]) -> None:
        """Loop until :meth:`request_stop`; ``wait(seconds, fds)`` idles between polls."""
        self.start()
        try:
            while not self._stop:
                if not self.step() and not self._stop and not self._reload_wanted:
                    fds = [
                        fd for fd in (source.fileno() for source in self.sources) if fd is not None
                    ]
                    wait(self.poll_interval, fds)
        except BaseException:
            self.close()  # no commit: the state may be half-way through a batch
            raise
        self.stop()

    # --- reporting -------------------------------------------------------------------------

    def fail(self, message: str, kind: str) -> None:
        """Count and log an error once per kind of error; it never stops the loop."""
        self.errors[kind] += 1
        if self.last_error is None or self.last_error["message"] != message:
            log.error("%s", message)
        self.last_error = {"at": self.clock.now().isoformat(), "message": message}

    def status_line(self) -> str:
        lag = sum(report.get("lag_bytes") or 0 for report in self._reports())
        errors = sum(self.errors.values()) + sum(self.pipeline.errors.values())
        return f"{self.state}: {self.lines} lines read, {lag} bytes behind, {errors} errors"

    def _reports(self) -> list[dict[str, Any]]:
        return [{**source.report(), **self._progress[source.key]} for source in self.sources]

    def write_status(self) -> None:
        self._last_status = self.clock.monotonic()
        if self.status is None:
            return
        errors = self.errors + self.pipeline.errors
        try:
            self.status.write(
                state=self.state,
                lines=self.lines,
                sources=self._reports(),
                errors=errors,
                last_error=self.last_error,
                committed=self.committed,
                config=self.config,
            )
        except OSError as exc:
            self.fail(f"cannot write {self.status.path}: {exc.strerror or exc}", "OSError")


class Waker:
    """Idles between polls; a signal (through ``signal.set_wakeup_fd``) or journal output
    ends the wait at once.  Installs the SIGTERM/SIGINT/SIGHUP handlers of a watcher."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._saved: dict[int, Any] = {}
        self._saved_fd: int | None = None

    def install(self, watcher: Watcher) -> None:
        def stop(_signum: int, _frame: object) -> None:
            watcher.request_stop()

        def reload(_signum: int, _frame: object) -> None:
            watcher.request_reload()

        for signum in self.SIGNALS:
            self._saved[signum] = signal.signal(signum, reload if signum == signal.SIGHUP else stop)
        self._saved_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def wait(self, seconds: float, fds: list[int]) -> None:
        select.select([self._read, *fds], [], [], seconds)  # PEP 475: EINTR is retried
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        if self._saved_fd is not None:
            signal.set_wakeup_fd(self._saved_fd)
        os.close(self._read)
        os.close(self._write)


class JournalOptions(NamedTuple):
    units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    executable: str = "journalctl"


def open_watch(
    paths: Sequence[str],
    *,
    state_dir: Path,
    pipeline: Pipeline,
    journal: JournalOptions | None = None,
    tz: tzinfo | None = None,
    clock: Clock | None = None,
    from_start: bool = False,
    notifier: Notifier | None = None,
    checkpoint: Checkpoint | None = None,
    **loop: Any,
) -> Watcher:
    """Lock the state directory, restore the last commit into ``pipeline``, open the sources.

    A source without a saved position starts at the end of its file (``from_start``: at
    its first byte); a file that appears later is read from its first byte.  Positions of
    sources no longer given are dropped at the next commit.
    """
    clock = clock or SystemClock()
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = lock_state_dir(state_dir)
    except OSError as exc:
        raise UsageError(f"cannot use state directory {state_dir}: {exc.strerror or exc}") from exc
    try:
        checkpoint = checkpoint or JsonCheckpoint(state_dir, clock)
        saved = checkpoint.load()
        if saved is not None and saved.state is not None:
            restore(pipeline, saved.state)
        positions = saved.positions if saved is not None else {}
        sources: list[Source] = []
        for path in paths:
            key = f"file:{os.path.abspath(path)}"
            if all(source.key != key for source in sources):  # the same file given twice
                sources.append(
                    FileSource(path, positions.get(key), tz=tz, clock=clock, from_start=from_start)
                )
        if journal is not None:
            saved = positions.get(JournalFollower.key)
            cursor = saved.get("cursor") if isinstance(saved, dict) else None
            sources.append(
                JournalFollower(
                    cursor if isinstance(cursor, str) else None,
                    units=journal.units,
                    identifiers=journal.identifiers,
                    from_start=from_start,
                    executable=journal.executable,
                    clock=clock,
                )
            )
    except BaseException:
        os.close(lock)
        raise
    return Watcher(
        sources,
        pipeline,
        checkpoint,
        clock=clock,
        notifier=notifier,
        status=StatusFile(state_dir, clock),
        on_close=lambda: os.close(lock),
        **loop,
    )


# --- the command -----------------------------------------------------------------------------


@click.command("watch")
@click.argument("files", nargs=-1)
@click.option("--journal", is_flag=True, help="Follow the systemd journal (journalctl).")
@click.option(
    "--unit",
    "units",
    multiple=True,
    metavar="UNIT",
    help="With --journal: only this unit (repeatable).",
)
@click.option(
    "--identifier",
    "identifiers",
    multiple=True,
    metavar="TAG",
    help="With --journal: only this syslog identifier (repeatable).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config file, reloaded on SIGHUP.",
)
@click.option(
    "--db", "db_url", metavar="URL", help="State database (default: SQLite in the state dir)."
)
@click.option("--dry-run", is_flag=True, help="Record what the actions would do; do none of it.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Checkpoint and status folder (default: the config's [store] state_dir).",
)
@click.option(
    "--tz", "tz_name", metavar="ZONE", help="Zone of stamps without one (default: local)."
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Read files met for the first time from their start, not their end.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 10),
    default=POLL_INTERVAL,
    show_default=True,
    help="Seconds between polls of quiet files.",
)
@click.option(
    "--commit-interval",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between checkpoints (positions with state).",
)
@click.option(
    "--batch-lines",
    type=click.IntRange(1, 1_000_000),
    default=2000,
    show_default=True,
    help="Most lines read from one source per batch.",
)
def watch_command(
    files: tuple[str, ...],
    db_url: str | None,
    dry_run: bool,
    journal: bool,
    units: tuple[str, ...],
    identifiers: tuple[str, ...],
    config_path: str | None,
    state_dir: Path | None,
    tz_name: str | None,
    from_start: bool,
    poll_interval: float,
    commit_interval: float,
    batch_lines: int,
) -> None:
    """Follow live logs (or the journal) forever; alerts as JSON lines on stdout."""
    from postwatch.config import load_settings
    from postwatch.pipeline import build_pipeline

    if not files and not journal:
        raise UsageError("watch: give the log files to follow, or --journal")
    if (units or identifiers) and not journal:
        raise UsageError("watch: --unit and --identifier need --journal")
    logging.basicConfig(level=logging.INFO, format="postwatch: %(levelname)s: %(message)s")
    settings = load_settings(config_path)
    current = {"settings": settings}

    def reload() -> None:
        current["settings"] = load_settings(config_path)  # a ConfigError keeps the old one

    state = state_dir or settings.store.state_dir
    clock = SystemClock()
    if not (db_url or os.environ.get("POSTWATCH_DB") or settings.store.url):
        db_url = f"sqlite:///{Path(state).absolute() / 'postwatch.db'}"
        Path(state).mkdir(parents=True, exist_ok=True, mode=0o700)
    stages = build_pipeline(
        settings, clock=clock, store_url=db_url, act=not dry_run, on_alert=_print_alert
    )
    if stages.runner is not None:
        stages.runner.recover()  # finish what a crash left half done
    watcher = open_watch(
        files,
        state_dir=state,
        pipeline=stages.pipeline,
        tz=zone(tz_name),
        journal=JournalOptions(units, identifiers) if journal else None,
        from_start=from_start,
        notifier=Notifier(),
        reload=reload if config_path else None,
        poll_interval=poll_interval,
        commit_interval=commit_interval,
        batch_lines=batch_lines,
        on_step=stages.runner.tick if stages.runner is not None else None,
    )
    watcher.config = {"path": config_path or ""}
    waker = Waker()
    waker.install(watcher)
    try:
        watcher.run(waker.wait)
    finally:
        waker.close()
        stages.close()


def _print_alert(alert: Any) -> None:
    data = alert.to_json() if hasattr(alert, "to_json") else alert
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``watch`` alone (``python -m postwatch.watch``), errors mapped like the CLI's."""
    try:
        watch_command.main(list(argv) if argv is not None else None, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PostwatchError as exc:
        sys.stderr.write(f"postwatch: error: {exc}\n")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
