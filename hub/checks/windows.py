"""Rolling windows with O(1) amortised work per update, for rules like "above 70 % RH for more
than 2 h in any 12 h" and "PM2.5 24 h mean". Nothing here rescans history: running totals
are kept, and what falls out of the window is subtracted once as it leaves.

Sensors report a value and then stay silent while it holds (deadband and heartbeat), so
both windows are fed intervals: the value last reported holds from its reading until the
next one, for at most `hold_s` (after that nothing is known and nothing is counted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any


class WindowedDuration:
    """How long something was true within the last `window_s`: merged intervals in a deque."""

    __slots__ = ("_ends", "_starts", "_total", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._starts: deque[float] = deque()
        self._ends: deque[float] = deque()
        self._total = 0.0

    def add(self, a: float, b: float) -> None:
        """Record that it was true from `a` to `b`; intervals come in time order."""
        if b <= a:
            return
        ends = self._ends
        if ends and a <= ends[-1]:
            last = ends[-1]
            if b > last:
                self._total += b - last
                ends[-1] = b
            return
        self._starts.append(a)
        ends.append(b)
        self._total += b - a

    def total(self, now: float) -> float:
        """Seconds it was true in (now - window, now]."""
        cut = now - self.window_s
        starts, ends = self._starts, self._ends
        while ends and ends[0] <= cut:
            self._total -= ends.popleft() - starts.popleft()
        if starts and starts[0] < cut:
            self._total -= cut - starts[0]
            starts[0] = cut
        if not starts:
            self._total = 0.0  # no float drift survives an empty window
        return max(self._total, 0.0)

    def state(self) -> list[list[float]]:
        return [[a, b] for a, b in zip(self._starts, self._ends, strict=True)]

    def restore(self, intervals: Sequence[Sequence[float]]) -> None:
        self._starts.clear()
        self._ends.clear()
        self._total = 0.0
        for a, b in intervals:
            self.add(float(a), float(b))


class RollingMean:
    """Time-weighted mean over the last `window_s`, in buckets of `bucket_s` (the window's
    edge moves a bucket at a time). Also reports how much of the window had data."""

    __slots__ = ("_buckets", "_seconds", "_sum", "bucket_s", "window_s")

    def __init__(self, window_s: float, bucket_s: float = 600.0) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: deque[list[float]] = deque()  # [bucket index, value-seconds, seconds]
        self._sum = 0.0
        self._seconds = 0.0

    def add(self, a: float, b: float, value: float) -> None:
        """`value` held from `a` to `b`; intervals come in time order."""
        size = self.bucket_s
        buckets = self._buckets
        while a < b:
            index = a // size
            end = min(b, (index + 1.0) * size)
            span = end - a
            if buckets and buckets[-1][0] == index:
                bucket = buckets[-1]
                bucket[1] += value * span
                bucket[2] += span
            elif not buckets or buckets[-1][0] < index:
                buckets.append([index, value * span, span])
            else:
                a = end  # older than the newest bucket: out of order, not counted
                continue
            self._sum += value * span
            self._seconds += span
            a = end

    def _evict(self, now: float) -> None:
        first_kept = (now - self.window_s) // self.bucket_s + 1.0
        buckets = self._buckets
        while buckets and buckets[0][0] < first_kept:
            _, value_s, seconds = buckets.popleft()
            self._sum -= value_s
            self._seconds -= seconds
        if not buckets:
            self._sum = self._seconds = 0.0

    def mean(self, now: float) -> float | None:
        """The time-weighted mean over the window, or None if it holds no data."""
        self._evict(now)
        return self._sum / self._seconds if self._seconds > 0.0 else None

    def covered_s(self, now: float) -> float:
        self._evict(now)
        return max(self._seconds, 0.0)

    def state(self) -> list[list[float]]:
        return [list(bucket) for bucket in self._buckets]

    def restore(self, buckets: Sequence[Sequence[Any]]) -> None:
        self._buckets.clear()
        self._sum = self._seconds = 0.0
        for index, value_s, seconds in buckets:
            self._buckets.append([float(index), float(value_s), float(seconds)])
            self._sum += float(value_s)
            self._seconds += float(seconds)


class HeldValue:
    """The last reported value of one sensor and how far it has been credited to windows.

    `advance(now)` returns the stretch (from, to) not yet credited during which the value
    held: up to `now`, but never more than `hold_s` after the reading that reported it.
    """

    __slots__ = ("done_t", "hold_s", "last_t", "value")

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.value: float | None = None
        self.last_t = float("-inf")
        self.done_t = float("-inf")

    def advance(self, now: float) -> tuple[float, float] | None:
        if self.value is None:
            return None
        end = min(now, self.last_t + self.hold_s)
        if end <= self.done_t:
            return None
        span = (self.done_t, end)
        self.done_t = end
        return span

    def set(self, value: float, t: float) -> None:
        self.value = value
        self.last_t = t
        self.done_t = t

    def fresh(self, now: float) -> bool:
        """Whether the value is still believed at `now` (within `hold_s` of its reading)."""
        return self.value is not None and now - self.last_t <= self.hold_s

    def state(self) -> dict[str, Any]:
        return {"value": self.value, "last_t": self.last_t, "done_t": self.done_t}

    def restore(self, state: dict[str, Any]) -> None:
        value = state["value"]
        self.value = None if value is None else float(value)
        self.last_t = float(state["last_t"])
        self.done_t = float(state["done_t"])
