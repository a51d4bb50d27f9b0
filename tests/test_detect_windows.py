"""Sliding windows and expiring maps: counts are exact, and everything forgets."""

from __future__ import annotations

from postwatch.detect.windows import Distinct, ExpiringMap, Recent, Windows


def test_windows_sum_each_span_separately() -> None:
    """Each span counts only what happened within it, for every quantity."""
    windows = Windows((300.0, 3600.0), 2)
    windows.add(0.0, 1, 5)
    windows.add(200.0, 1, 2)
    totals = windows.add(400.0, 1, 1)
    assert totals[0] == [2, 3]  # the 5-minute span lost the first message
    assert totals[1] == [3, 8]


def test_windows_drop_everything_after_the_longest_span() -> None:
    """After the longest span nothing is left, and the bucket list is compacted."""
    windows = Windows((60.0, 600.0), 1, granularity=1.0)
    for second in range(0, 1000, 5):
        windows.add(float(second), 1)
    assert windows.advance(5000.0) == [[0], [0]]
    assert len(windows) == 0


def test_windows_share_a_bucket_within_the_granularity() -> None:
    """Additions closer than the granularity merge, bounding memory."""
    windows = Windows((3600.0,), 1, granularity=10.0)
    for step in range(100):
        windows.add(step * 0.05, 1)
    assert len(windows) == 1
    assert windows.totals[0][0] == 100


def test_distinct_counts_keys_in_the_window_only() -> None:
    """A key counts once while in the window and leaves when it falls out."""
    seen = Distinct(100.0)
    assert seen.add(0.0, "a") is True
    assert seen.add(10.0, "a") is False
    seen.add(20.0, "b")
    assert len(seen) == 2
    seen.advance(115.0)
    assert len(seen) == 1
    assert "b" in seen and "a" not in seen


def test_distinct_is_capped() -> None:
    """A Distinct never holds more than its cap; the oldest keys go first."""
    seen = Distinct(1000.0, cap=3)
    for index, key in enumerate("abcde"):
        seen.add(float(index), key)
    assert sorted(map(str, seen.keys())) == ["c", "d", "e"]


def test_expiring_map_forgets_untouched_keys() -> None:
    """A key untouched for its ttl is evicted, and the eviction is reported."""
    evicted: list[str] = []
    table: ExpiringMap[str, list[int]] = ExpiringMap(
        60.0, on_expire=lambda key, value: evicted.append(key)
    )
    table.touch("old", 0.0, list)
    table.touch("fresh", 0.0, list)
    table.touch("fresh", 50.0, list)
    assert table.expire(100.0) == 1
    assert evicted == ["old"]
    assert "fresh" in table and len(table) == 1


def test_expiring_map_respects_max_size() -> None:
    """Beyond max_size the stalest key goes at once."""
    table: ExpiringMap[int, int] = ExpiringMap(1e9, max_size=2)
    for key in range(5):
        table.touch(key, float(key), lambda: 0)
    assert len(table) == 2
    assert 3 in table and 4 in table


def test_recent_forgets_after_one_to_two_spans() -> None:
    """A key put is remembered for at least one span and at most two."""
    recent: Recent[str, int] = Recent(100.0)
    recent.expire(0.0)
    recent.put("a", 1)
    recent.expire(100.0)
    assert recent.get("a") == 1 and "a" in recent
    recent.expire(200.0)
    assert recent.get("a") is None and len(recent) == 0
    recent.put("b", 2)
    recent.expire(1000.0)
    assert len(recent) == 0
