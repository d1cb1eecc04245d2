"""Environment checks on their own: cold home, overheating (with DST nights), damp (rolling
window, showers), ventilation, fine particles; and flapping values near each threshold."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.events import AlertState, Quantity, Severity
from tests.test_checks_harness import T0, Harness, make_config

Q = Quantity
HOUR = 3600.0
MIN = 60.0
RAISED, ACTIVE, CLEARED = AlertState.RAISED, AlertState.ACTIVE, AlertState.CLEARED


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --- cold home -----------------------------------------------------------------------------


def test_cold_home_warns_after_two_hours_below_18() -> None:
    h = Harness()
    h.hold("living-climate", Q.TEMPERATURE, 17.5, 2 * HOUR - 5 * MIN)
    assert h.of("cold_home") == []
    h.hold("living-climate", Q.TEMPERATURE, 17.5, 10 * MIN)
    (alert,) = h.of("cold_home")
    assert (alert.check, alert.state, alert.severity) == ("cold_home", RAISED, Severity.WARNING)
    assert (alert.room, alert.sensor_id) == ("Living room", "living-climate")
    assert alert.start == T0 and alert.end is None
    assert alert.evidence["below_for_min"] == 120
    assert alert.evidence["warning_below_c"] == 18.0
    assert alert.evidence["temperature_c"] == 17.5


def test_cold_home_below_16_is_urgent_without_waiting_two_hours() -> None:
    h = Harness()
    h.hold("bedroom-climate", Q.TEMPERATURE, 15.0, 40 * MIN)
    (alert,) = h.of("cold_home")
    assert alert.severity is Severity.URGENT
    assert alert.stamp.monotonic == 30 * MIN


def test_cold_home_escalates_from_warning_to_urgent_then_clears() -> None:
    h = Harness()
    h.hold("living-climate", Q.TEMPERATURE, 17.0, 2 * HOUR + 5 * MIN)
    h.hold("living-climate", Q.TEMPERATURE, 15.5, 40 * MIN)
    h.hold("living-climate", Q.TEMPERATURE, 20.0, 30 * MIN)
    states = [(a.state, a.severity) for a in h.of("cold_home")]
    assert states == [
        (RAISED, Severity.WARNING),
        (ACTIVE, Severity.URGENT),
        (CLEARED, Severity.URGENT),
    ]
    raised, _, cleared = h.of("cold_home")
    assert cleared.start == raised.start == T0
    assert cleared.end == T0 + 2 * HOUR + 5 * MIN + 40 * MIN  # when it warmed up
    assert cleared.evidence["lowest_c"] == 15.5


def test_cold_home_near_the_threshold_does_not_flap() -> None:
    h = Harness()
    h.series("living-climate", Q.TEMPERATURE, [17.9, 18.1] * 48, 5 * MIN)  # 8 h of flapping
    assert [a.state for a in h.of("cold_home")] == [RAISED]
    h.series("living-climate", Q.TEMPERATURE, [18.4, 18.6] * 24, 5 * MIN)  # in and out of the band
    assert [a.state for a in h.of("cold_home")] == [RAISED]
    h.hold("living-climate", Q.TEMPERATURE, 19.0, 30 * MIN)
    assert [a.state for a in h.of("cold_home")] == [RAISED, CLEARED]


def test_cold_home_swinging_across_the_threshold_never_raises() -> None:
    h = Harness()
    h.series("living-climate", Q.TEMPERATURE, [17.0, 19.0] * 72, 10 * MIN)  # a day
    assert h.of("cold_home") == []


def test_a_gap_in_the_data_restarts_a_pending_cold_condition() -> None:
    h = Harness()
    h.hold("living-climate", Q.TEMPERATURE, 17.0, HOUR + 30 * MIN)
    h.advance(2 * HOUR)  # the sensor says nothing for two hours: nothing is known
    assert h.of("cold_home") == []
    h.hold("living-climate", Q.TEMPERATURE, 17.0, HOUR)
    assert h.of("cold_home") == []
    h.hold("living-climate", Q.TEMPERATURE, 17.0, HOUR + 5 * MIN)
    (alert,) = h.of("cold_home")
    assert alert.start == T0 + 3.5 * HOUR


# --- overheating ---------------------------------------------------------------------------


def _night(h: Harness, sensor: str, value: float, until: float) -> None:
    while h.wall < until:
        h.read(sensor, Q.TEMPERATURE, value)
        h.advance(5 * MIN)


def test_overheating_is_a_bedroom_at_night_for_an_hour() -> None:
    start = utc("2025-07-10 20:00")  # 21:00 BST
    h = Harness(start=start)
    for sensor in ("bedroom-climate", "living-climate"):
        h.read(sensor, Q.TEMPERATURE, 27.5)
    _night(h, "bedroom-climate", 27.5, utc("2025-07-11 07:30"))
    raised, cleared = h.of("overheating")
    assert raised.sensor_id == "bedroom-climate"  # the living room is not a bedroom
    assert raised.stamp.wall_time == utc("2025-07-10 22:00")  # 23:00 BST: 22:00 + 1 h
    assert raised.start == utc("2025-07-10 21:00")  # 22:00 BST
    assert cleared.stamp.wall_time == utc("2025-07-11 06:00")  # 07:00 BST: the night ended
    assert cleared.evidence["ended"] == "the night ended"


def test_overheating_clears_when_the_bedroom_cools_with_hysteresis() -> None:
    start = utc("2025-07-10 21:30")  # 22:30 BST
    h = Harness(start=start)
    _night(h, "bedroom-climate", 27.0, start + 90 * MIN)
    h.series("bedroom-climate", Q.TEMPERATURE, [25.9, 26.1] * 12, 5 * MIN)  # in the band
    assert [a.state for a in h.of("overheating")] == [RAISED]
    _night(h, "bedroom-climate", 25.0, h.wall + 30 * MIN)
    _, cleared = h.of("overheating")
    assert cleared.evidence["ended"] == "cooled down"
    assert cleared.evidence["highest_c"] == 27.0


def test_overheating_night_when_the_clocks_go_back() -> None:
    # Saturday 25 October 2025: BST until 02:00 BST on Sunday, then GMT. The night 22:00-07:00
    # local is 10 hours long.
    h = Harness(start=utc("2025-10-25 20:00"))  # 21:00 BST
    _night(h, "bedroom-climate", 27.0, utc("2025-10-26 08:00"))
    raised, cleared = h.of("overheating")
    assert raised.start == utc("2025-10-25 21:00")  # 22:00 BST
    assert raised.stamp.wall_time == utc("2025-10-25 22:00")
    assert cleared.stamp.wall_time == utc("2025-10-26 07:00")  # 07:00 GMT
    assert cleared.evidence["above_for_min"] == 10 * 60


def test_overheating_night_when_the_clocks_go_forward() -> None:
    # Saturday 28 March 2026: GMT until 01:00 GMT on Sunday, then BST. The night is 8 hours.
    h = Harness(start=utc("2026-03-28 21:00"))  # 21:00 GMT
    _night(h, "bedroom-climate", 27.0, utc("2026-03-29 08:00"))
    raised, cleared = h.of("overheating")
    assert raised.start == utc("2026-03-28 22:00")
    assert raised.stamp.wall_time == utc("2026-03-28 23:00")
    assert cleared.stamp.wall_time == utc("2026-03-29 06:00")  # 07:00 BST
    assert cleared.evidence["above_for_min"] == 8 * 60


def test_overheating_uses_the_configured_time_zone() -> None:
    config = make_config(timezone="America/New_York")
    h = Harness(config, start=utc("2025-07-11 01:30"))  # 21:30 EDT
    _night(h, "bedroom-climate", 28.0, utc("2025-07-11 04:00"))
    (raised,) = h.of("overheating")
    assert raised.stamp.wall_time == utc("2025-07-11 03:00")  # 23:00 EDT


# --- damp ----------------------------------------------------------------------------------


def _humidity(h: Harness, value: float, minutes: float, every: float = 5 * MIN) -> None:
    h.hold("bathroom-climate", Q.HUMIDITY, value, minutes * MIN, every)


def test_a_daily_shower_does_not_raise_damp() -> None:
    h = Harness()
    for _ in range(7):
        _humidity(h, 96, 40)  # a long shower and the steam after it
        _humidity(h, 78, 30)
        _humidity(h, 60, 24 * 60 - 70)
    assert h.of("damp") == []


def test_damp_above_90_for_more_than_an_hour() -> None:
    h = Harness()
    _humidity(h, 60, 30)
    _humidity(h, 92, 75)
    (alert,) = h.of("damp")
    assert alert.check == "damp" and alert.severity is Severity.WARNING
    assert alert.stamp.monotonic == 30 * MIN + 61 * MIN  # the first tick after 60 min above 90 %
    assert alert.evidence["minutes_above_very_high"] > 60
    assert alert.evidence["rules_met"] == ["above 90 % for more than 60 min"]


def test_damp_counts_time_above_70_across_a_rolling_12_hours() -> None:
    h = Harness()
    for _ in range(2):
        _humidity(h, 75, 50)
        _humidity(h, 60, 120)
    _humidity(h, 75, 30)  # 130 min above 70 % within 12 h: raised 20 min into this one
    (alert,) = h.of("damp")
    assert alert.stamp.monotonic == 2 * 170 * MIN + 21 * MIN  # the first tick past 120 min
    assert alert.evidence["minutes_above_high"] == 121
    assert alert.start == T0 + 2 * 170 * MIN + 21 * MIN


def test_damp_does_not_count_time_older_than_the_window() -> None:
    h = Harness()
    for _ in range(12):  # 50 min above 70 % every 7 h: at most 100 min in any 12 h
        _humidity(h, 75, 50)
        _humidity(h, 60, 370)
    assert h.of("damp") == []


def test_damp_clears_when_the_window_has_dried_out() -> None:
    h = Harness()
    _humidity(h, 92, 75)
    _humidity(h, 55, 12 * 60)
    _, cleared = h.of("damp")
    assert cleared.state is CLEARED
    # Cleared once less than half the limit (30 min above 90 %) is left in the window.
    assert cleared.stamp.monotonic == 75 * MIN + 12 * HOUR - 30 * MIN
    assert cleared.evidence["minutes_above_very_high"] <= 30


def test_damp_does_not_count_a_silent_sensor_as_still_humid() -> None:
    h = Harness()
    h.read("bathroom-climate", Q.HUMIDITY, 95)
    h.advance(6 * HOUR)  # one reading, then nothing: believed for 30 min only
    h.read("bathroom-climate", Q.HUMIDITY, 95)
    h.advance(20 * MIN)
    assert h.of("damp") == []


# --- ventilation ---------------------------------------------------------------------------


def test_ventilation_needs_an_hour_above_1500_and_clears_below_800() -> None:
    h = Harness()
    h.hold("kitchen-air", Q.CO2, 1600, 55 * MIN)
    assert h.of("ventilation") == []
    h.hold("kitchen-air", Q.CO2, 1600, 10 * MIN)
    h.hold("kitchen-air", Q.CO2, 1000, 3 * HOUR)  # better, but not good: still raised
    h.hold("kitchen-air", Q.CO2, 700, 30 * MIN)
    raised, cleared = h.of("ventilation")
    assert raised.check == "ventilation" and raised.severity is Severity.INFO
    assert raised.stamp.monotonic == HOUR
    assert raised.evidence["co2_ppm"] == 1600
    assert cleared.state is CLEARED and cleared.evidence["highest_ppm"] == 1600
    assert cleared.end == T0 + 65 * MIN + 3 * HOUR


def test_ventilation_is_not_sustained_through_a_dip() -> None:
    h = Harness()
    for _ in range(6):
        h.hold("kitchen-air", Q.CO2, 1600, 40 * MIN)
        h.hold("kitchen-air", Q.CO2, 1450, 5 * MIN)
    assert h.of("ventilation") == []


# --- fine particles ------------------------------------------------------------------------


def test_pm25_24h_mean_above_15() -> None:
    h = Harness()
    h.hold("kitchen-air", Q.PM25, 10, 12 * HOUR)
    h.hold("kitchen-air", Q.PM25, 19, 12 * HOUR)  # a mean of 14.5: no alert
    assert h.of("pm25") == []
    h.hold("kitchen-air", Q.PM25, 30, 6 * HOUR)
    (raised,) = h.of("pm25")
    assert raised.check == "pm25"
    assert raised.evidence["mean_ugm3"] >= 15
    assert raised.evidence["latest_ugm3"] == 30
    h.hold("kitchen-air", Q.PM25, 5, 24 * HOUR)
    assert [a.state for a in h.of("pm25")] == [RAISED, CLEARED]


def test_pm25_needs_most_of_the_window_before_judging() -> None:
    h = Harness()
    h.hold("kitchen-air", Q.PM25, 80, 17 * HOUR)  # not yet 3/4 of 24 h of data
    assert h.of("pm25") == []
    h.hold("kitchen-air", Q.PM25, 80, 2 * HOUR)
    (raised,) = h.of("pm25")
    assert raised.evidence["hours_with_data"] >= 18
