"""Device health alerts: a sensor gone silent, a battery running low.

Silence is judged by the engine's DeviceHealth (health.py), which every check can consult:
a silent motion sensor must read as "sensor silent", never as an inactive person. These
checks only turn its verdicts into alerts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hub.checks.base import Check, CheckContext, register, setting
from hub.checks.health import SensorHealth
from hub.checks.lifecycle import Condition, Step
from hub.config import SensorConfig
from hub.events import Quantity, Reading, Severity, Stamp

BATTERY_LOW_PCT = 15.0  # default for checks.sensor_silent.battery_low_pct (proposed key)
BATTERY_BAND_PCT = 10.0  # clears at 25 %: a new battery, not a warm afternoon


@register
class SensorSilentCheck(Check):
    name = "sensor_silent"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._conds: dict[str, Condition] = {}

    def on_tick(self, stamp: Stamp, t: float) -> None:
        health = self.ctx.health
        for rec in health.records():
            cond = self._conds.get(rec.sensor_id)
            if rec.silent:
                if cond is None:
                    sensor = self.ctx.sensors[rec.sensor_id]
                    cond = self._conds[rec.sensor_id] = Condition(sensor.room, sensor.id)
                if not cond.raised:
                    cond.since = health.quiet_since(rec)
                    self.alerts.raise_(cond, Severity.WARNING, stamp, t, self._evidence(rec, t))
            elif cond is not None:
                if cond.raised and rec.last_t is not None:
                    cond.exit_since = min(t, rec.last_t)
                evidence = self._evidence(rec, t)
                self.alerts.clear(cond, stamp, t, evidence)
                del self._conds[rec.sensor_id]

    def _evidence(self, rec: SensorHealth, t: float) -> dict[str, Any]:
        health = self.ctx.health
        usual = health.usual_gap_s(rec.sensor_id)
        after = rec.silent_after
        return {
            "quiet_for_min": round((t - health.quiet_since(rec)) / 60.0),
            "last_heard": rec.last_wall,
            "usual_longest_gap_min": None if usual is None else round(usual / 60.0, 1),
            "silent_after_min": None if after is None else round(after / 60.0),
            "battery_pct": rec.battery,
        }

    def state(self) -> dict[str, Any]:
        return {"sensors": {sid: c.to_state() for sid, c in self._conds.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            if sensor_id in self.ctx.sensors:
                self._conds[sensor_id] = Condition.from_state(saved)

    def conditions(self) -> Iterator[Condition]:
        return iter(list(self._conds.values()))


@register
class LowBatteryCheck(Check):
    name = "low_battery"
    quantities = frozenset({Quantity.BATTERY})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.low_pct = setting(ctx.checks.sensor_silent, "battery_low_pct", BATTERY_LOW_PCT)
        self._conds: dict[str, Condition] = {}

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        cond = self._conds.get(sensor.id)
        if cond is None:
            cond = self._conds[sensor.id] = Condition(sensor.room, sensor.id)
        value = reading.value
        step = cond.track(t, value < self.low_pct, value >= self.low_pct + BATTERY_BAND_PCT, 0.0)
        if step is Step.RAISE:
            evidence = {"battery_pct": value, "low_below_pct": self.low_pct}
            self.alerts.raise_(cond, Severity.INFO, reading.stamp, t, evidence)
        elif step is Step.CLEAR:
            evidence = {"battery_pct": value, "low_below_pct": self.low_pct}
            self.alerts.clear(cond, reading.stamp, t, evidence)

    def state(self) -> dict[str, Any]:
        return {
            "sensors": {sid: c.to_state() for sid, c in self._conds.items() if c.since is not None}
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            if sensor_id in self.ctx.sensors:
                self._conds[sensor_id] = Condition.from_state(saved)

    def conditions(self) -> Iterator[Condition]:
        return (c for c in self._conds.values() if c.since is not None)
