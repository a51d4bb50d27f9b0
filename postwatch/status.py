"""The state directory of ``postwatch watch``, and ``postwatch status``, which reads it.

::

    checkpoint.json the last commit: every source's position and the pipeline state those
                    lines produced (see :mod:`postwatch.watch` for why they go together)
    watch.lock      held while a watcher runs: one watcher per state directory
    status.json     rewritten after every batch and at least every few seconds: heartbeat,
                    lines read, lines/s, per source the file, offset, bytes not read yet
                    (lag) and when its last line came, the errors so far, the last error
    summary.jsonl   rewritten at every commit: the account and totals records of
                    ``postwatch replay --json``, for the lines committed so far

``postwatch status`` reads status.json and exits non-zero when the watcher is unhealthy:
no status, stopped, no heartbeat for ``--max-age`` seconds, or a source with unread bytes
that has made no progress for as long (the file grows and nothing reads it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import pickle
import stat
import tempfile
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import click

from postwatch import __version__
from postwatch.clock import Clock, SystemClock
from postwatch.errors import PostwatchError, StoreError, UsageError

if TYPE_CHECKING:
    from postwatch.pipeline import Pipeline

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = "watch.lock"
STATUS_FILE = "status.json"
SUMMARY_FILE = "summary.jsonl"
RATE_WINDOW = 60.0  # seconds of history behind lines/s
STATE_FORMAT = 1


def write_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    """Replace ``path`` with ``data`` so a reader (or a crash) sees the old or the new file.

    A temporary file in the same folder is written and renamed over ``path``; ``durable``
    also syncs the file before the rename and the folder after it.  The file is private.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class StatusFile:
    """Writes status.json and summary.jsonl; computes lines/s over the last minute."""

    def __init__(self, state_dir: Path, clock: Clock) -> None:
        self.path = state_dir / STATUS_FILE
        self.summary_path = state_dir / SUMMARY_FILE
        self._clock = clock
        self._started = clock.now()
        self._samples: deque[tuple[float, int]] = deque(maxlen=4096)

    def rate(self, lines: int) -> float:
        """Lines per second over the last minute, given the running total."""
        now = self._clock.monotonic()
        samples = self._samples
        samples.append((now, lines))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        elapsed = now - samples[0][0]
        return (lines - samples[0][1]) / elapsed if elapsed > 0 else 0.0

    def write(
        self,
        *,
        state: str,
        lines: int,
        sources: list[dict[str, Any]],
        errors: Mapping[str, int],
        last_error: dict[str, str] | None,
        committed: datetime | None,
        config: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Write status.json; return what was written."""
        status = {
            "type": "watch-status",
            "version": 1,
            "pid": os.getpid(),
            "state": state,
            "started": self._started.isoformat(),
            "heartbeat": self._clock.now().isoformat(),
            "committed": committed.isoformat() if committed else None,
            "lines": lines,
            "lines_per_second": round(self.rate(lines), 2),
            "errors": dict(sorted(errors.items())),
            "last_error": last_error,
            "config": dict(config),
            "sources": sources,
        }
        data = json.dumps(status, indent=1).encode() + b"\n"
        write_atomically(self.path, data, durable=False)
        return status

    def write_summary(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write summary.jsonl: one JSON record a line, like ``replay --json``."""
        lines = [json.dumps(record, separators=(",", ":")) for record in records]
        write_atomically(self.summary_path, ("\n".join(lines) + "\n").encode(), durable=False)


# --- the checkpoint --------------------------------------------------------------------------


class Saved(NamedTuple):
    """A commit: where each source stood, and the pipeline state its lines produced."""

    positions: dict[str, Any]
    state: bytes | None


class Checkpoint(Protocol):
    def load(self) -> Saved | None:
        """The last commit, or None before the first."""
        ...

    def save(self, positions: Mapping[str, Any], state: bytes | None) -> None:
        """Replace the last commit with this one, both parts at once."""
        ...


class JsonCheckpoint:
    """``checkpoint.json`` in the state directory: the positions as JSON, the state inside it.

    The state is a pickle (compressed, base64), so it is read only from a file that belongs
    to the user running postwatch and that nobody else may write.
    """

    def __init__(self, state_dir: Path, clock: Clock | None = None) -> None:
        self.path = state_dir / CHECKPOINT_FILE
        self._clock = clock or SystemClock()

    def load(self) -> Saved | None:
        try:
            data = self.path.read_bytes()
            info = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StoreError(f"{self.path} must belong to this user and be writable by no one else")
        try:
            document = json.loads(data)
            if document.get("version") != 1 or not isinstance(document["positions"], dict):
                raise ValueError("not a postwatch checkpoint")
            packed = document.get("state")
            state = zlib.decompress(base64.b64decode(packed, validate=True)) if packed else None
        except (ValueError, KeyError, AttributeError, binascii.Error, zlib.error) as exc:
            raise StoreError(
                f"{self.path} is damaged ({exc}): move it away to start again"
                f" from the end of the logs"
            ) from exc
        return Saved(document["positions"], state)

    def save(self, positions: Mapping[str, Any], state: bytes | None) -> None:
        packed = base64.b64encode(zlib.compress(state, 1)).decode() if state else None
        document = {
            "version": 1,
            "saved_at": self._clock.now().isoformat(),
            "positions": dict(positions),
            "state": packed,
        }
        try:
            write_atomically(self.path, json.dumps(document).encode(), durable=True)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path}: {exc.strerror or exc}") from exc


