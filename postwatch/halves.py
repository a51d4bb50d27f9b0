"""``replay --no-detect`` in two processes, each reading, parsing and correlating half a file.

Without detection a replay prints only sums (lines and events by kind, and per account the
messages, recipients, addresses, deferrals and bounces), and the sums of two halves add up
when the seam between them is handled exactly.  The later half runs in a child process: it
starts at a line a little past the middle of the file with an empty correlator, so it cannot
know what was in flight at the seam.  Its :class:`SeamCorrelator` keeps what is its own and
passes on the rest, in log order, for this process to apply after its own half:

- the events of a queue ID it has not seen start (a message accepted before the seam: its
  deliveries, its deferrals for days, its removal), which the first half's correlator joins
  to the message it holds;
- a mark where a message starts (``client=``, ``pickup``): the first half flushes a message
  of a reused queue ID then, as one correlator does, and knows which IDs are not its own;
- each five-minute flush, with its time, so that in-flight messages expire when they would;
- a question where the child cannot tell alone: whether a content filter's next hop, or a
  Dovecot submission login, is in the first half.

Where an answer is yes, or something crossed that these rules do not cover (a Dovecot file
without host names, a new year at the seam, a tally cap reached), the halves cannot be
added.  Found before anything is applied, this process reads the rest itself, as one process
would; found later, it replays the whole file again in one process.  Either way the output
is the same bytes as a replay in one process (tested at every line of logs with content
filters, deferrals, reused queue IDs and Dovecot relays); only the time differs.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, tzinfo
from multiprocessing import Pipe
from typing import Any, BinaryIO, NamedTuple

from postwatch.clock import Clock
from postwatch.correlate import Correlator, flush_mark
from postwatch.parse import events as ev
from postwatch.parse.syslog import Framer
from postwatch.pipeline import Pipeline
from postwatch.records import Correlated, LogLine
from postwatch.sources.files import (
    ReadStats,
    framer_for,
    is_compressed,
    read_batches,
    read_range,
)
from postwatch.tally import Tally

log = logging.getLogger(__name__)

MIN_BYTES = 16 << 20  # a smaller file is read in one process: a fork is not worth it
# The later half marks and passes on what it cannot join: about a sixth more work per line
# (measured on the benchmark log).  A seam a little past the middle evens the halves out.
SEAM_AT = 0.54
_CHUNK = 4096  # items the later half passes on per pickled chunk
# how the later half routes an event type: 1, an event of one queue ID (passed on when the ID
# is not its own); 2, the start of a message (marked); others are its own
_ROUTES: dict[type, int] = {
    ev.QueueActive: 1,
    ev.Delivery: 1,
    ev.Removed: 1,
    ev.MessageId: 1,
    ev.Expired: 1,
    ev.ContentAction: 1,
    ev.MilterAction: 1,
    ev.QueueOperation: 1,
    ev.DovecotRelayed: 1,
    ev.ClientAccepted: 2,
    ev.Pickup: 2,
}
Batches = Iterator[list[LogLine]]


class Spill:
    """What the later half passes on, in pickled chunks in a temporary file: the first
    half's memory stays flat, however much crossed the seam."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="postwatch-seam-")  # noqa: SIM115

    def write(self, items: list[Any]) -> None:
        if items:
            pickle.dump(items, self._file, pickle.HIGHEST_PROTOCOL)

    def flush(self) -> None:
        self._file.flush()

    def chunks(self) -> Iterator[list[Any]]:
        """Every chunk written (by this process or a child), in order."""
        file = self._file
        file.seek(0)
        while True:
            try:
                yield pickle.load(file)
            except EOFError:
                return

    def close(self) -> None:
        self._file.close()


