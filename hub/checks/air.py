"""Air: damp and mould risk, poor ventilation, fine particles.

Defaults and sources (DESIGN.md): damp, RH above 70 % for more than 2 h in any 12 h or above
90 % for more than 1 h in any 12 h (Approved Document F moisture criterion; Awaab's Law);
ventilation, CO2 above 1500 ppm for 1 h+, good again below 800 ppm (HSE); fine particles,
PM2.5 24 h mean above 15 µg/m³ (WHO 2021). Damp and PM2.5 are rolling-window rules, so a
shower (90 %+ for well under an hour) does not alarm, and the windows are kept with running
totals (windows.py), never by rescanning the readings. Each sensor uses its room's
thresholds ([checks.rooms]), fixed when its state is made.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.checks.base import Check, CheckContext, register
from hub.checks.lifecycle import Condition, Step
from hub.checks.windows import HeldValue, RollingMean, WindowedDuration
from hub.config import DampCheck as DampSettings
from hub.config import Pm25Check as Pm25Settings
from hub.config import SensorConfig
from hub.config import VentilationCheck as VentilationSettings
from hub.events import Quantity, Reading, Severity, Stamp

DAMP_CLEAR_FRACTION = 0.5  # damp clears when both totals are at most half their limits
VENTILATION_CLEAR_HOLD_S = 600.0  # CO2 must stay below the good level for 10 minutes
PM25_CLEAR_FRACTION = 0.9  # the 24 h mean must fall to 90 % of the threshold to clear
PM25_MIN_COVERAGE = 0.75  # a mean needs data for at least 3/4 of the window


def _r(value: float, digits: int = 1) -> float:
    return round(value, digits)


# --- damp ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DampLimits:
    rh_high: float
    rh_very_high: float
    high_limit_s: float
    very_high_limit_s: float
    window_s: float

    @classmethod
    def of(cls, cfg: DampSettings) -> _DampLimits:
        return cls(
            cfg.rh_high,
            cfg.rh_very_high,
            cfg.high_minutes * 60.0,
            cfg.very_high_minutes * 60.0,
            cfg.window_hours * 3600.0,
        )


@dataclass(slots=True)
class _Damp:
    cond: Condition
    limits: _DampLimits  # from the config: not saved
    held: HeldValue
    high: WindowedDuration
    very_high: WindowedDuration

    def to_state(self) -> dict[str, Any]:
        return {
            "cond": self.cond.to_state(),
            "held": self.held.state(),
            "high": self.high.state(),
            "very_high": self.very_high.state(),
        }


@register
class DampCheck(Check):
    name = "damp"
    quantities = frozenset({Quantity.HUMIDITY})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._states: dict[str, _Damp] = {}

    def _new(self, sensor: SensorConfig) -> _Damp:
        limits = _DampLimits.of(self.ctx.checks_for(sensor).damp)
        return _Damp(
            Condition(sensor.room, sensor.id),
            limits,
            HeldValue(self.ctx.hold_s),
            WindowedDuration(limits.window_s),
            WindowedDuration(limits.window_s),
        )

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        state = self._states.get(sensor.id)
        if state is None:
            state = self._states[sensor.id] = self._new(sensor)
        elif t < state.held.last_t:
            return  # late: the window has moved past it
        self._credit(state, t)
        state.held.set(reading.value, t)
        self._evaluate(state, reading.stamp, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for state in self._states.values():
            self._credit(state, t)
            if state.cond.since is not None or state.held.fresh(t):
                self._evaluate(state, stamp, t)

    def _credit(self, state: _Damp, now: float) -> None:
        span = state.held.advance(now)
        if span is None:
            return
        value = state.held.value
        assert value is not None
        if value > state.limits.rh_high:
            state.high.add(*span)
            if value > state.limits.rh_very_high:
                state.very_high.add(*span)

    def _evaluate(self, state: _Damp, stamp: Stamp, t: float) -> None:
        lim = state.limits
        high_s = state.high.total(t)
        very_s = state.very_high.total(t)
        inside = high_s > lim.high_limit_s or very_s > lim.very_high_limit_s
        outside = (
            high_s <= lim.high_limit_s * DAMP_CLEAR_FRACTION
            and very_s <= lim.very_high_limit_s * DAMP_CLEAR_FRACTION
        )
        step = state.cond.track(t, inside, outside, 0.0)
        if step is Step.RAISE:
            evidence = self._evidence(state, high_s, very_s)
            self.alerts.raise_(state.cond, Severity.WARNING, stamp, t, evidence)
        elif step is Step.CLEAR:
            self.alerts.clear(state.cond, stamp, t, self._evidence(state, high_s, very_s))

    def _evidence(self, state: _Damp, high_s: float, very_s: float) -> dict[str, Any]:
        lim = state.limits
        rules = []
        if high_s > lim.high_limit_s:
            rules.append(f"above {lim.rh_high:g} % for more than {lim.high_limit_s / 60:g} min")
        if very_s > lim.very_high_limit_s:
            rules.append(
                f"above {lim.rh_very_high:g} % for more than {lim.very_high_limit_s / 60:g} min"
            )
        value = state.held.value
        return {
            "humidity_pct": None if value is None else _r(value),
            "minutes_above_high": _r(high_s / 60.0),
            "minutes_above_very_high": _r(very_s / 60.0),
            "rh_high_pct": lim.rh_high,
            "high_minutes": round(lim.high_limit_s / 60.0),
            "rh_very_high_pct": lim.rh_very_high,
            "very_high_minutes": round(lim.very_high_limit_s / 60.0),
            "window_hours": _r(lim.window_s / 3600.0),
            "rules_met": rules,
        }

    def state(self) -> dict[str, Any]:
        return {"sensors": {sid: s.to_state() for sid, s in self._states.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            sensor = self.ctx.sensors.get(sensor_id)
            if sensor is None:
                continue
            damp = self._new(sensor)
            damp.cond = Condition.from_state(saved["cond"])
            damp.held.restore(saved["held"])
            damp.high.restore(saved["high"])
            damp.very_high.restore(saved["very_high"])
            self._states[sensor_id] = damp

    def conditions(self) -> Iterator[Condition]:
        return (s.cond for s in self._states.values() if s.cond.since is not None)


# --- ventilation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _VentilationLimits:
    above_ppm: float
    good_ppm: float
    min_s: float

    @classmethod
    def of(cls, cfg: VentilationSettings) -> _VentilationLimits:
        return cls(float(cfg.co2_above_ppm), float(cfg.co2_good_ppm), cfg.for_minutes * 60.0)


@dataclass(slots=True)
class _Level:
    cond: Condition
    limits: _VentilationLimits  # from the config: not saved
    value: float = 0.0
    last_t: float = float("-inf")
    highest: float = 0.0


@register
class VentilationCheck(Check):
    name = "ventilation"
    quantities = frozenset({Quantity.CO2})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._states: dict[str, _Level] = {}

    def _limits(self, sensor: SensorConfig) -> _VentilationLimits:
        return _VentilationLimits.of(self.ctx.checks_for(sensor).ventilation)

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        state = self._states.get(sensor.id)
        if state is None:
            state = _Level(Condition(sensor.room, sensor.id), self._limits(sensor))
            self._states[sensor.id] = state
        elif t < state.last_t:
            return
        if t - state.last_t > self.ctx.hold_s and not state.cond.raised:
            state.cond.reset()  # a gap in the data: "sustained" cannot span it
        state.value = reading.value
        state.last_t = t
        self._evaluate(state, reading.stamp, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for state in self._states.values():
            if state.cond.since is not None and t - state.last_t <= self.ctx.hold_s:
                self._evaluate(state, stamp, t)

    def _evaluate(self, state: _Level, stamp: Stamp, t: float) -> None:
        value, cond, lim = state.value, state.cond, state.limits
        inside = value > lim.above_ppm
        # Pending needs CO2 above 1500 throughout; once raised, only below 800 clears it.
        step = cond.track(
            t, inside, value < lim.good_ppm, lim.min_s, VENTILATION_CLEAR_HOLD_S, not inside
        )
        if cond.since is None:
            state.highest = 0.0
            return
        state.highest = max(state.highest, value)
        if step is Step.RAISE:
            self.alerts.raise_(cond, Severity.INFO, stamp, t, self._evidence(state, t))
        elif step is Step.CLEAR:
            self.alerts.clear(cond, stamp, t, self._evidence(state, t))
            state.highest = 0.0

    def _evidence(self, state: _Level, t: float) -> dict[str, Any]:
        since, lim = state.cond.since, state.limits
        return {
            "co2_ppm": round(state.value),
            "highest_ppm": round(state.highest),
            "for_min": None if since is None else round((t - since) / 60.0),
            "co2_above_ppm": round(lim.above_ppm),
            "sustained_min": round(lim.min_s / 60.0),
            "co2_good_ppm": round(lim.good_ppm),
        }

    def state(self) -> dict[str, Any]:
        return {
            "sensors": {
                sid: {
                    "cond": s.cond.to_state(),
                    "value": s.value,
                    "last_t": s.last_t,
                    "highest": s.highest,
                }
                for sid, s in self._states.items()
                if s.last_t > float("-inf")
            }
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            sensor = self.ctx.sensors.get(sensor_id)
            if sensor is not None:
                self._states[sensor_id] = _Level(
                    Condition.from_state(saved["cond"]),
                    self._limits(sensor),
                    float(saved["value"]),
                    float(saved["last_t"]),
                    float(saved["highest"]),
                )

    def conditions(self) -> Iterator[Condition]:
        return (s.cond for s in self._states.values() if s.cond.since is not None)


# --- fine particles -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pm25Limits:
    above: float
    window_s: float
    bucket_s: float

    @classmethod
    def of(cls, cfg: Pm25Settings) -> _Pm25Limits:
        window_s = cfg.window_hours * 3600.0
        return cls(cfg.mean_above_ugm3, window_s, min(600.0, window_s / 24.0))


@dataclass(slots=True)
class _Particles:
    cond: Condition
    limits: _Pm25Limits  # from the config: not saved
    held: HeldValue
    mean: RollingMean = field(repr=False)


@register
class Pm25Check(Check):
    name = "pm25"
    quantities = frozenset({Quantity.PM25})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self._states: dict[str, _Particles] = {}

    def _new(self, sensor: SensorConfig) -> _Particles:
        limits = _Pm25Limits.of(self.ctx.checks_for(sensor).pm25)
        return _Particles(
            Condition(sensor.room, sensor.id),
            limits,
            HeldValue(self.ctx.hold_s),
            RollingMean(limits.window_s, limits.bucket_s),
        )

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        state = self._states.get(sensor.id)
        if state is None:
            state = self._states[sensor.id] = self._new(sensor)
        elif t < state.held.last_t:
            return
        self._credit(state, t)
        state.held.set(reading.value, t)
        self._evaluate(state, reading.stamp, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        for state in self._states.values():
            self._credit(state, t)
            self._evaluate(state, stamp, t)

    def _credit(self, state: _Particles, now: float) -> None:
        span = state.held.advance(now)
        if span is not None and state.held.value is not None:
            state.mean.add(span[0], span[1], state.held.value)

    def _evaluate(self, state: _Particles, stamp: Stamp, t: float) -> None:
        lim = state.limits
        mean = state.mean.mean(t)
        covered = state.mean.covered_s(t)
        enough = mean is not None and covered >= PM25_MIN_COVERAGE * lim.window_s
        inside = enough and mean is not None and mean > lim.above
        outside = mean is None or mean <= lim.above * PM25_CLEAR_FRACTION
        step = state.cond.track(t, inside, outside, 0.0)
        if step is Step.RAISE:
            evidence = self._evidence(state, mean, covered)
            self.alerts.raise_(state.cond, Severity.INFO, stamp, t, evidence)
        elif step is Step.CLEAR:
            self.alerts.clear(state.cond, stamp, t, self._evidence(state, mean, covered))

    def _evidence(self, state: _Particles, mean: float | None, covered: float) -> dict[str, Any]:
        value = state.held.value
        return {
            "mean_ugm3": None if mean is None else _r(mean),
            "latest_ugm3": None if value is None else _r(value),
            "mean_above_ugm3": state.limits.above,
            "window_hours": _r(state.limits.window_s / 3600.0),
            "hours_with_data": _r(covered / 3600.0),
        }

    def state(self) -> dict[str, Any]:
        return {
            "sensors": {
                sid: {
                    "cond": s.cond.to_state(),
                    "held": s.held.state(),
                    "mean": s.mean.state(),
                }
                for sid, s in self._states.items()
            }
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state["sensors"].items():
            sensor = self.ctx.sensors.get(sensor_id)
            if sensor is None:
                continue
            particles = self._new(sensor)
            particles.cond = Condition.from_state(saved["cond"])
            particles.held.restore(saved["held"])
            particles.mean.restore(saved["mean"])
            self._states[sensor_id] = particles

    def conditions(self) -> Iterator[Condition]:
        return (s.cond for s in self._states.values() if s.cond.since is not None)
