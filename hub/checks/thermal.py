"""Cold home and overheating: temperature held against a threshold for a minimum time.

Defaults and sources (DESIGN.md): cold home below 18 °C for 2 h+ (warning) and below 16 °C
(urgent), UKHSA cold-weather advice; overheating, a bedroom above 26 °C between 22:00 and
07:00, the CIBSE TM59 bedroom criterion. Each temperature sensor is its own condition, in the
room the config gives it, with that room's thresholds ([checks.rooms]), fixed when its state
is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hub.checks.base import Check, CheckContext, register, setting
from hub.checks.lifecycle import Condition, Step
from hub.checks.timeline import DailyWindow
from hub.config import RoomRole, SensorConfig
from hub.events import Quantity, Reading, Severity, Stamp

BAND_C = 0.5  # hysteresis: a cold condition ends at 18.5 °C, overheating at 25.5 °C
CLEAR_HOLD_S = 900.0  # and only once that has held for 15 minutes
URGENT_CONFIRM_S = 1800.0  # below 16 °C for 30 minutes: one cold gust is not an emergency
OVERHEAT_MIN_S = 3600.0  # default for checks.overheating.for_minutes (proposed key)


@dataclass(frozen=True, slots=True)
class _ColdLimits:
    warning_c: float
    after_s: float
    urgent_c: float


@dataclass(frozen=True, slots=True)
class _HotLimits:
    above_c: float
    window: DailyWindow
    min_s: float


L = TypeVar("L", _ColdLimits, _HotLimits)


@dataclass(slots=True)
class _Temperature(Generic[L]):
    cond: Condition
    limits: L  # the sensor's room's thresholds (from the config: not saved)
    value: float = math.nan
    last_t: float = -math.inf
    extreme: float = math.nan  # lowest (cold) or highest (overheating) during the condition
    urgent_since: float | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "cond": self.cond.to_state(),
            "value": None if math.isnan(self.value) else self.value,
            "last_t": None if math.isinf(self.last_t) else self.last_t,
            "extreme": None if math.isnan(self.extreme) else self.extreme,
            "urgent_since": self.urgent_since,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], limits: L) -> _Temperature[L]:
        def number(key: str, missing: float) -> float:
            value = state[key]
            return missing if value is None else float(value)

        urgent = state["urgent_since"]
        return cls(
            Condition.from_state(state["cond"]),
            limits,
            number("value", math.nan),
            number("last_t", -math.inf),
            number("extreme", math.nan),
            None if urgent is None else float(urgent),
        )


class _TemperatureCheck(Check, Generic[L]):
    """Per-sensor state, continuity and persistence shared by the two temperature checks."""

    quantities = frozenset({Quantity.TEMPERATURE})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.hold_s = ctx.hold_s
        self._states: dict[str, _Temperature[L]] = {}
        self._by_room: dict[str, L] = {}

    def _limits(self, sensor: SensorConfig) -> L:
        """The thresholds for `sensor`'s room, made once per room."""
        limits = self._by_room.get(sensor.room)
        if limits is None:
            limits = self._by_room[sensor.room] = self._make_limits(sensor)
        return limits

    def _make_limits(self, sensor: SensorConfig) -> L:
        raise NotImplementedError

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        state = self._states.get(sensor.id)
        if state is None:
            state = _Temperature(Condition(sensor.room, sensor.id), self._limits(sensor))
            self._states[sensor.id] = state
        elif t < state.last_t:
            return  # a late reading: the newer one already speaks for this sensor
        if t - state.last_t > self.hold_s and not state.cond.raised:
            # A gap in the data: nothing is known about it, so a pending condition starts over.
            state.cond.reset()
            state.urgent_since = None
        state.value = reading.value
        state.last_t = t
        self._evaluate(state, reading.stamp, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for state in self._states.values():
            if state.cond.since is not None and t - state.last_t <= self.hold_s:
                self._evaluate(state, stamp, t)

    def _evaluate(self, state: _Temperature[L], stamp: Stamp, t: float) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {"sensors": {sid: s.to_state() for sid, s in self._states.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            sensor = self.ctx.sensors.get(sensor_id)
            if sensor is not None:
                self._states[sensor_id] = _Temperature.from_state(saved, self._limits(sensor))

    def conditions(self) -> Iterator[Condition]:
        return (s.cond for s in self._states.values() if s.cond.since is not None)


@register
class ColdHomeCheck(_TemperatureCheck[_ColdLimits]):
    name = "cold_home"

    def _make_limits(self, sensor: SensorConfig) -> _ColdLimits:
        cfg = self.ctx.checks_for(sensor).cold_home
        return _ColdLimits(cfg.warning_below_c, cfg.warning_after_min * 60.0, cfg.urgent_below_c)

    def _evaluate(self, state: _Temperature[_ColdLimits], stamp: Stamp, t: float) -> None:
        value, cond, lim = state.value, state.cond, state.limits
        if value < lim.urgent_c:
            if state.urgent_since is None:
                state.urgent_since = t
        elif value >= lim.urgent_c + BAND_C:
            state.urgent_since = None
        urgent = state.urgent_since is not None and t - state.urgent_since >= URGENT_CONFIRM_S
        step = cond.track(
            t, value < lim.warning_c, value >= lim.warning_c + BAND_C, lim.after_s, CLEAR_HOLD_S
        )
        if cond.since is None:  # quiet
            state.extreme = math.nan
            return
        if not value >= state.extreme:  # the lowest so far (NaN: the first)
            state.extreme = value
        if step is Step.CLEAR:
            self.alerts.clear(cond, stamp, t, self._evidence(state, t))
            state.extreme = math.nan
        elif not cond.raised:
            if step is Step.RAISE or urgent:
                severity = Severity.URGENT if urgent else Severity.WARNING
                self.alerts.raise_(cond, severity, stamp, t, self._evidence(state, t))
        elif urgent and cond.severity is not Severity.URGENT:
            self.alerts.update(cond, Severity.URGENT, stamp, t, self._evidence(state, t))

    def _evidence(self, state: _Temperature[_ColdLimits], t: float) -> dict[str, Any]:
        since, lim = state.cond.since, state.limits
        return {
            "temperature_c": round(state.value, 2),
            "lowest_c": None if math.isnan(state.extreme) else round(state.extreme, 2),
            "below_for_min": None if since is None else round((t - since) / 60.0),
            "warning_below_c": lim.warning_c,
            "warning_after_min": round(lim.after_s / 60.0),
            "urgent_below_c": lim.urgent_c,
        }


@register
class OverheatingCheck(_TemperatureCheck[_HotLimits]):
    name = "overheating"

    def _make_limits(self, sensor: SensorConfig) -> _HotLimits:
        cfg = self.ctx.checks_for(sensor).overheating
        return _HotLimits(
            cfg.bedroom_above_c,
            DailyWindow(cfg.night_start, cfg.night_end),
            setting(cfg, "for_minutes", OVERHEAT_MIN_S / 60.0) * 60.0,
        )

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        return sensor.role is RoomRole.BEDROOM

    def on_tick(self, stamp: Stamp, t: float) -> None:
        # Every fresh value, not only open conditions: a bedroom at 27 °C since the evening
        # enters the night window at 22:00 without a new reading. A raised condition is
        # looked at even when stale, so that it still ends with the night.
        for state in self._states.values():
            if state.cond.raised or t - state.last_t <= self.hold_s:
                self._evaluate(state, stamp, t)

    def _evaluate(self, state: _Temperature[_HotLimits], stamp: Stamp, t: float) -> None:
        value, cond, lim = state.value, state.cond, state.limits
        night = lim.window.contains(self.ctx.local.seconds_of_day(stamp.wall_time))
        inside = night and value > lim.above_c
        outside = value <= lim.above_c - BAND_C
        if cond.raised and not night:
            cond.exit_since = cond.exit_since if cond.exit_since is not None else t
            self.alerts.clear(cond, stamp, t, self._evidence(state, t, "the night ended"))
            state.extreme = math.nan
            return
        step = cond.track(t, inside, outside, lim.min_s, CLEAR_HOLD_S, abandon=not inside)
        if cond.since is None:
            state.extreme = math.nan
            return
        if not value <= state.extreme:  # the highest so far (NaN: the first)
            state.extreme = value
        if step is Step.RAISE:
            self.alerts.raise_(cond, Severity.WARNING, stamp, t, self._evidence(state, t))
        elif step is Step.CLEAR:
            self.alerts.clear(cond, stamp, t, self._evidence(state, t, "cooled down"))
            state.extreme = math.nan

    def _evidence(
        self, state: _Temperature[_HotLimits], t: float, ended: str | None = None
    ) -> dict[str, Any]:
        since, lim = state.cond.since, state.limits
        evidence: dict[str, Any] = {
            "temperature_c": round(state.value, 2),
            "highest_c": None if math.isnan(state.extreme) else round(state.extreme, 2),
            "above_for_min": None if since is None else round((t - since) / 60.0),
            "bedroom_above_c": lim.above_c,
            "for_min": round(lim.min_s / 60.0),
            "night": str(lim.window),
        }
        if ended is not None:
            evidence["ended"] = ended
        return evidence