class SeamCorrelator(Correlator):
    """The later half's correlator: what it cannot join goes to ``spill``, in log order.

    It passes on events and marks: ``("start", host, queue ID, orig_queue_id asked about
    or "", time)``, ``("flush", time)``, ``("first", time)`` after the first event,
    ``("adopt", message)`` for a message of its own that a first-half message's hop or a
    Dovecot login (both only the first half knows) shapes from then on, and ``("absent",
    host, queue ID)``, a question: yes means the halves cannot be added.  ``crossed`` says
    why they cannot be, when that is found here.
    """

    def __init__(self, spill: Spill) -> None:
        super().__init__()
        self.crossed = ""
        self.first_ts: datetime | None = None
        self._spill = spill
        self._passed: list[Any] = []
        self._adopted: set[tuple[str, str]] = set()  # messages passed on; few

    def feed(self, event: object) -> list[Correlated]:
        kind = type(event)
        handler = self._handlers.get(kind)
        out: list[Correlated] = []
        if handler is None:
            return out
        line: LogLine = event.line  # type: ignore[attr-defined]
        route = _ROUTES.get(kind, 0)
        if route == 1:
            queue_id: str = event.queue_id  # type: ignore[attr-defined]
            if (
                (not queue_id or (line.host, queue_id) in self.messages)
                and kind is not ev.DovecotRelayed
                and not (kind is ev.Delivery and event.queued_as)  # type: ignore[attr-defined]
            ):
                handler(event, out)  # the common case: an event of its own message
            elif self._keeps(kind, event, line.host, queue_id):
                handler(event, out)
        elif route == 2:
            self._start(kind, event, line)
            handler(event, out)
        else:
            handler(event, out)
        ts = line.ts
        if self.flush_due(ts):
            self.expire(ts, out)
            self._pass(("flush", ts))
        elif self.first_ts is None:
            self.first_ts = ts
            self._pass(("first", ts))
        return out

    def _pass(self, item: object) -> None:
        passed = self._passed
        passed.append(item)
        if len(passed) >= _CHUNK:
            self._spill.write(passed)
            self._passed = []

    def _start(self, kind: type, event: Any, line: LogLine) -> None:
        """Mark where a message starts, asking about its ``orig_queue_id`` if not here."""
        host, queue_id = line.host, event.queue_id
        link = self._next_hops.get((host, queue_id))
        if link is not None and (host, link[0]) in self._adopted:
            self.crossed = "a content filter's chain crossed the seam twice"
        orig = event.orig_queue_id if kind is ev.ClientAccepted else ""
        ask = orig if orig and (host, orig) not in self.messages else ""
        self._pass(("start", host, queue_id, ask, line.ts))

    def _keeps(self, kind: type, event: Any, host: str, queue_id: str) -> bool:
        """Whether an event of one queue ID is this half's to join (else it is passed on)."""
        mine = not queue_id or (host, queue_id) in self.messages
        if kind is ev.DovecotRelayed:
            if not host:
                self.crossed = "a Dovecot line without a host name"
            elif not self.has_login(host, event.session):
                mine = mine and not self._adopt(host, queue_id)  # the login may be there
            elif not mine:
                self.crossed = "a Dovecot submission login on both sides of the seam"
        queued_as: str = event.queued_as if kind is ev.Delivery else ""
        if not mine:
            if queued_as:  # a first-half message's content filter queued it here
                self._adopt(host, queued_as)
            self._pass(event)
        elif queued_as and (host, queued_as) not in self.messages:
            self._pass(("absent", host, queued_as))
        return mine

    def _adopt(self, host: str, queue_id: str) -> bool:
        """Pass message ``queue_id`` on with all that follows of it; False if not here."""
        state = self.messages.pop((host, queue_id), None)
        if state is None:
            return False
        self._pass(("adopt", state))
        self._adopted.add((host, queue_id))
        return True

    def close(self, now: datetime | None = None) -> list[Correlated]:
        self._spill.write(self._passed)
        self._passed = []
        return super().close(now)


def _apply(pipeline: Pipeline, chunks: Iterator[list[Any]]) -> str:
    """Apply what the later half passed on to the first half's correlator: why not, or ""."""
    correlator = pipeline.correlator
    count = pipeline.tally.record
    for chunk in chunks:
        for item in chunk:
            out: list[Correlated] = []
            if type(item) is tuple:
                code = item[0]
                if code == "flush":
                    correlator.expire(item[1], out)
                elif code == "first":
                    due = correlator.next_flush
                    if due is not None and item[1] >= due:
                        correlator.expire(item[1], out)
                elif code == "start":
                    _, host, queue_id, orig, ts = item
                    if not correlator.started_elsewhere(host, queue_id, orig, ts, out):
                        return "a message's start depends on the first half"
                elif code == "adopt":
                    if not correlator.adopt(item[1]):
                        return "a message is on both sides of the seam"
                elif code == "absent" and (item[1], item[2]) in correlator.messages:
                    return "a content filter's next hop is in the first half"
            else:
                try:
                    correlator.handle(item, out)
                except Exception as exc:  # as in the pipeline: one bad line never stops it
                    pipeline._error(item.line, exc)
                    continue
            for record in out:
                count(record)
    return ""


class _Half(NamedTuple):
    """What the later half sends back."""

    tally: Tally
    crossed: str
    first_ts: datetime | None
    first_year: tuple[int, int] | None  # the (month, year) its first yearless stamp took
    last_ts: datetime | None
    errors: dict[str, int]


def seam_of(path: str) -> int | None:
    """Where the later half of ``path`` starts (a line's start near the middle), or None
    when the file is not worth splitting: not a regular file, compressed, or small."""
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size < MIN_BYTES:
                return None
            if is_compressed(file):
                return None
            middle = int(info.st_size * SEAM_AT)
            file.seek(middle)
            newline = file.read(1 << 16).find(b"\n")
            seam = middle + newline + 1
            return seam if newline >= 0 and seam < info.st_size else None
    except OSError:
        return None  # the one-process read names the file in its error


