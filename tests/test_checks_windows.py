"""The rolling windows against brute force: whatever the intervals, the running totals agree
with adding everything up again from scratch."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from hub.checks.windows import HeldValue, RollingMean, WindowedDuration

WINDOW = 1000.0

# Intervals in time order: (gap before it, length), both possibly zero (touching, empty).
steps = st.lists(
    st.tuples(
        st.floats(min_value=-50, max_value=400, allow_nan=False),
        st.floats(min_value=0, max_value=300, allow_nan=False),
        st.floats(min_value=0, max_value=100, allow_nan=False),
    ),
    max_size=40,
)


def _intervals(raw: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Intervals whose starts never go back; a negative gap makes one overlap the last."""
    out: list[tuple[float, float, float]] = []
    start, end = 0.0, 0.0
    for gap, length, value in raw:
        start = max(start, end + gap)
        end = start + length
        out.append((start, end, value))
    return out


def _union_within(intervals: list[tuple[float, float, float]], lo: float, hi: float) -> float:
    points = sorted((max(a, lo), min(b, hi)) for a, b, _ in intervals if min(b, hi) > max(a, lo))
    total, end = 0.0, -math.inf
    for a, b in points:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@given(steps, st.lists(st.floats(min_value=0, max_value=2000), max_size=5))
def test_windowed_duration_matches_brute_force(
    raw: list[tuple[float, float, float]], later: list[float]
) -> None:
    intervals = _intervals(raw)
    window = WindowedDuration(WINDOW)
    added: list[tuple[float, float, float]] = []
    now = 0.0
    for a, b, value in intervals:
        window.add(a, b)
        added.append((a, b, value))
        now = max(now, b)
        expected = _union_within(added, now - WINDOW, now)
        assert math.isclose(window.total(now), expected, abs_tol=1e-6)
    for extra in sorted(later):
        now += extra
        expected = _union_within(added, now - WINDOW, now)
        assert math.isclose(window.total(now), expected, abs_tol=1e-6)
    restored = WindowedDuration(WINDOW)
    restored.restore(window.state())
    assert math.isclose(restored.total(now), window.total(now), abs_tol=1e-6)


@given(steps)
def test_rolling_mean_matches_brute_force(raw: list[tuple[float, float, float]]) -> None:
    bucket = 100.0
    mean = RollingMean(WINDOW, bucket)
    added: list[tuple[float, float, float]] = []
    last_end = -math.inf
    for a, b, value in _intervals(raw):
        a = max(a, last_end)  # held values do not overlap: each starts where the last ended
        if b <= a:
            continue
        mean.add(a, b, value)
        added.append((a, b, value))
        last_end = b
        now = b
        window_start = ((now - WINDOW) // bucket + 1) * bucket  # the edge moves by buckets
        weighted = sum(v * max(0.0, min(y, now) - max(x, window_start)) for x, y, v in added)
        seconds = sum(max(0.0, min(y, now) - max(x, window_start)) for x, y, _ in added)
        got = mean.mean(now)
        if seconds <= 1e-9:
            assert got is None or mean.covered_s(now) < 1e-6
        else:
            assert got is not None
            assert math.isclose(got, weighted / seconds, rel_tol=1e-6, abs_tol=1e-6)
            assert math.isclose(mean.covered_s(now), seconds, rel_tol=1e-9, abs_tol=1e-6)


def test_a_held_value_is_credited_once_and_for_at_most_its_hold() -> None:
    held = HeldValue(hold_s=30.0)
    assert held.advance(10.0) is None  # nothing reported yet
    held.set(95.0, 100.0)
    assert held.advance(110.0) == (100.0, 110.0)
    assert held.advance(110.0) is None
    assert held.advance(500.0) == (110.0, 130.0)  # believed for 30 s, no more
    assert held.fresh(129.0) and not held.fresh(131.0)
