"""Offline anomaly checks: readings and the passing of time in, alert lifecycles out.

Layout (one job per module):
  engine.py     CheckEngine: routes readings, ticks, saves and restores state
  base.py       Check (the contract), CheckContext, the registry (`register`, ALL_CHECKS)
  lifecycle.py  Condition and AlertChannel: hysteresis, minimum durations, no repeats,
                clears, escalation, the daily cap
  timeline.py   Timeline (durations that survive wall-clock jumps), LocalClock (DST-aware
                time of day), DailyWindow
  windows.py    rolling windows with running totals (time above a level, time-weighted mean)
  health.py     DeviceHealth: last heard, learned quiet gap, silent sensors, battery
  thermal.py    cold_home, overheating
  air.py        damp, ventilation, pm25
  safety.py     pull_cord, water_leak (immediate, synchronous, never capped)
  devices.py    sensor_silent, low_battery
  output.py     alert_record: an alert as the flat JSON object `hearth replay` prints

Wiring: `CheckEngine(config, clock, on_alert, state_store)`, then `engine.on_reading(r)`
for every reading, `await engine.run_ticks()` as a task (or `engine.tick(stamp)`), and
`engine.save_state()` before the store closes. `state_store` is the hub's Store (it has
`load_check_state` / `save_check_state`) or a MemoryStateStore.

Adding a check (the learned routine checks are added this way):
  1. Put it in a new module of this package, e.g. hub/checks/routine.py. Every module here
     is imported by `registered_checks()`, so nothing else needs editing.
  2. Subclass `Check`, set `name` (the alerts' `check` field, unique) and `quantities` (the
     readings it wants), override `wants(sensor, quantity)` to narrow by room role, and
     decorate the class with `@register`.
  3. Implement `on_reading(reading, sensor, t)` in O(1) amortised (keep running
     aggregates) and `on_tick(stamp, t)` for what depends on time alone. `t` is timeline
     seconds: use it for every duration. Use `ctx.local` on `stamp.wall_time` (or
     `reading.stamp.wall_time`) for the time of day, so DST and a corrected clock are right.
  4. Keep one `Condition` per thing that can be wrong and let `self.alerts` raise, update and
     clear it (with evidence: values, durations, thresholds, and for a learned check the
     baseline it compared against). Use `Condition.track` for hysteresis and minimum times.
  5. Return everything needed to carry on from `state()` (JSON-ready) and take it back in
     `restore(state)`; bump `state_version` when its shape changes.
  6. Ask `ctx.health.is_silent(sensor_id)` / `silent_sensors()` before reading a quiet
     motion sensor as a quiet person.

Thresholds come from config.checks. Keys read with a default because hub.config does not
have them yet: checks.overheating.for_minutes (60), checks.sensor_silent.battery_low_pct (15).
"""

from hub.checks.base import ALL_CHECKS, Check, CheckContext, register, registered_checks
from hub.checks.engine import CheckEngine, CheckStateStore, EngineStats, MemoryStateStore
from hub.checks.health import DeviceHealth
from hub.checks.lifecycle import AlertChannel, Condition, Step
from hub.checks.output import alert_record
from hub.checks.timeline import DailyWindow, LocalClock, Timeline

__all__ = [
    "ALL_CHECKS",
    "AlertChannel",
    "Check",
    "CheckContext",
    "CheckEngine",
    "CheckStateStore",
    "Condition",
    "DailyWindow",
    "DeviceHealth",
    "EngineStats",
    "LocalClock",
    "MemoryStateStore",
    "Step",
    "Timeline",
    "alert_record",
    "register",
    "registered_checks",
]
