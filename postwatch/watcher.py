"""The ``watch`` loop: read every source, run the pipeline, commit, and never count a line twice.

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

Shared state.  When several mail hosts share one database, ``refresh`` (a
:class:`~postwatch.store.refresh.ProfileRefresh`) merges what the others learned into this
host's profiles every ``refresh_interval`` seconds (``[store] refresh_interval``; 0: never);
a failed refresh is reported and tried again at the next interval.

:class:`~postwatch.status.Checkpoint` is the seam for another backing (the state database,
the positions written in the transaction that writes the store's batch): ``save(positions,
state)`` must replace both together, ``load()`` returns the last pair saved.

Signals (:class:`Waker`): SIGTERM/SIGINT finish the batch, commit and exit 0.  SIGHUP sends
RELOADING and checks the config (the ``reload`` callable): a broken one is reported in one
line and the old one kept (READY again); a good one ends the loop as a stop does (the batch
finished, committed, the store flushed, the sources closed) with :attr:`Watcher.restart`
set, and :mod:`postwatch.watch` then runs its command line again in the same process, which
sends READY when it has started.  Under systemd (``Type=notify``) it sends READY, STATUS,
RELOADING, STOPPING and WATCHDOG (:mod:`postwatch.sdnotify`).
:mod:`postwatch.watch` builds a watcher from the command line and the config.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import Any, Protocol

from postwatch.clock import Clock
from postwatch.errors import PostwatchError, StoreError
from postwatch.parse.syslog import Framer
from postwatch.pipeline import Pipeline
from postwatch.records import LogLine
from postwatch.sdnotify import Notifier
from postwatch.sources.follow import FileFollower, Position
from postwatch.status import Checkpoint, StatusFile, snapshot

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1  # seconds between polls of quiet sources: the bulk of alert latency
REFRESH_INTERVAL = 300.0  # default seconds between merges of what other hosts wrote to the store

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
        refresh: Callable[[], object] | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
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
        self._refresh = refresh
        self.refresh_interval = refresh_interval
        self._last_refresh = clock.monotonic()  # the state was loaded just now
        self.lines = 0
        self.state = "starting"
        self.config: dict[str, Any] = {}
        self.errors: Counter[str] = Counter()
        self.last_error: dict[str, str] | None = None
        self.committed: datetime | None = None
        self._stop = self._reload_wanted = self._restart = self._dirty = self._busy = False
        self._last_commit = self._last_status = float("-inf")
        self._progress: dict[str, dict[str, Any]] = {
            source.key: {"lines": 0, "last_line_at": None} for source in self.sources
        }

    # --- control, safe to call from a signal handler ---------------------------------------

    def request_stop(self) -> None:
        self._stop = True

    def request_reload(self) -> None:
        self._reload_wanted = True

    @property
    def restart(self) -> bool:
        """Whether the loop ended for a good new config (and no stop was asked since): the
        caller should start again with it."""
        return self._restart and not self._stop

    # --- the steps -------------------------------------------------------------------------

    def start(self) -> None:
        """Commit where the sources start (a first run starts at the end), then READY."""
        self.state = "running"
        self.commit()
        self.write_status()
        self.notifier.ready(self.status_line())

    def step(self) -> int:
        """Read one batch from every source and process it; the number of lines read."""
        if self._reload_wanted and not self._stop:
            self._reload_wanted = False
            self.reload()
            if self._restart:
                return 0  # nothing more is read with the old config
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
        if self._refresh_due(now):
            self.refresh()
        return count

    def _refresh_due(self, now: float) -> bool:
        """Whether a refresh is due at monotonic ``now`` (never with an interval of 0)."""
        if self._refresh is None or self.refresh_interval <= 0:
            return False
        return now - self._last_refresh >= self.refresh_interval

    def refresh(self) -> None:
        """Merge what other hosts wrote to the shared store (a failure waits an interval)."""
        self._last_refresh = self.clock.monotonic()
        if self._refresh is None:
            return
        try:
            self._refresh()
        except PostwatchError as exc:
            self.fail(f"shared state not refreshed: {exc}", type(exc).__name__)

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
        """Check the new config: a broken one is reported and the old one kept; a good one
        ends the loop (:attr:`restart`), for the caller to start again with it."""
        if self._reload is None:
            return
        self.notifier.reloading()
        try:
            self._reload()
        except PostwatchError as exc:
            self.fail(f"config not reloaded, the old one is kept: {exc}", "ConfigError")
            self.write_status()
            self.notifier.ready(self.status_line())
            return
        log.info("config checked: committing, then starting again with it")
        self._restart = True
        self.state = "reloading"

    def stop(self) -> None:
        """Commit the last batch, say so, close the sources."""
        if self.restart:
            self.notifier.status(self.status_line())  # RELOADING was sent, not STOPPING
        else:
            self.notifier.stopping(self.status_line())
        try:
            self.commit()
        finally:
            self.state = "reloading" if self.restart else "stopped"
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
            while not self._stop and not self._restart:
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
    ends the wait at once.  Installs the SIGTERM/SIGINT/SIGHUP handlers of a watcher.

    The handlers are installed, then the signals unblocked: a process started again for a
    reload is started with SIGHUP blocked, so a SIGHUP sent while it starts waits for its
    handler instead of killing it.
    """

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
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)  # a pending one runs now

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
