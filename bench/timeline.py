"""The machinery under the traffic: time-ordered output, process IDs, queue IDs, anvil.

A session is written whole when it starts: its lines, some seconds or hours in the future,
wait in a heap, and leave in time order as the generator's clock moves on.  Sessions start in
time order, so no line is ever written after a later one.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from typing import TextIO

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_ID_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"  # no vowels
_PID_MAX = 4_194_304


def traditional_stamp(seconds: int) -> str:
    """``Nov 23 10:00:00``: syslog's stamp, day padded with a space, in UTC."""
    moment = time.gmtime(seconds)
    return (
        f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} "
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}"
    )


def rfc3339_stamp(seconds: int) -> str:
    """``2025-11-23T10:00:00``: the seconds part of an RFC 3339 stamp, in UTC."""
    moment = time.gmtime(seconds)
    return (
        f"{moment.tm_year:04d}-{moment.tm_mon:02d}-{moment.tm_mday:02d}"
        f"T{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}"
    )


def iso(ts: float) -> str:
    """The RFC 3339 stamp the timeline writes for ``ts`` (microseconds truncated)."""
    second = int(ts)
    return f"{rfc3339_stamp(second)}.{int((ts - second) * 1e6):06d}+00:00"


class Timeline:
    """Pending log lines, written to ``out`` in time order.

    ``stamps`` is ``traditional`` (``Nov 23 10:00:00``, what syslog writes) or ``rfc3339``
    (``2025-11-23T10:00:00.123456+00:00``, rsyslog's high-precision format).  Times are
    epoch seconds read as UTC.  Lines stamped after ``end`` are dropped: the log stops there
    the way a rotated file would, mid-session.
    """

    def __init__(
        self, out: TextIO, host: str, stamps: str = "traditional", end: float | None = None
    ) -> None:
        if stamps not in ("traditional", "rfc3339"):
            raise ValueError(f"unknown timestamp format {stamps!r}")
        self._out = out
        self._host = host
        self._rfc3339 = stamps == "rfc3339"
        self._end = float("inf") if end is None else end
        self._heap: list[tuple[float, int, str, int | None, str]] = []
        self._seq = 0
        self._buffer: list[str] = []
        self._stamp_second = -1
        self._stamp_text = ""
        self.horizon = float("-inf")
        self.written = 0

    def add(self, ts: float, program: str, pid: int | None, message: str) -> None:
        """Queue one line; it may lie in the future but not before the horizon."""
        if ts < self.horizon:
            raise ValueError(f"line at {ts} is before the horizon {self.horizon}: {message}")
        if ts > self._end:
            return
        heapq.heappush(self._heap, (ts, self._seq, program, pid, message))
        self._seq += 1

    def advance(self, ts: float) -> None:
        """Write every line stamped at or before ``ts``; nothing may be added before it."""
        heap = self._heap
        pop = heapq.heappop
        buffer = self._buffer
        host = self._host
        before = len(buffer)
        while heap and heap[0][0] <= ts:
            when, _, program, pid, message = pop(heap)
            stamp = self._stamp(when)
            if pid is None:
                buffer.append(f"{stamp} {host} {program}: {message}\n")
            else:
                buffer.append(f"{stamp} {host} {program}[{pid}]: {message}\n")
        self.written += len(buffer) - before
        if len(buffer) > 4096 or ts == float("inf"):
            self._out.write("".join(buffer))
            buffer.clear()
        if ts > self.horizon:
            self.horizon = ts

    def close(self) -> None:
        """Write everything still pending."""
        self.advance(float("inf"))

    @property
    def pending(self) -> int:
        return len(self._heap)

    def _stamp(self, when: float) -> str:
        second = int(when)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_text = rfc3339_stamp(second) if self._rfc3339 else traditional_stamp(second)
        if self._rfc3339:
            return f"{self._stamp_text}.{int((when - second) * 1e6):06d}+00:00"
        return self._stamp_text


class Processes:
    """Process IDs the way Postfix's master hands them out.

    A daemon process serves one client at a time, is reused while idle for less than
    ``max_idle`` seconds (Postfix's default 100) and replaced after ``max_use`` uses; new
    processes take the next free PID of the system (other programs take some in between).
    Two sessions that overlap in time never share a PID.
    """

    def __init__(
        self, rng: random.Random, first_pid: int, max_idle: float = 100.0, max_use: int = 100
    ) -> None:
        self._rng = rng
        self._next = first_pid
        self._max_idle = max_idle
        self._max_use = max_use
        self._pools: dict[str, list[list[float]]] = {}

    def spawn(self) -> int:
        """A brand new PID."""
        self._next += self._rng.randint(1, 12)
        if self._next >= _PID_MAX:
            self._next = 300 + self._rng.randint(0, 999)
        return self._next

    def acquire(self, program: str, start: float, end: float) -> int:
        """The PID of a ``program`` process busy from ``start`` to ``end``."""
        pool = self._pools.setdefault(program, [])
        best: list[float] | None = None
        keep: list[list[float]] = []
        for entry in pool:
            free_at, _pid, uses = entry
            if free_at <= start and start - free_at > self._max_idle:
                continue  # idle too long: that process has exited
            keep.append(entry)
            if free_at <= start and uses < self._max_use and (best is None or free_at > best[0]):
                best = entry
        if len(keep) != len(pool):
            pool[:] = keep
        if best is not None:
            best[0] = max(end, start)
            best[2] += 1
            return int(best[1])
        pid = self.spawn()
        pool.append([max(end, start), float(pid), 1.0])
        return pid


