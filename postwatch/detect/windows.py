"""Bounded sliding windows and expiring maps: the only state the detector keeps in memory.

Times are float seconds of log time.  Every structure here forgets on its own: windows drop
what falls out of their span, and :class:`ExpiringMap` drops keys untouched for ``ttl``
seconds or beyond ``max_size`` (oldest first), so no per-key map grows without end.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

INFINITY = float("inf")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Windows:
    """Sums of up to three quantities over several trailing spans (5 min, 1 h, 24 h) at once.

    One list of time buckets serves every span; each span keeps its own start index and
    running sums (``totals[span][quantity]``).  Additions within ``granularity`` seconds
    share a bucket, which bounds memory to (longest span / granularity) buckets.
    """

    __slots__ = (
        "_amounts",
        "_due",
        "_granularity",
        "_heads",
        "_shortest",
        "_spans",
        "_times",
        "totals",
    )

    def __init__(self, spans: tuple[float, ...], width: int = 1, granularity: float = 10.0) -> None:
        self._spans = spans
        self._shortest = min(spans)
        self._due = INFINITY  # when the oldest bucket first falls out of some span
        self._granularity = granularity
        self._times: list[float] = []
        self._amounts: list[list[int]] = [[] for _ in range(width)]
        self._heads = [0] * len(spans)
        self.totals = [[0] * width for _ in spans]

    def add(self, now: float, *amounts: int) -> list[list[int]]:
        """Add ``amounts`` (one per quantity) at ``now``; return ``totals`` (same object)."""
        times, columns = self._times, self._amounts
        if len(amounts) != len(columns):
            raise ValueError(f"{len(amounts)} amounts for {len(columns)} quantities")
        if times and now - times[-1] < self._granularity:
            for index, amount in enumerate(amounts):
                if amount:
                    columns[index][-1] += amount
        else:
            times.append(now)
            for index, amount in enumerate(amounts):
                columns[index].append(amount)
        for index, amount in enumerate(amounts):
            if amount:
                for totals in self.totals:
                    totals[index] += amount
        if now >= self._due:
            return self.advance(now)
        if self._due == INFINITY:
            self._due = now + self._shortest
        return self.totals

    def advance(self, now: float) -> list[list[int]]:
        """Drop what fell out of each span by ``now``; return ``totals``."""
        times, columns, heads = self._times, self._amounts, self._heads
        end = len(times)
        for index, span in enumerate(self._spans):
            head = heads[index]
            cutoff = now - span
            if head < end and times[head] <= cutoff:
                totals = self.totals[index]
                while head < end and times[head] <= cutoff:
                    for quantity, column in enumerate(columns):
                        totals[quantity] -= column[head]
                    head += 1
                heads[index] = head
        self._due = min(
            (
                times[head] + span
                for head, span in zip(heads, self._spans, strict=True)
                if head < end
            ),
            default=INFINITY,
        )
        oldest = min(heads)
        if oldest > 64 and oldest * 2 > end:
            del times[:oldest]
            for column in columns:
                del column[:oldest]
            for index in range(len(heads)):
                heads[index] -= oldest
        return self.totals

    def __len__(self) -> int:
        return len(self._times) - min(self._heads)


class Distinct:
    """How many distinct keys were seen in a trailing window, at most ``cap`` of them."""

    __slots__ = ("_last", "_queue", "_refresh", "cap", "span")

    def __init__(self, span: float, cap: int = 10000) -> None:
        self.span = span
        self.cap = cap
        # a key seen again is re-queued at most once per 1% of the span: repeats stay cheap
        # and a key may leave the window up to that much early
        self._refresh = span / 100
        self._last: dict[Hashable, float] = {}
        self._queue: deque[tuple[float, Hashable]] = deque()

    def add(self, now: float, key: Hashable) -> bool:
        """Record ``key`` at ``now``; True when it was not in the window before."""
        self.advance(now)
        last = self._last.get(key)
        if last is None:
            self._last[key] = now
            self._queue.append((now, key))
            while len(self._last) > self.cap:
                self._pop()
            return True
        if now - last >= self._refresh:
            self._last[key] = now
            self._queue.append((now, key))
        return False

    def advance(self, now: float) -> None:
        cutoff = now - self.span
        queue = self._queue
        while queue and queue[0][0] <= cutoff:
            self._pop()

    def _pop(self) -> None:
        when, key = self._queue.popleft()
        if self._last.get(key) == when:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._last

    def keys(self) -> list[Hashable]:
        return list(self._last)


class ExpiringMap(Generic[K, V]):
    """A dict whose keys expire ``ttl`` seconds after their last touch, at most ``max_size``.

    Touching a key moves it to the end, so the front always holds the stalest key and
    :meth:`expire` costs only what it removes.  ``on_expire`` sees each evicted pair.
    """

    __slots__ = ("_items", "_touched", "max_size", "on_expire", "ttl")

    def __init__(
        self, ttl: float, max_size: int = 1_000_000, on_expire: Callable[[K, V], None] | None = None
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.on_expire = on_expire
        self._items: OrderedDict[K, V] = OrderedDict()
        self._touched: dict[K, float] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def touch(self, key: K, now: float, factory: Callable[[], V]) -> V:
        """The value for ``key`` (made by ``factory`` if absent), marked as used at ``now``."""
        items = self._items
        value = items.get(key)
        if value is None:
            value = items[key] = factory()
            self._touched[key] = now
            if len(items) > self.max_size:
                self._evict()
            return value
        items.move_to_end(key)
        if now > self._touched[key]:
            self._touched[key] = now
        return value

    def put(self, key: K, value: V, now: float) -> None:
        """Store ``value`` under ``key`` as used at ``now``."""
        items = self._items
        if key in items:
            items.move_to_end(key)
        items[key] = value
        self._touched[key] = max(now, self._touched.get(key, now))
        if len(items) > self.max_size:
            self._evict()

    def refresh(self, key: K, now: float) -> None:
        """Mark an existing ``key`` as used at ``now``."""
        self._items.move_to_end(key)
        if now > self._touched[key]:
            self._touched[key] = now

    def expire(self, now: float) -> int:
        """Drop keys untouched since ``now - ttl``; return how many went."""
        cutoff = now - self.ttl
        items, touched, removed = self._items, self._touched, 0
        while items:
            key = next(iter(items))
            if touched[key] > cutoff:
                break
            self._evict()
            removed += 1
        return removed

    def _evict(self) -> None:
        key, value = self._items.popitem(last=False)
        del self._touched[key]
        if self.on_expire is not None:
            self.on_expire(key, value)

    def pop(self, key: K) -> V | None:
        self._touched.pop(key, None)
        return self._items.pop(key, None)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._items.items()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class Recent(Generic[K, V]):
    """A cheap memory of keys seen lately: two dicts, the older dropped every ``span``.

    A key is remembered for between ``span`` and twice ``span`` seconds after it was put,
    which suits "have I seen this lately?" questions asked on every record.
    """

    __slots__ = ("_newer", "_older", "_rotate_at", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self._newer: dict[K, V] = {}
        self._older: dict[K, V] = {}
        self._rotate_at = 0.0

    def get(self, key: K) -> V | None:
        value = self._newer.get(key)
        return self._older.get(key) if value is None else value

    def put(self, key: K, value: V) -> None:
        self._newer[key] = value

    def pop(self, key: K) -> V | None:
        """The value of ``key`` (None if unknown), forgotten."""
        value = self._newer.pop(key, None)
        older = self._older.pop(key, None)
        return older if value is None else value

    def expire(self, now: float) -> None:
        if now >= self._rotate_at:
            if now < self._rotate_at + self.span:
                self._older, self._newer = self._newer, {}
            else:  # quiet for two spans or more: everything is stale
                self._older, self._newer = {}, {}
            self._rotate_at = now + self.span

    def __contains__(self, key: object) -> bool:
        return key in self._newer or key in self._older

    def __len__(self) -> int:
        return len(self._newer.keys() | self._older.keys())
