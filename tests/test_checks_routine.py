"""The learned routine on its own: whole days only, DST-aware hours, persistence."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.checks.routine import ActivityProfile, DailyValues, HourlyMaxima, hours_of
from hub.checks.timeline import LocalClock

HOUR = 3600.0


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_partial_first_day_is_not_learned() -> None:
    p = ActivityProfile(LocalClock("Europe/London"))
    p.observe("Kitchen", utc("2025-11-28T14:00:00"))  # the hub started in the afternoon
    p.observe("Kitchen", utc("2025-11-29T08:10:00"))
    assert p.days_learned == 0
    p.advance(utc("2025-11-30T00:01:00"))
    assert p.days_learned == 1
    assert p.day_minutes("Kitchen", [8]) == [1]
    assert p.active_share("Kitchen", [8, 9]) == 1.0
    assert p.active_share("Kitchen", [14]) == 0.0


def test_active_minutes_count_distinct_minutes_not_readings() -> None:
    p = ActivityProfile(LocalClock("Europe/London"))
    base = utc("2025-11-29T08:00:00")
    for second in range(0, 120, 5):  # a chatty PIR over two minutes
        p.observe("Kitchen", base + second)
    assert p.minutes_today("Kitchen", [8]) == 2


def test_hours_follow_local_time_across_dst() -> None:
    p = ActivityProfile(LocalClock("Europe/London"))
    p.observe("Kitchen", utc("2025-03-29T12:00:00"))
    p.observe("Kitchen", utc("2025-03-30T07:30:00"))  # 08:30 BST after the clocks went forward
    assert p.minutes_today("Kitchen", [8]) == 1
    assert p.minutes_today("Kitchen", [7]) == 0


def test_state_round_trips() -> None:
    local = LocalClock("Europe/London")
    p = ActivityProfile(local)
    p.observe("Kitchen", utc("2025-11-28T14:00:00"))
    p.observe("Kitchen", utc("2025-11-29T09:00:00"))
    p.advance(utc("2025-11-30T09:00:00"))
    p.observe("Living room", utc("2025-11-30T10:00:00"))
    q = ActivityProfile(local)
    q.restore(p.state())
    assert q.state() == p.state()
    assert q.day_minutes("Kitchen", [9]) == [1]


def test_hourly_maxima_keep_the_largest_per_day_and_drop_old_days() -> None:
    local = LocalClock("UTC")
    m = HourlyMaxima(local, keep_days=2)
    day0 = utc("2025-11-28T00:00:00")
    m.advance(day0)
    for day in range(1, 5):
        m.advance(day0 + day * 24 * HOUR)
        m.record(14, 600.0 * day)
        m.record(14, 10.0)
    m.advance(day0 + 5 * 24 * HOUR)
    assert m.days_learned == 2
    assert m.highest([13, 14, 15]) == 2400.0
    again = HourlyMaxima(local, keep_days=2)
    again.restore(m.state())
    assert again.highest([14]) == 2400.0


def test_hours_of_a_window() -> None:
    assert hours_of(8 * HOUR, 12 * HOUR) == [8, 9, 10, 11]
    assert hours_of(22 * HOUR, 6 * HOUR) == [22, 23, 0, 1, 2, 3, 4, 5]
    assert hours_of(8 * HOUR, 8.5 * HOUR) == [8]


def test_daily_values() -> None:
    d = DailyValues(keep_days=3)
    for v in (1.0, 5.0, 2.0, 4.0):
        d.add(v)
    assert d.values == [5.0, 2.0, 4.0]
    assert d.median() == 4.0
    assert round(d.mean(), 2) == 3.67