def replay(
    path: str,
    seam: int,
    *,
    tz: tzinfo | None,
    year: int | None,
    clock: Clock,
    stats: ReadStats,
    progress: Callable[[Batches], Batches] | None = None,
    fork: bool = True,
) -> Pipeline:
    """Replay ``path`` without detection in two halves split at byte ``seam``; return the
    closed pipeline of the first, whose tally holds the whole.  ``fork`` false runs the
    later half first, in this process (the tests' way to try every seam)."""

    def first_half() -> tuple[Pipeline, Framer]:
        framer = framer_for(path, tz=tz, year=year, clock=clock)
        stats.total_bytes += seam
        batches: Batches = read_range(path, 0, seam, framer=framer, stats=stats)
        pipeline = Pipeline()
        pipeline.run_batches(progress(batches) if progress is not None else batches)
        return pipeline, framer

    spill = Spill()
    try:
        if fork:
            child = _Child(lambda: _later_half(path, seam, tz, year, clock, spill))
            try:
                pipeline, framer = first_half()
            except BaseException:
                child.stop()
                raise
            half = child.result()
        else:
            half = _later_half(path, seam, tz, year, clock, spill)
            pipeline, framer = first_half()
        crossed = _cannot_add(pipeline, framer, half) if half is not None else "the child failed"
        if crossed or half is None:  # nothing applied yet: read on from the seam
            log.info("reading the rest of %s in one process: %s", path, crossed)
            lines = read_range(path, seam, None, framer=framer, first_lineno=stats.lines + 1)
            pipeline.run_batches(lines)
            pipeline.close()
            return pipeline
        crossed = _apply(pipeline, spill.chunks()) or _add(pipeline, half)
        if not crossed:
            return pipeline
    finally:
        spill.close()
    log.info("replaying %s again in one process: %s", path, crossed)
    pipeline = Pipeline()
    pipeline.run_batches(read_batches([path], tz=tz, year=year, clock=clock))
    pipeline.close()
    return pipeline


def _cannot_add(pipeline: Pipeline, framer: Framer, half: _Half) -> str:
    """Why the halves cannot be added, as far as is known before applying: or ""."""
    if half.crossed:
        return half.crossed
    if half.first_year is not None and framer.year_of(half.first_year[0]) != half.first_year[1]:
        return "the year changes at the seam"
    due = pipeline.correlator.next_flush
    first = half.first_ts
    if first is not None and due is not None and first < due and flush_mark(first) != due:
        return "the log's time goes back at the seam"
    return ""


def _add(pipeline: Pipeline, half: _Half) -> str:
    """Flush the first half and add the later one's counts: why they cannot be, or ""."""
    if half.last_ts is not None:
        pipeline.last_ts = half.last_ts
    pipeline.close()
    pipeline.errors.update(half.errors)
    return "" if pipeline.tally.add(half.tally) else "a count reached its cap"


def _later_half(
    path: str, seam: int, tz: tzinfo | None, year: int | None, clock: Clock, spill: Spill
) -> _Half:
    with open(path, "rb") as file:
        first_lineno = _count_lines(file, seam) + 1
    framer = framer_for(path, tz=tz, year=year, clock=clock)
    correlator = SeamCorrelator(spill)
    pipeline = Pipeline(correlator=correlator)
    pipeline.run_batches(read_range(path, seam, None, framer=framer, first_lineno=first_lineno))
    pipeline.close()
    spill.flush()
    return _Half(
        pipeline.tally,
        correlator.crossed,
        correlator.first_ts,
        framer.first_year,
        pipeline.last_ts,
        dict(pipeline.errors),
    )


def _count_lines(file: BinaryIO, end: int) -> int:
    count = 0
    left = end
    while left > 0:
        chunk = file.read(min(left, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


class _Child:
    """``work`` run in a forked child, its result sent back through a pipe."""

    def __init__(self, work: Callable[[], _Half]) -> None:
        receiver, sender = Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns
            receiver.close()
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C
                sender.send(work())
                status = 0
            except BaseException as exc:
                log.error("the later half of the replay failed: %s: %s", type(exc).__name__, exc)
            finally:
                os._exit(status)
        sender.close()
        self._pid = pid
        self._receiver = receiver

    def result(self) -> _Half | None:
        """Wait for the result (None: the child failed, and logged why)."""
        try:
            with self._receiver as receiver:
                half: _Half = receiver.recv()
                return half
        except (EOFError, OSError):
            return None
        finally:
            os.waitpid(self._pid, 0)

    def stop(self) -> None:
        """End the child early (this process failed)."""
        self._receiver.close()
        os.kill(self._pid, signal.SIGTERM)
        os.waitpid(self._pid, 0)
