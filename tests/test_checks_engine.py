"""The check framework: routing, the lifecycle rules, the daily cap, state that survives a
restart, time that survives a wall-clock jump, and ticking on the hub's clocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.checks import (
    ALL_CHECKS,
    Check,
    CheckEngine,
    Condition,
    MemoryStateStore,
    Step,
    alert_record,
    register,
    registered_checks,
)
from hub.checks.timeline import DailyWindow, LocalClock, Timeline
from hub.clock import SimulatedClock, VirtualClock
from hub.config import SensorConfig
from hub.events import Alert, AlertState, Quantity, Reading, Severity, Stamp
from hub.store import Store
from tests.test_checks_harness import T0, Harness, make_config

Q = Quantity
HOUR = 3600.0


# --- registry and routing ------------------------------------------------------------------


def test_every_design_check_is_registered() -> None:
    names = {check.name for check in registered_checks()}
    assert {
        "cold_home",
        "overheating",
        "damp",
        "ventilation",
        "pm25",
        "pull_cord",
        "water_leak",
        "sensor_silent",
        "low_battery",
    } <= names
    # Safety alarms run first for a reading.
    assert [c.name for c in registered_checks()][:2] == ["pull_cord", "water_leak"]


def test_two_checks_cannot_share_a_name() -> None:
    before = list(ALL_CHECKS)

    class Impostor(Check):
        name = "cold_home"

    with pytest.raises(ValueError, match="cold_home"):
        register(Impostor)
    assert before == ALL_CHECKS


class Recorder(Check):
    """Wants humidity from bedrooms only; records what it is given."""

    name = "recorder"
    quantities: ClassVar[frozenset[Quantity]] = frozenset({Quantity.HUMIDITY})
    calls: ClassVar[list[tuple[str, float, float]]] = []
    ticks: ClassVar[list[float]] = []

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        return sensor.role.value == "bedroom"

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        Recorder.calls.append((sensor.id, reading.value, t))

    def on_tick(self, stamp: Stamp, t: float) -> None:
        Recorder.ticks.append(t)


def test_readings_go_only_to_the_checks_that_want_them() -> None:
    Recorder.calls.clear()
    h = Harness(checks=[Recorder])
    h.read("bedroom-climate", Q.HUMIDITY, 55)
    h.read("bedroom-climate", Q.TEMPERATURE, 20)  # not its quantity
    h.read("bathroom-climate", Q.HUMIDITY, 80)  # not its room
    h.advance(10)
    h.read("bedroom-climate", Q.HUMIDITY, 56)
    assert Recorder.calls == [("bedroom-climate", 55, T0), ("bedroom-climate", 56, T0 + 10)]
    assert h.engine.stats.readings == 4


def test_a_reading_from_an_unknown_sensor_is_counted_and_ignored() -> None:
    h = Harness()
    for _ in range(3):
        h.read("stranger", Q.BUTTON, 1)
    h.read("living-climate", Q.TEMPERATURE, float("nan"))
    assert h.alerts == []
    assert h.engine.stats.unknown_sensor == 3
    assert h.engine.stats.not_finite == 1
    assert h.engine.stats.readings == 0


class Broken(Check):
    name = "broken"
    quantities: ClassVar[frozenset[Quantity]] = frozenset({Quantity.BUTTON})

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        raise RuntimeError("bug")


def test_a_failing_check_does_not_stop_the_others() -> None:
    from hub.checks.safety import PullCordCheck

    h = Harness(checks=[Broken, PullCordCheck])
    h.read("pull-cord", Q.BUTTON, 1)
    assert [a.check for a in h.alerts] == ["pull_cord"]
    assert h.engine.stats.check_errors == 1


class Unstartable(Check):
    name = "unstartable"

    def __init__(self, ctx: Any) -> None:
        raise KeyError("a missing setting")


def test_a_check_that_cannot_start_does_not_stop_the_others() -> None:
    from hub.checks.safety import PullCordCheck

    h = Harness(checks=[Unstartable, PullCordCheck])
    h.read("pull-cord", Q.BUTTON, 1)
    assert [a.check for a in h.alerts] == ["pull_cord"]
    assert h.engine.stats.not_started == ["unstartable"]


def test_a_failing_alert_consumer_does_not_stop_the_checks() -> None:
    def refuse(alert: Alert) -> None:
        raise OSError("disk")

    engine = CheckEngine(make_config(), VirtualClock(T0), refuse)
    engine.on_reading(Reading("pull-cord", Q.BUTTON, 1, Stamp(T0, True, 0)))
    assert engine.alert_stats.raised == 1
    assert engine.alert_stats.delivery_errors == 1


# --- the lifecycle rules -------------------------------------------------------------------


def test_condition_needs_its_minimum_duration_and_hysteresis_to_change() -> None:
    cond = Condition("Lounge", "x")
    assert cond.track(0, inside=True, outside=False, min_on_s=100) is Step.NONE
    assert cond.track(50, inside=False, outside=False, min_on_s=100) is Step.NONE  # in the band
    assert cond.since == 0  # the band does not abandon a pending condition
    assert cond.track(99, inside=True, outside=False, min_on_s=100) is Step.NONE
    assert cond.track(100, inside=True, outside=False, min_on_s=100) is Step.RAISE
    cond.raised = True
    # Clearing needs the exit criterion held for min_off without a break.
    assert cond.track(110, False, True, 100, min_off_s=30) is Step.NONE
    assert cond.track(130, False, False, 100, min_off_s=30) is Step.NONE  # broken
    assert cond.track(135, False, True, 100, min_off_s=30) is Step.NONE
    assert cond.track(165, False, True, 100, min_off_s=30) is Step.CLEAR
    assert cond.exit_since == 135


def test_a_pending_condition_is_abandoned_when_it_leaves() -> None:
    cond = Condition("Lounge", "x")
    cond.track(0, True, False, 100)
    assert cond.track(10, False, True, 100) is Step.NONE
    assert cond.since is None
    cond.track(20, True, False, 100, abandon=False)
    assert cond.track(30, False, False, 100, abandon=True) is Step.NONE
    assert cond.since is None


def test_the_daily_cap_limits_raises_per_check_per_local_day() -> None:
    sensors = [(f"room{i}-climate", "climate", f"Room {i}", "other") for i in range(4)]
    h = Harness(make_config(sensors, {"daily_cap": 2}), start=T0 + 8 * HOUR)  # 16:00
    for _ in range(30):  # all four rooms at 17 °C for 2.5 h
        for sid, *_ in sensors:
            h.read(sid, Q.TEMPERATURE, 17)
        h.advance(300)
    raised = h.of("cold_home", AlertState.RAISED)
    assert len(raised) == 2
    assert h.engine.alert_stats.capped == 2  # two conditions refused, each counted once
    # After local midnight the cap resets: the rooms still cold are raised, with their start.
    while h.wall < T0 + 17 * HOUR:  # 01:00 the next day
        for sid, *_ in sensors:
            h.read(sid, Q.TEMPERATURE, 17)
        h.advance(300)
    raised = h.of("cold_home", AlertState.RAISED)
    assert len(raised) == 4
    assert {a.start for a in raised} == {T0 + 8 * HOUR}
    assert all(a.stamp.wall_time >= T0 + 16 * HOUR for a in raised[2:])


def test_immediate_safety_alarms_are_never_capped() -> None:
    h = Harness(make_config(checks={"daily_cap": 1}))
    for _ in range(5):
        h.read("pull-cord", Q.BUTTON, 1)
        h.read("pull-cord", Q.BUTTON, 0)
        h.read("kitchen-leak", Q.LEAK, 1)
        h.advance(60)
        h.read("kitchen-leak", Q.LEAK, 0)
        h.advance(HOUR)
    assert len(h.of("pull_cord", AlertState.RAISED)) == 5
    assert len(h.of("water_leak", AlertState.RAISED)) == 5
    assert h.engine.alert_stats.capped == 0


# --- time ----------------------------------------------------------------------------------


def test_timeline_follows_the_monotonic_clock_not_the_wall() -> None:
    line = Timeline()
    assert line.at(Stamp(1000.0, False, 5.0)) == 1000.0
    assert line.at(Stamp(1010.0, False, 15.0)) == 1010.0
    assert line.at(Stamp(99_999.0, True, 20.0)) == 1015.0  # NTP: wall +27 h, monotonic +5 s
    assert line.at(Stamp(99_990.0, True, 18.0)) == 1013.0  # a late stamp is placed in the past
    assert line.t == 1015.0 and line.late == 1


def test_timeline_bridges_a_restart_with_the_wall_clock_only_when_synced() -> None:
    line = Timeline()
    line.at(Stamp(1000.0, True, 500.0))
    saved = line.state()
    synced = Timeline()
    synced.restore(saved)
    assert synced.at(Stamp(1600.0, True, 3.0)) == 1600.0  # 10 min of downtime counted
    unsynced = Timeline()
    unsynced.restore(saved)
    assert unsynced.at(Stamp(90_000.0, False, 3.0)) == 1000.0  # unknown downtime: not counted
    backwards = Timeline()
    backwards.restore(saved)
    assert backwards.at(Stamp(10.0, True, 3.0)) == 1000.0  # never backwards


def test_local_clock_follows_dst() -> None:
    london = LocalClock("Europe/London")
    # 2025-10-26 00:30 UTC is 01:30 BST; 01:30 UTC is 01:30 GMT: the repeated hour.
    first = 1_761_438_600.0
    assert london.seconds_of_day(first) == london.seconds_of_day(first + HOUR) == 5400
    assert london.day(first) == london.day(first + HOUR)
    # 2026-03-29 01:00 UTC: clocks go forward, 00:59 GMT is followed by 02:00 BST.
    spring = 1_774_746_000.0
    assert london.seconds_of_day(spring - 60) == 59 * 60
    assert london.seconds_of_day(spring) == 2 * HOUR
    night = DailyWindow("22:00", "07:00")
    assert night.contains(23 * HOUR) and night.contains(6.9 * HOUR)
    assert not night.contains(7 * HOUR) and not night.contains(12 * HOUR)


def test_a_clock_jump_after_ntp_sync_neither_creates_nor_hides_a_condition() -> None:
    wrong = T0 - 5 * HOUR  # the Pi booted with a clock 5 h slow
    h = Harness(start=wrong, synced=False)
    h.hold("living-climate", Q.TEMPERATURE, 17, 30 * 60)
    h.hold("bathroom-climate", Q.HUMIDITY, 95, 0)
    h.read("bathroom-climate", Q.HUMIDITY, 95)
    h.wall += 5 * HOUR  # NTP syncs: the wall clock jumps forward, monotonic does not
    h.synced = True
    for _ in range(17):  # 85 more minutes of readings: 1 h 55 min below 18 °C in all
        h.read("living-climate", Q.TEMPERATURE, 17)
        h.read("bathroom-climate", Q.HUMIDITY, 95 if h.mono < 50 * 60 else 60)
        h.advance(300)
    assert h.alerts == []  # no cold, no damp (95 % for 50 min), no silent sensor
    h.hold("living-climate", Q.TEMPERATURE, 17, 10 * 60)
    (cold,) = h.of("cold_home")
    assert cold.stamp.monotonic == 2 * HOUR
    assert cold.evidence["below_for_min"] == 120
    assert cold.start == T0  # reported on the corrected clock


def test_a_backward_clock_jump_does_not_hide_a_condition() -> None:
    h = Harness()
    h.hold("living-climate", Q.TEMPERATURE, 17, HOUR)
    h.wall -= 3 * HOUR
    h.hold("living-climate", Q.TEMPERATURE, 17, HOUR + 300)
    (cold,) = h.of("cold_home")
    assert cold.stamp.monotonic == 2 * HOUR


def test_ticks_run_on_a_virtual_clock() -> None:
    async def scenario() -> list[Alert]:
        clock = VirtualClock(T0)
        alerts: list[Alert] = []
        engine = CheckEngine(make_config(), clock, alerts.append)
        ticker = asyncio.create_task(engine.run_ticks())
        await asyncio.sleep(0)
        for _ in range(4 * 6):  # a reading every 10 min for 4 h
            engine.on_reading(Reading("living-climate", Q.TEMPERATURE, 17.0, clock.stamp()))
            await clock.advance(600)
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        assert engine.stats.ticks == 4 * 60
        return alerts

    (cold,) = asyncio.run(scenario())
    assert cold.check == "cold_home"
    assert cold.stamp.wall_time == T0 + 2 * HOUR  # raised by the tick, not the next reading


def test_ticks_run_on_a_simulated_clock() -> None:
    async def scenario() -> Alert:
        clock = SimulatedClock(T0, speed=100_000)
        raised = asyncio.Event()
        alerts: list[Alert] = []

        def on_alert(alert: Alert) -> None:
            alerts.append(alert)
            raised.set()

        engine = CheckEngine(make_config(), clock, on_alert)

        async def thermometer() -> None:
            while True:
                engine.on_reading(Reading("living-climate", Q.TEMPERATURE, 16.5, clock.stamp()))
                await clock.sleep(600)

        tasks = [asyncio.create_task(engine.run_ticks()), asyncio.create_task(thermometer())]
        await asyncio.wait_for(raised.wait(), timeout=20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return alerts[0]

    cold = asyncio.run(scenario())
    assert cold.check == "cold_home" and cold.severity is Severity.WARNING
    assert 2 * HOUR <= cold.stamp.monotonic < 2 * HOUR + 600


# --- state across restarts -----------------------------------------------------------------


def test_a_restart_mid_condition_keeps_its_start_and_does_not_raise_twice(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "buffer.db")
    try:
        h = Harness(store=store)
        h.hold("living-climate", Q.TEMPERATURE, 17, 2 * HOUR + 600)
        (raised,) = h.of("cold_home")
        again = h.restart(reboot=True)  # monotonic starts from zero again
        assert "cold_home" in again.engine.stats.restored
        again.hold("living-climate", Q.TEMPERATURE, 17, 3 * HOUR)
        assert again.of("cold_home") == []  # still raised: not raised twice
        again.hold("living-climate", Q.TEMPERATURE, 20, 30 * 60)
        (cleared,) = again.of("cold_home")
        assert cleared.state is AlertState.CLEARED
        assert cleared.start == raised.start == T0
        assert cleared.evidence["lowest_c"] == 17
    finally:
        store.close()


def test_a_restart_while_pending_keeps_the_pending_start(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "buffer.db")
    try:
        h = Harness(store=store)
        h.hold("living-climate", Q.TEMPERATURE, 17, HOUR)
        again = h.restart(reboot=True)
        again.wall += 120  # two minutes to reboot
        again.hold("living-climate", Q.TEMPERATURE, 17, HOUR + 600)
        (cold,) = again.of("cold_home")
        assert cold.start == T0
        assert cold.evidence["below_for_min"] == 120  # the two minutes of downtime count
    finally:
        store.close()


def test_state_is_saved_by_run_ticks_after_an_alert_and_on_cancel() -> None:
    async def scenario() -> MemoryStateStore:
        clock = VirtualClock(T0)
        memory = MemoryStateStore()
        engine = CheckEngine(make_config(), clock, lambda a: None, memory, save_every_s=1e9)
        ticker = asyncio.create_task(engine.run_ticks())
        await asyncio.sleep(0)  # let it start sleeping on the clock
        await clock.advance(120)
        assert memory.saves == 0
        engine.on_reading(Reading("pull-cord", Q.BUTTON, 1, clock.stamp()))
        await clock.advance(60)  # the next tick saves: an alert went out
        assert memory.saves == 1
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        assert memory.saves == 2
        return memory

    memory = asyncio.run(scenario())
    saved = json.loads(memory.states["pull_cord"])
    assert saved["state"]["sensors"]["pull-cord"]["cond"]["raised"] is True


class _RefusingStore:
    def load_check_state(self) -> dict[str, str]:
        return {}

    def save_check_state(self, states: Mapping[str, str], saved_at: float) -> None:
        raise OSError("read-only file system")

    def open_alerts(self) -> list[dict[str, Any]]:
        return []


def test_a_failed_save_is_counted_and_the_checks_carry_on() -> None:
    h = Harness(store=_RefusingStore())
    h.engine.save_state()
    h.read("pull-cord", Q.BUTTON, 1)
    assert h.engine.stats.save_errors == 2  # the save right after the alert failed too...
    assert len(h.alerts) == 1  # ...and the alarm went out all the same


def test_the_state_behind_an_alert_is_saved_with_it_not_at_the_next_tick() -> None:
    """A crash between the alert's commit and a later save would restore a state that raises
    the same alarm again on restart."""
    memory = MemoryStateStore()
    h = Harness(store=memory)
    h.read("pull-cord", Q.BUTTON, 1)
    assert len(h.alerts) == 1 and memory.states  # no tick has run
    again = Harness(store=memory)
    again.read("pull-cord", Q.BUTTON, 1)  # still the same emergency: an update, not a raise
    assert [a.state for a in again.alerts if a.state is AlertState.RAISED] == []


def test_check_states_are_not_restored_onto_a_new_timeline() -> None:
    memory = MemoryStateStore()
    h = Harness(store=memory)
    h.hold("living-climate", Q.TEMPERATURE, 17, 3600)
    h.engine.save_state()
    memory.states["_engine"] = json.dumps({"v": 999, "state": {}})  # e.g. after an upgrade
    fresh = Harness(store=memory)
    assert fresh.engine.stats.restored == [] and "_engine" in fresh.engine.stats.restore_errors


def test_ticking_goes_on_after_a_failed_tick() -> None:
    h = Harness()
    real_tick = h.engine.tick
    calls: list[int] = []

    def flaky(stamp: Stamp | None = None) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in one tick")
        real_tick(stamp)

    h.engine.tick = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(h.engine.run_ticks())
        await asyncio.sleep(0)  # let it start sleeping on the virtual clock
        await h.clock.advance(10 * 60.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(calls) >= 9 and h.engine.stats.check_errors == 1


@pytest.mark.parametrize(
    "blob",
    [
        "not json",
        json.dumps({"v": 999, "state": {}}),
        json.dumps({"v": 1, "state": {"sensors": {"living-climate": {"cond": 3}}}}),
    ],
)
def test_unreadable_saved_state_starts_that_check_afresh(blob: str) -> None:
    memory = MemoryStateStore()
    memory.states = {"cold_home": blob, "_engine": "{}"}
    h = Harness(store=memory)
    assert "cold_home" not in h.engine.stats.restored
    h.hold("living-climate", Q.TEMPERATURE, 17, 2 * HOUR + 300)
    assert len(h.of("cold_home")) == 1


def test_saved_state_of_a_sensor_no_longer_configured_is_dropped() -> None:
    memory = MemoryStateStore()
    h = Harness(store=memory)
    h.hold("living-climate", Q.TEMPERATURE, 17, 2 * HOUR + 300)
    h.engine.save_state()
    fewer = make_config([("bedroom-climate", "climate", "Bedroom", "bedroom")])
    again = Harness(fewer, store=memory, start=h.wall)
    assert again.engine.open_conditions() == []


def test_check_state_round_trips_through_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "buffer.db")
    try:
        store.save_check_state({"a": '{"v":1}', "b": "{}"}, 1.0)
        store.save_check_state({"a": '{"v":2}'}, 2.0)
        assert store.load_check_state() == {"a": '{"v":2}', "b": "{}"}
    finally:
        store.close()
    reopened = Store.open(tmp_path / "buffer.db")
    try:
        assert reopened.load_check_state()["a"] == '{"v":2}'
    finally:
        reopened.close()


def _open_conditions(engine: CheckEngine) -> list[tuple[str, Any]]:
    return [(name, cond.sensor_id) for name, cond in engine.open_conditions()]


def test_open_conditions_lists_pending_and_raised() -> None:
    h = Harness()
    h.hold("living-climate", Q.TEMPERATURE, 17, 600)
    h.read("pull-cord", Q.BUTTON, 1)
    assert sorted(_open_conditions(h.engine)) == [
        ("cold_home", "living-climate"),
        ("pull_cord", "pull-cord"),
    ]


def test_an_alert_as_a_json_line_in_local_time() -> None:
    h = Harness(start=1_751_958_000.0)  # 2025-07-08 07:00 UTC, 08:00 BST
    h.read("pull-cord", Q.BUTTON, 1)
    record = alert_record(h.alerts[0], h.engine.local)
    assert json.loads(json.dumps(record)) == {
        "check": "pull_cord",
        "severity": "urgent",
        "state": "raised",
        "room": "Bathroom",
        "sensor": "pull-cord",
        "time": "2025-07-08T08:00:00+01:00",
        "start": "2025-07-08T08:00:00+01:00",
        "end": None,
        "clock_synced": True,
        "evidence": {"presses": 1, "sensor_kind": "button"},
    }


def test_an_alert_left_open_by_a_check_that_lost_its_state_is_cleared(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "hub.db")
    raised = Alert(
        "cold_home",
        Severity.WARNING,
        AlertState.RAISED,
        "Living room",
        "living-climate",
        T0,
        None,
        {"min_c": 16.9},
        Stamp(T0, True, 0.0),
    )
    store.commit([raised])
    alerts: list[Alert] = []
    CheckEngine(make_config(), VirtualClock(T0 + 3600), alerts.append, store)
    [cleared] = alerts  # no saved state at all: nothing could ever clear it otherwise
    assert (cleared.check, cleared.state, cleared.room) == (
        "cold_home",
        AlertState.CLEARED,
        "Living room",
    )
    assert cleared.start == T0 and "without its saved state" in cleared.evidence["reason"]
    store.commit(alerts)
    assert store.open_alerts() == []
    store.close()


def test_an_open_alert_whose_check_state_is_restored_stays_open(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "hub.db")
    h = Harness(store=store)
    h.read("pull-cord", Q.BUTTON, 1)  # raised, and its state saved straight after
    store.commit(h.alerts)
    alerts: list[Alert] = []
    CheckEngine(h.config, VirtualClock(h.wall), alerts.append, store)
    assert alerts == [] and [a["check"] for a in store.open_alerts()] == ["pull_cord"]
    store.close()
