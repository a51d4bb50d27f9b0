"""The detect stage in a child process, for a replay on a machine with two cores or more.

Detection costs about as much as parsing and correlating; in a replay the two can overlap.
:func:`start` forks: the child runs the anomaly engine (and writes its store), this process
reads, parses and correlates, and sends the child what the engine accepts, in batches, in
order, each record packed flat (:mod:`postwatch.detect.wire`).  A record the engine would
only take the time from (a message without a login, a uid or a Message-ID, a session
without a login: about 30% of them) crosses as that time, a float that costs a fraction of
a record to pickle.  The alerts come back in the order the engine raised them, so a replay
prints the same bytes either way (tested); only the wall time changes::

    detector = worker.start(detector, store) or detector   # None: stay in one process
    alerts = detector.feed(item)     # what came back so far (usually nothing yet)
    alerts = detector.close(last_ts) # the rest, once the child has seen everything

The store's connections are closed before the fork and the parent does not use the store
afterwards: the child opens its own.  One bad item is logged once per kind of error and
skipped, as in the pipeline; an error that ends the engine (a store write that fails) is
raised again here, and a child that dies unexpectedly is a :class:`DetectError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import queue
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

from postwatch.detect.wire import pack, unpack
from postwatch.errors import PostwatchError

log = logging.getLogger(__name__)

# The pipe to the child holds this much (Linux's unprivileged most; 64 KiB by default, less
# than one batch): this process reads on while the child works through the last few batches,
# instead of waiting at each send for the child to take the one before.
PIPE_BYTES = 1 << 20
BATCH = 1024  # items per message to the child: big enough that pickling dominates, not IPC


class DetectError(PostwatchError):
    """The detector process ended without finishing."""


def usable() -> bool:
    """Whether a second process can help: two cores or more, and no thread to fork with."""
    return (os.cpu_count() or 1) > 1 and threading.active_count() == 1 and hasattr(os, "fork")


def start(detector: Any, store: Any) -> DetectorProcess | None:
    """Fork a child running ``detector`` (with ``store``, or None); None when not usable.

    ``detector`` is the engine, or anything with its ``accepts``, ``relevant``, ``tick``,
    ``feed`` and ``close``.
    """
    if not usable():
        return None
    if store is not None:
        store.engine.dispose()  # no connection may cross the fork
    to_child, inbox = Pipe(duplex=False)[::-1]
    outbox, from_child = Pipe(duplex=False)[::-1]
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or a lower limit: slower
        fcntl.fcntl(to_child.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns
        to_child.close()
        from_child.close()
        status = 1
        try:
            status = _serve(detector, store, inbox, outbox)
        finally:
            os._exit(status)
    inbox.close()
    outbox.close()
    return DetectorProcess(pid, to_child, from_child, detector.accepts, detector.relevant)


class DetectorProcess:
    """The pipeline's detector, standing in for the engine that runs in the child.

    An error that ends the engine (the child's close failed, or the child died) is kept in
    ``failure``, for the pipeline to raise at its close once it has passed on the alerts
    raised before it; items fed after it are dropped.
    """

    def __init__(
        self,
        pid: int,
        to_child: Connection,
        from_child: Connection,
        accepts: frozenset[type],
        relevant: Callable[[object], bool],
    ) -> None:
        self.accepts = accepts
        self._relevant = relevant
        self.failure: BaseException | None = None
        self._pid = pid
        self._to_child = to_child
        self._batch: list[object] = []
        self._replies: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # A thread reads the child's replies as they come, so that neither side can block
        # the other on a full pipe.
        self._reader = threading.Thread(
            target=_read_replies, args=(from_child, self._replies), daemon=True
        )
        self._reader.start()
        self._ended = False

    def feed(self, item: object) -> list[Any]:
        batch = self._batch
        batch.append(pack(item) if self._relevant(item) else item.ts.timestamp())  # type: ignore[attr-defined]
        if len(batch) < BATCH or self._ended:
            return []
        self._batch = []
        return self._send(batch) or self._take(block=False)

    def close(self, now: datetime | None) -> list[Any]:
        """Send what is left and the end; wait for the child's last alerts and its exit."""
        alerts: list[Any] = []
        for message in ([self._batch] if self._batch else []) + [("close", now)]:
            if not self._ended:  # a send to a child found gone took its replies already
                alerts += self._send(message)
        if not self._ended:
            alerts += self._take(block=True)
        self._batch = []
        self._ended = True
        self._to_child.close()
        self._reader.join()
        os.waitpid(self._pid, 0)
        return alerts

    def _send(self, message: object) -> list[Any]:
        """Send ``message``; when the child is gone, the alerts it sent before it went."""
        try:
            self._to_child.send(message)
        except OSError:
            return self._take(block=True)
        return []

    def _take(self, *, block: bool) -> list[Any]:
        """Alerts the child sent; with ``block``, all of them, until it is done or gone."""
        alerts: list[Any] = []
        while True:
            try:
                kind, payload = self._replies.get(block=block)
            except queue.Empty:
                return alerts
            if kind == "alerts":
                alerts.extend(payload)
                continue
            if kind == "failed":
                self.failure = payload
            elif kind == "died":
                self.failure = DetectError("the detector process ended unexpectedly")
            self._ended = True
            return alerts


def _read_replies(connection: Connection, replies: queue.SimpleQueue[tuple[str, Any]]) -> None:
    with connection:
        while True:
            try:
                reply = connection.recv()
            except (EOFError, OSError):
                replies.put(("died", None))
                return
            replies.put(reply)
            if reply[0] in ("done", "failed"):
                return


def _serve(detector: Any, store: Any, inbox: Connection, outbox: Connection) -> int:
    """The child: feed every item to the engine, send back what it raises; the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C; its end is our EOF
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    feed = detector.feed
    tick = detector.tick
    errors: Counter[str] = Counter()
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return 1  # the parent is gone
        if isinstance(message, list):
            alerts: list[Any] = []
            for item in message:
                try:
                    if type(item) is float:
                        tick(item)
                    else:
                        item = unpack(item)
                        alerts.extend(feed(item))
                except Exception as exc:  # one bad item never stops detection
                    kind = type(exc).__name__
                    errors[kind] += 1
                    if errors[kind] == 1:
                        log.error("%s while detecting on a %s: %s", kind, type(item).__name__, exc)
            if alerts:
                outbox.send(("alerts", alerts))
            continue
        try:
            alerts = detector.close(message[1])
            if store is not None:
                store.close()
        except Exception as exc:
            try:
                outbox.send(("failed", exc))
            except Exception:  # an exception that does not pickle: its text does
                outbox.send(("failed", DetectError(f"{type(exc).__name__}: {exc}")))
            return 1
        outbox.send(("alerts", alerts))
        outbox.send(("done", None))
        return 0