def snapshot(pipeline: Pipeline) -> bytes:
    """The pipeline's state as bytes: correlator, counters, detector (when it can snapshot)."""
    detector = pipeline.detector
    parts = {
        "format": STATE_FORMAT,
        "version": __version__,
        "correlator": pipeline.correlator,
        "tally": pipeline.tally,
        "errors": pipeline.errors,
        "last_ts": pipeline.last_ts,
        "detector": getattr(detector, "snapshot", lambda: None)(),
    }
    return pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)


def restore(pipeline: Pipeline, state: bytes) -> bool:
    """Put a :func:`snapshot` back into ``pipeline``; False when it cannot be read."""
    try:
        parts = pickle.loads(state)  # our own private file, checked by load()
        if parts.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {parts.get('format')}")
    except Exception as exc:  # an unpickling error can be almost any exception
        log.warning("the saved state cannot be read (%s): counting starts again from zero", exc)
        return False
    pipeline.correlator, pipeline.tally = parts["correlator"], parts["tally"]
    pipeline.errors, pipeline.last_ts = parts["errors"], parts["last_ts"]
    restore_detector = getattr(pipeline.detector, "restore", None)
    if parts["detector"] is not None and restore_detector is not None:
        restore_detector(parts["detector"])
    return True


def lock_state_dir(state_dir: Path) -> int:
    """Hold ``watch.lock``: one watcher per state directory (released when the process ends)."""
    descriptor = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(descriptor)
        raise UsageError(f"another postwatch watch is using {state_dir}") from exc
    return descriptor


# --- postwatch status ----------------------------------------------------------------------


def read_status(state_dir: Path) -> dict[str, Any]:
    """The status the watcher last wrote; :class:`PostwatchError` when there is none."""
    path = state_dir / STATUS_FILE
    try:
        status = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise PostwatchError(
            f"no {path}: postwatch watch has not run with this state directory"
        ) from exc
    except (OSError, ValueError) as exc:
        raise PostwatchError(f"cannot read {path}: {exc}") from exc
    if not isinstance(status, dict) or status.get("type") != "watch-status":
        raise PostwatchError(f"{path} is not a postwatch watch status file")
    return status


def _age(now: datetime, stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None


def problems(status: Mapping[str, Any], now: datetime, max_age: float) -> list[str]:
    """Why the watcher is unhealthy; empty when it is healthy."""
    found: list[str] = []
    if status.get("state") != "running":
        found.append(f"postwatch watch is not running (state: {status.get('state')})")
    age = _age(now, status.get("heartbeat"))
    if age is None or age > max_age:
        found.append("no heartbeat" if age is None else f"no heartbeat for {age:.0f}s")
    for source in status.get("sources") or []:
        if not isinstance(source, dict):
            continue
        name = source.get("name", "?")
        if source.get("error"):
            found.append(f"{name}: {source['error']}")
        lag = source.get("lag_bytes")
        if isinstance(lag, int) and lag > 0:
            since = _age(now, source.get("last_line_at") or status.get("started"))
            if since is None or since > max_age:
                found.append(f"{name}: {lag} bytes unread and no line read for {since or 0:.0f}s")
    return found


def render(status: Mapping[str, Any], now: datetime, found: list[str]) -> str:
    """The human-readable status report."""
    heartbeat = _age(now, status.get("heartbeat"))
    beat = f"{heartbeat:.0f}s ago" if heartbeat is not None else "none"
    out = [
        f"state: {status.get('state')}  pid {status.get('pid')}  heartbeat {beat}",
        f"lines: {status.get('lines', 0):,}  ({status.get('lines_per_second', 0)}/s)",
    ]
    for source in status.get("sources") or []:
        since = _age(now, source.get("last_line_at"))
        last = f"{since:.0f}s ago" if since is not None else "never"
        lag = source.get("lag_bytes")
        out.append(
            f"  {source.get('name')}: {source.get('mode', '')}"
            f" lag {lag if lag is not None else '?'} B, last line {last}"
        )
    if status.get("last_error"):
        error = status["last_error"]
        out.append(f"last error: {error.get('at')}: {error.get('message')}")
    out.append("healthy" if not found else "UNHEALTHY:\n  " + "\n  ".join(found))
    return "\n".join(out)


@click.command("status")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config file whose [store] state_dir to read.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The state directory postwatch watch writes to (default: the config's).",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds without a heartbeat, or without progress on a growing source.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status file with the verdict.")
def status_command(
    config_path: str | None, state_dir: Path | None, max_age: float, as_json: bool
) -> None:
    """Report how far postwatch watch is behind; exit 1 when it is unhealthy."""
    from postwatch.config import load_settings

    if state_dir is None:
        state_dir = load_settings(config_path).store.state_dir
    status_check(state_dir, max_age, as_json, SystemClock())


def status_check(state_dir: Path, max_age: float, as_json: bool, clock: Clock) -> None:
    """Print the verdict on the watcher writing ``state_dir``; exit 1 when unhealthy."""
    status = read_status(state_dir)
    now = clock.now()
    found = problems(status, now, max_age)
    if as_json:
        click.echo(json.dumps({**status, "healthy": not found, "problems": found}, indent=1))
    else:
        click.echo(render(status, now, found))
    if found:
        raise SystemExit(1)