class Singleton:
    """A daemon with one process (postscreen, anvil): a new PID after ``max_idle`` idle."""

    def __init__(self, processes: Processes, max_idle: float = 100.0) -> None:
        self._processes = processes
        self._max_idle = max_idle
        self._last = float("-inf")
        self.pid = processes.spawn()
        self.restarted = False

    def use(self, ts: float) -> int:
        """The PID serving at ``ts`` (``restarted`` says whether it is a new process)."""
        self.restarted = ts - self._last > self._max_idle and self._last != float("-inf")
        if self.restarted:
            self.pid = self._processes.spawn()
        self._last = max(self._last, ts)
        return self.pid


class QueueIds:
    """Postfix queue IDs, unique while the message is queued.

    Short IDs (``984BB13B35D``) are the microseconds of the arrival time in five hex digits
    followed by the queue file's inode number in hex; long IDs (``4JhKCy5P6GzgHy``) are the
    seconds and microseconds in base 52 and the inode in base 51 after a ``z``.  Inodes are
    reused once the file is removed, as a file system does, so IDs repeat over days but never
    while both messages are queued.  ``now`` tells the generator's clock: an inode whose
    removal lies in the future stays taken.
    """

    def __init__(
        self,
        rng: random.Random,
        now: Callable[[], float],
        long_ids: bool = False,
        first_inode: int = 0x13B000,
    ) -> None:
        self._rng = rng
        self._now = now
        self._long = long_ids
        self._next_inode = first_inode
        self._free: list[int] = []
        self._live: dict[str, int] = {}
        self._removals: list[tuple[float, str]] = []

    def new(self, ts: float) -> str:
        """A fresh ID for a message arriving at ``ts``."""
        removals = self._removals
        now = self._now()
        while removals and removals[0][0] <= now:
            _, queue_id = heapq.heappop(removals)
            self._free.append(self._live.pop(queue_id))
        seconds = int(ts)
        micros = int((ts - seconds) * 1e6)
        if self._free and self._rng.random() < 0.9:
            inode = self._free.pop(self._rng.randrange(len(self._free)))
        else:
            self._next_inode += self._rng.randint(1, 3)
            inode = self._next_inode
        if self._long:
            queue_id = (
                _encode(seconds, 52, 6) + _encode(micros, 52, 4) + "z" + _encode(inode, 51, 0)
            )
        else:
            queue_id = f"{micros:05X}{inode:X}"
        self._live[queue_id] = inode
        return queue_id

    def remove(self, queue_id: str, ts: float) -> None:
        """The message leaves the queue at ``ts``; its inode is free from then on."""
        heapq.heappush(self._removals, (ts, queue_id))

    def live(self) -> int:
        return len(self._live)


def _encode(value: int, base: int, width: int) -> str:
    digits = []
    while value:
        value, remainder = divmod(value, base)
        digits.append(_LONG_ID_ALPHABET[remainder])
    text = "".join(reversed(digits)) or "0"
    return text.rjust(width, "0")


class Anvil:
    """postfix/anvil's connection statistics, logged every ``interval`` seconds of activity.

    Keys are ``service:address`` as Postfix writes them (``smtpd:1.2.3.4`` behind postscreen,
    ``submission:1.2.3.4``).
    """

    def __init__(self, timeline: Timeline, processes: Processes, interval: float = 600.0) -> None:
        self._timeline = timeline
        self._process = Singleton(processes, max_idle=interval)
        self._interval = interval
        self._window_start: float | None = None
        self._per_minute: dict[tuple[str, int], int] = {}
        self._first_seen: dict[str, float] = {}

    def connect(self, ts: float, service: str, address: str) -> None:
        """An smtpd connection (counted per client per minute)."""
        if self._window_start is None:
            self._window_start = ts
        key = f"{service}:{address}"
        minute = int(ts // 60)
        self._per_minute[(key, minute)] = self._per_minute.get((key, minute), 0) + 1
        self._first_seen.setdefault(key, ts)

    def tick(self, ts: float) -> None:
        """Log the statistics when a reporting interval has passed (call in time order)."""
        if self._window_start is None or ts - self._window_start < self._interval:
            return
        report_at = self._window_start + self._interval
        if self._per_minute:
            (key, _minute), rate = max(
                self._per_minute.items(), key=lambda item: (item[1], item[0][0])
            )
            first = self._first_seen[key]
            pid = self._process.use(report_at)
            self._timeline.add(
                report_at,
                "postfix/anvil",
                pid,
                f"statistics: max connection rate {rate}/60s for ({key}) at "
                f"{traditional_stamp(int(first))}",
            )
            self._timeline.add(
                report_at,
                "postfix/anvil",
                pid,
                f"statistics: max connection count {1 + rate // 4} for ({key}) "
                f"at {traditional_stamp(int(first))}",
            )
            self._timeline.add(
                report_at,
                "postfix/anvil",
                pid,
                f"statistics: max cache size {len(self._first_seen)} at "
                f"{traditional_stamp(int(first))}",
            )
        self._per_minute.clear()
        self._first_seen.clear()
        self._window_start = None if ts - report_at > self._interval else report_at
