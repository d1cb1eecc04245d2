"""Immediate safety alarms: pull cord or panic button, and water leak.

Both are raised synchronously inside `on_reading`, so the alert exists as soon as the driver
has emitted the reading (well within a second of the GPIO edge), and neither is subject to
the daily cap: a person on the floor is never capped. They run before every other check.

A pull cord alarm latches nothing on the hub itself (the monitoring centre handles the call):
further presses while it is raised are `active` updates carrying the count, not new alarms,
and it clears after PULL_CORD_QUIET_S with no press, so the next emergency is a new alarm.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.checks.base import Check, CheckContext, register
from hub.checks.lifecycle import Condition, Step
from hub.config import SensorConfig
from hub.events import Quantity, Reading, Severity, Stamp

PULL_CORD_QUIET_S = 900.0  # no press for 15 minutes: the pull cord alarm clears
PRESS_UPDATE_EVERY_S = 60.0  # repeated presses: at most one `active` update a minute
LEAK_DRY_S = 600.0  # a leak clears after the sensor has read dry for 10 minutes


@dataclass(slots=True)
class _Cord:
    cond: Condition
    presses: int = 0
    last_press_t: float = 0.0
    reported_presses: int = 0


@register
class PullCordCheck(Check):
    name = "pull_cord"
    quantities = frozenset({Quantity.BUTTON})
    capped = False
    order = 0

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._cords: dict[str, _Cord] = {}

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if reading.value < 0.5:
            return  # released: the alarm stands until it clears on its own
        cord = self._cords.get(sensor.id)
        if cord is None:
            cord = self._cords[sensor.id] = _Cord(Condition(sensor.room, sensor.id))
        cond = cord.cond
        cord.last_press_t = max(cord.last_press_t, t)
        if not cond.raised:
            cond.reset()
            cord.presses = cord.reported_presses = 1
            self.alerts.raise_(cond, Severity.URGENT, reading.stamp, t, self._evidence(cord))
            return
        cord.presses += 1
        if cond.updated_t is None or t - cond.updated_t >= PRESS_UPDATE_EVERY_S:
            cord.reported_presses = cord.presses
            self.alerts.update(cond, Severity.URGENT, reading.stamp, t, self._evidence(cord))

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for cord in self._cords.values():
            cond = cord.cond
            if not cond.raised:
                continue
            if cord.presses > cord.reported_presses and (
                cond.updated_t is None or t - cond.updated_t >= PRESS_UPDATE_EVERY_S
            ):
                cord.reported_presses = cord.presses
                self.alerts.update(cond, Severity.URGENT, stamp, t, self._evidence(cord))
            if t - cord.last_press_t >= PULL_CORD_QUIET_S:
                cond.exit_since = t
                evidence = {**self._evidence(cord), "quiet_min": round(PULL_CORD_QUIET_S / 60)}
                self.alerts.clear(cond, stamp, t, evidence)

    def _evidence(self, cord: _Cord) -> dict[str, Any]:
        sensor = self.ctx.sensors.get(cord.cond.sensor_id or "")
        return {"presses": cord.presses, "sensor_kind": sensor.kind.value if sensor else None}

    def state(self) -> dict[str, Any]:
        return {
            "sensors": {
                sid: {
                    "cond": c.cond.to_state(),
                    "presses": c.presses,
                    "last_press_t": c.last_press_t,
                    "reported_presses": c.reported_presses,
                }
                for sid, c in self._cords.items()
            }
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            if sensor_id in self.ctx.sensors:
                self._cords[sensor_id] = _Cord(
                    Condition.from_state(saved["cond"]),
                    int(saved["presses"]),
                    float(saved["last_press_t"]),
                    int(saved["reported_presses"]),
                )

    def conditions(self) -> Iterator[Condition]:
        return (c.cond for c in self._cords.values() if c.cond.raised)


@dataclass(slots=True)
class _Leak:
    cond: Condition
    wet: bool = False
    last_t: float = 0.0
    wet_readings: int = 0


@register
class WaterLeakCheck(Check):
    name = "water_leak"
    quantities = frozenset({Quantity.LEAK})
    capped = False
    order = 0

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._leaks: dict[str, _Leak] = {}

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        leak = self._leaks.get(sensor.id)
        if leak is None:
            leak = self._leaks[sensor.id] = _Leak(Condition(sensor.room, sensor.id))
        elif t < leak.last_t:
            return
        leak.wet = reading.value >= 0.5
        leak.last_t = t
        if leak.wet:
            leak.wet_readings += 1
        self._evaluate(leak, reading.stamp, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for leak in self._leaks.values():
            if leak.cond.raised:
                self._evaluate(leak, stamp, t)

    def _evaluate(self, leak: _Leak, stamp: Stamp, t: float) -> None:
        cond = leak.cond
        step = cond.track(t, leak.wet, not leak.wet, 0.0, LEAK_DRY_S)
        if step is Step.RAISE:
            leak.wet_readings = 1
            evidence = {"wet_readings": 1, "dry_for_min_to_clear": round(LEAK_DRY_S / 60)}
            self.alerts.raise_(cond, Severity.URGENT, stamp, t, evidence)
        elif step is Step.CLEAR:
            evidence = {"wet_readings": leak.wet_readings, "dry_min": round(LEAK_DRY_S / 60)}
            self.alerts.clear(cond, stamp, t, evidence)

    def state(self) -> dict[str, Any]:
        return {
            "sensors": {
                sid: {
                    "cond": k.cond.to_state(),
                    "wet": k.wet,
                    "last_t": k.last_t,
                    "wet_readings": k.wet_readings,
                }
                for sid, k in self._leaks.items()
            }
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            if sensor_id in self.ctx.sensors:
                self._leaks[sensor_id] = _Leak(
                    Condition.from_state(saved["cond"]),
                    bool(saved["wet"]),
                    float(saved["last_t"]),
                    int(saved["wet_readings"]),
                )

    def conditions(self) -> Iterator[Condition]:
        return (k.cond for k in self._leaks.values() if k.cond.since is not None)
