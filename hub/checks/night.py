"""Night checks: night exit, out of bed, night bathroom visits (checks.night, 22:00-06:00
local by default; DST-aware through LocalClock).

Sources (DESIGN.md): an exit door opened at night (Canary Care, GrandCare, Tunstall ADLife);
bedroom left and not back for 45 min+ (GrandCare); night bathroom visits well above the
person's own baseline (Lilli, Tunstall ADLife, TIHM/Minder), a possible urinary infection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from hub.checks.base import Check, CheckContext, register
from hub.checks.lifecycle import Condition
from hub.checks.routine import ON, WASH_ROLES, DailyValues
from hub.checks.timeline import DAY_S, DailyWindow
from hub.config import RoomRole, SensorConfig, SensorKind
from hub.events import Quantity, Reading, Severity, Stamp

BACK_INSIDE_S = 120.0  # indoor motion this long after the door moved: back inside
BUSY_WINDOW_S = 600.0  # up and about: motion outside the bedroom in 3 of the last 10 minutes
BUSY_MINUTES = 3
VISIT_GAP_S = 600.0  # bathroom motion after 10 quiet minutes there is a new visit
VISITS_ABOVE_MEAN = 2.0  # elevated: at least baseline mean + 2 visits ...
VISITS_AT_LEAST = 3  # ... and at least 3
ELEVATED_NIGHTS = 2  # sustained for two nights running
WHOLE_NIGHT_S = 1800.0  # a night first seen later than 30 min after its start is partial


def _window(ctx: CheckContext) -> DailyWindow:
    return DailyWindow(ctx.checks.night.start, ctx.checks.night.end)


@register
class NightExitCheck(Check):
    name = "night_exit"
    quantities = frozenset({Quantity.CONTACT, Quantity.MOTION})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.night = _window(ctx)
        self._conds: dict[str, Condition] = {}
        self.door_t: float | None = None
        self.door_open = False
        self.opened_wall: float | None = None

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        if quantity is Quantity.CONTACT:
            return sensor.role is RoomRole.EXIT_DOOR
        return sensor.kind is SensorKind.MOTION

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        wall = reading.stamp.wall_time
        if reading.quantity is Quantity.CONTACT:
            self.door_t = t
            self.door_open = reading.value >= ON
            if not self.door_open:
                return
            self.opened_wall = wall
            if not self.night.contains(self.ctx.local.seconds_of_day(wall)):
                return
            cond = self._conds.get(sensor.id)
            if cond is None:
                cond = self._conds[sensor.id] = Condition(sensor.room, sensor.id)
            if not cond.raised:
                cond.reset()
                cond.since = t
                evidence: dict[str, Any] = {
                    "opened_at": self.ctx.local.isoformat(wall),
                    "night": str(self.night),
                }
                self.alerts.raise_(cond, Severity.WARNING, reading.stamp, t, evidence)
            return
        if reading.value < ON or self.door_open or self.door_t is None:
            return
        if t - self.door_t < BACK_INSIDE_S:
            return
        for cond in self._conds.values():
            if cond.raised:
                cond.exit_since = t
                evidence = {
                    "opened_at": None
                    if self.opened_wall is None
                    else self.ctx.local.isoformat(self.opened_wall),
                    "back_inside": sensor.id,
                }
                self.alerts.clear(cond, reading.stamp, t, evidence)
        self._conds.clear()

    def state(self) -> dict[str, Any]:
        return {
            "conds": {sid: c.to_state() for sid, c in self._conds.items()},
            "door_t": self.door_t,
            "door_open": self.door_open,
            "opened_wall": self.opened_wall,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._conds = {
            sid: Condition.from_state(c)
            for sid, c in state["conds"].items()
            if sid in self.ctx.sensors
        }
        self.door_t = None if state["door_t"] is None else float(state["door_t"])
        self.door_open = bool(state["door_open"])
        opened = state["opened_wall"]
        self.opened_wall = None if opened is None else float(opened)

    def conditions(self) -> Iterator[Condition]:
        return iter([c for c in self._conds.values() if c.since is not None])


@register
class OutOfBedCheck(Check):
    name = "out_of_bed"
    quantities = frozenset({Quantity.MOTION, Quantity.OCCUPANCY})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.night = _window(ctx)
        self.away_s = ctx.checks.out_of_bed.away_minutes * 60.0
        self.has_mat = any(
            s.kind is SensorKind.PRESSURE_MAT and s.role is RoomRole.BEDROOM
            for s in ctx.sensors.values()
        )
        bedroom = [s.room for s in ctx.sensors.values() if s.role is RoomRole.BEDROOM]
        self.cond = Condition(bedroom[0] if bedroom else "Bedroom", None)
        self.in_bedroom = False
        self.left_wall: float | None = None
        self.busy: deque[int] = deque()  # recent minutes with motion outside the bedroom

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        if quantity is Quantity.OCCUPANCY:
            return sensor.role is RoomRole.BEDROOM
        return sensor.kind is SensorKind.MOTION

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        back = reading.value >= ON
        if reading.quantity is Quantity.OCCUPANCY:
            if back:
                self._back(reading.stamp, t, sensor.id)
            else:
                self._leave(reading.stamp, t)
            return
        if not back:
            return
        if sensor.role is RoomRole.BEDROOM:
            if not self.has_mat:
                self._back(reading.stamp, t, sensor.id)
            return
        minute = int(t // 60.0)
        if not self.busy or self.busy[-1] != minute:
            self.busy.append(minute)
            self._busy(t)  # trim as it grows: the window is minutes, the state is saved often
        if not self.has_mat and self.in_bedroom:
            self._leave(reading.stamp, t)

    def _leave(self, stamp: Stamp, t: float) -> None:
        self.in_bedroom = False
        if self.cond.since is not None:
            return
        if self.night.contains(self.ctx.local.seconds_of_day(stamp.wall_time)):
            self.cond.since = t
            self.left_wall = stamp.wall_time

    def _back(self, stamp: Stamp, t: float, sensor_id: str) -> None:
        self.in_bedroom = True
        if self.cond.raised:
            self.cond.exit_since = t
            self.alerts.clear(self.cond, stamp, t, {**self._evidence(t), "back": sensor_id})
        self.cond.reset()

    def _busy(self, t: float) -> bool:
        oldest = int((t - BUSY_WINDOW_S) // 60.0)
        while self.busy and self.busy[0] < oldest:
            self.busy.popleft()
        return len(self.busy) >= BUSY_MINUTES

    def on_tick(self, stamp: Stamp, t: float) -> None:
        cond = self.cond
        if cond.since is None:
            return
        night = self.night.contains(self.ctx.local.seconds_of_day(stamp.wall_time))
        busy = self._busy(t)
        if not cond.raised:
            if not night:
                cond.reset()  # the night ended first: getting up for the day
            elif t - cond.since >= self.away_s and not busy:
                self.alerts.raise_(cond, Severity.URGENT, stamp, t, self._evidence(t))
        elif not night and busy:
            cond.exit_since = t
            self.alerts.clear(cond, stamp, t, {**self._evidence(t), "ended": "up and about"})

    def _evidence(self, t: float) -> dict[str, Any]:
        since = self.cond.since
        return {
            "away_min": None if since is None else round((t - since) / 60.0),
            "left_at": None if self.left_wall is None else self.ctx.local.isoformat(self.left_wall),
            "away_minutes": round(self.away_s / 60.0),
            "night": str(self.night),
            "bed_mat": self.has_mat,
        }

    def state(self) -> dict[str, Any]:
        return {
            "cond": self.cond.to_state(),
            "in_bedroom": self.in_bedroom,
            "left_wall": self.left_wall,
            "busy": list(self.busy),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.cond = Condition.from_state(state["cond"])
        self.in_bedroom = bool(state["in_bedroom"])
        left = state["left_wall"]
        self.left_wall = None if left is None else float(left)
        self.busy = deque(int(m) for m in state["busy"])

    def conditions(self) -> Iterator[Condition]:
        return iter([self.cond] if self.cond.since is not None else [])


@register
class NightBathroomCheck(Check):
    name = "night_bathroom"
    quantities = frozenset({Quantity.MOTION})

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.night = _window(ctx)
        self.min_days = ctx.checks.learning.min_days
        rooms = [s.room for s in ctx.sensors.values() if s.role in WASH_ROLES]
        self.cond = Condition(rooms[0] if rooms else "Bathroom", None)
        self.baseline = DailyValues()  # visits on ordinary whole nights
        self.night_id: int | None = None  # the open night (local day it started on)
        self.whole = False
        self.visits = 0
        self.last_visit_t: float | None = None
        self.run = 0  # elevated whole nights in a row, ending with the last finished one
        self.last_finished: int | None = None

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        return sensor.kind is SensorKind.MOTION and sensor.role in WASH_ROLES

    def _night_of(self, wall: float) -> tuple[int, float] | None:
        """(the night's id, seconds since it began) if `wall` is at night."""
        local = self.ctx.local
        now_s = local.seconds_of_day(wall)
        if not self.night.contains(now_s):
            return None
        into = (now_s - self.night.start_s) % DAY_S
        return local.day(wall - into), into

    def _follow(self, stamp: Stamp, t: float) -> None:
        at = self._night_of(stamp.wall_time)
        if at is None:
            if self.night_id is not None:
                self._finish(stamp, t)
            return
        night_id, into = at
        if night_id != self.night_id:
            if self.night_id is not None:
                self._finish(stamp, t)
            self.night_id, self.whole, self.visits = night_id, into <= WHOLE_NIGHT_S, 0

    def threshold(self) -> float | None:
        if len(self.baseline) < self.min_days:
            return None
        return max(float(VISITS_AT_LEAST), self.baseline.mean() + VISITS_ABOVE_MEAN)

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if reading.value < ON:
            return
        self._follow(reading.stamp, t)
        last, self.last_visit_t = self.last_visit_t, t
        if self.night_id is None or (last is not None and t - last < VISIT_GAP_S):
            return
        self.visits += 1
        limit = self.threshold()
        if (
            limit is not None
            and self.whole
            and self.visits >= limit
            and self.run >= ELEVATED_NIGHTS - 1
            and self.last_finished == self.night_id - 1
            and not self.cond.raised
        ):
            self.cond.since = t
            self.alerts.raise_(self.cond, Severity.WARNING, reading.stamp, t, self._evidence())

    def on_tick(self, stamp: Stamp, t: float) -> None:
        self._follow(stamp, t)

    def _finish(self, stamp: Stamp, t: float) -> None:
        night_id, whole, visits = self.night_id, self.whole, self.visits
        self.night_id, self.visits = None, 0
        if night_id is None or not whole:
            self.run = 0
            self.last_finished = None
            return
        limit = self.threshold()
        elevated = limit is not None and visits >= limit
        consecutive = self.last_finished == night_id - 1
        self.run = (self.run + 1 if consecutive else 1) if elevated else 0
        self.last_finished = night_id
        if not elevated:
            self.baseline.add(float(visits))
            if self.cond.raised:
                self.cond.exit_since = t
                evidence = {**self._evidence(), "last_night_visits": visits}
                self.alerts.clear(self.cond, stamp, t, evidence)
            self.cond.reset()

    def _evidence(self) -> dict[str, Any]:
        limit = self.threshold()
        return {
            "visits_tonight": self.visits,
            "elevated_nights_before": self.run,
            "threshold": None if limit is None else round(limit, 1),
            "baseline": {
                "mean_visits": round(self.baseline.mean(), 2),
                "nights_learned": len(self.baseline),
                "min_days": self.min_days,
            },
        }

    def state(self) -> dict[str, Any]:
        return {
            "cond": self.cond.to_state(),
            "baseline": self.baseline.state(),
            "night_id": self.night_id,
            "whole": self.whole,
            "visits": self.visits,
            "last_visit_t": self.last_visit_t,
            "run": self.run,
            "last_finished": self.last_finished,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.cond = Condition.from_state(state["cond"])
        self.baseline.restore(state["baseline"])
        self.night_id = None if state["night_id"] is None else int(state["night_id"])
        self.whole = bool(state["whole"])
        self.visits = int(state["visits"])
        last = state["last_visit_t"]
        self.last_visit_t = None if last is None else float(last)
        self.run = int(state["run"])
        finished = state["last_finished"]
        self.last_finished = None if finished is None else int(finished)

    def conditions(self) -> Iterator[Condition]:
        return iter([self.cond] if self.cond.since is not None else [])
