"""Daytime activity checks: inactivity, not up as usual, kitchen not used.

Sources (DESIGN.md): inactivity against the person's own usual gaps by time of day with hard
ceilings (Howz, Sensara, Canary Care); not up by the learned usual time plus a margin
(Sensara); no kitchen activity in a window where there usually is some (Canary Care,
GrandCare, 08:00-12:00). Learned parts stay silent until checks.learning.min_days whole days
are learned; the inactivity ceilings apply from the first day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hub.checks.base import Check, CheckContext, register
from hub.checks.lifecycle import Condition
from hub.checks.presence import Whereabouts, motion_sensors, suspect_sensors
from hub.checks.routine import (
    HOURS,
    ON,
    ActivityProfile,
    DailyValues,
    HourlyMaxima,
    hours_of,
    is_activity,
    is_activity_sensor,
)
from hub.checks.timeline import DAY_S, DailyWindow
from hub.config import RoomRole, SensorConfig, SensorKind
from hub.events import Quantity, Reading, Severity, Stamp

ACTIVITY = frozenset({Quantity.MOTION, Quantity.CONTACT, Quantity.OCCUPANCY})

# inactivity
MIN_GAP_S = 600.0  # shorter gaps are not worth learning
GAP_MARGIN = 1.5  # the learned limit: 1.5 x the longest usual gap starting near this hour
GAP_FLOOR_S = 2 * 3600.0  # the learned limit is never below 2 h

# not up
MORNING_S = 4 * 3600.0  # activity before 04:00 is a night, not a morning
RISE_MARGIN_S = 90 * 60.0  # usual (median) rising time + 90 min
RISE_LATE_MARGIN_S = 30 * 60.0  # and never before the second-latest recent rising + 30 min
DAY_ROLES = frozenset({RoomRole.KITCHEN, RoomRole.LIVING_ROOM, RoomRole.OTHER})

# kitchen
KITCHEN_WINDOW = ("08:00", "12:00")
# "Usually": kitchen activity in the window on 97 % of learned days (all but about one in
# four weeks). At 85 % a resident who skips the kitchen one morning in ten got a note most
# weeks (25 false alarms in the 12-home evaluation); a note a carer learns to ignore is noise.
USUAL_SHARE = 0.97
OUT_TOLERANCE_S = 1800.0  # out for longer than this in the window: no expectation


def _door(sensor: SensorConfig) -> bool:
    return sensor.kind is SensorKind.CONTACT and sensor.role is RoomRole.EXIT_DOOR


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


@register
class InactivityCheck(Check):
    name = "inactivity"
    quantities = ACTIVITY

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        cfg = ctx.checks.inactivity
        self.day_ceiling_s = cfg.ceiling_day_hours * 3600.0
        self.night_ceiling_s = cfg.ceiling_night_hours * 3600.0
        self.night = DailyWindow(ctx.checks.night.start, ctx.checks.night.end)
        self.min_days = ctx.checks.learning.min_days
        self.motion_ids = motion_sensors(ctx)
        self.where = Whereabouts()
        self.gaps = HourlyMaxima(ctx.local)
        self.learnable = True  # the current gap may be learned (not out, not an alarm)
        self.in_bed = False  # the bedroom pressure mat says someone is on it
        self.cond = Condition("Home", None)

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        return is_activity_sensor(sensor)

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if reading.quantity is Quantity.OCCUPANCY and sensor.role is RoomRole.BEDROOM:
            self.in_bed = reading.value >= ON
        if not is_activity(reading):
            return
        where = self.where
        self.gaps.advance(reading.stamp.wall_time)
        last, last_wall = where.last_t, where.last_wall
        if last is not None and last_wall is not None and t > last:
            gap = t - last
            if self.cond.raised:
                self.cond.exit_since = t
                evidence = {**self._evidence(gap, last_wall, t), "ended_by": sensor.id}
                self.alerts.clear(self.cond, reading.stamp, t, evidence)
            elif self.learnable and not where.out and gap >= MIN_GAP_S:
                self.gaps.record(self.ctx.local.hour(last_wall), gap)
            self.cond.reset()
            self.learnable = True
        where.see(reading, sensor, t)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        self.gaps.advance(stamp.wall_time)
        where = self.where
        if where.last_t is None or where.last_wall is None or self.cond.raised:
            return
        if where.out:
            self.learnable = False
            return
        if self.in_bed and self.night.contains(self.ctx.local.seconds_of_day(stamp.wall_time)):
            # Still in bed at night is sleep, not inactivity; a fall out of bed at night is
            # out_of_bed's. (By day, a long stillness in bed is still raised.)
            return
        gap = t - where.last_t
        # Still on the mat after the night: a late lie-in is judged by the day ceiling only,
        # not by the learned limit (which knows gaps, not sleep).
        limit = self._limit(gap, where.last_wall, stamp.wall_time, learned=not self.in_bed)
        if limit is None:
            return
        suspects = sorted(suspect_sensors(self.ctx, self.motion_ids, t))
        if suspects or not self.motion_ids:
            self.learnable = False  # a gap nobody could have seen: neither alarm nor learn
            return
        self.learnable = False
        self.cond.since = where.last_t
        evidence = {**self._evidence(gap, where.last_wall, t), "limit": limit}
        self.alerts.raise_(self.cond, Severity.URGENT, stamp, t, evidence)

    def _split(self, gap: float, start_wall: float, now_wall: float) -> tuple[float, float]:
        """The gap's day part and night part (by the local night window)."""
        local = self.ctx.local
        night = self.night
        now_s = local.seconds_of_day(now_wall)
        if not night.contains(now_s):
            day = min(gap, (now_s - night.end_s) % DAY_S)
        elif night.contains(local.seconds_of_day(start_wall)):
            day = 0.0
        else:
            day = min(gap, (night.start_s - local.seconds_of_day(start_wall)) % DAY_S)
        return day, gap - day

    def learned_limit_s(self, start_wall: float) -> float | None:
        """The learned limit for a gap that began at `start_wall`, once learned."""
        if self.gaps.days_learned < self.min_days:
            return None
        hour = self.ctx.local.hour(start_wall)
        usual = self.gaps.highest([(hour - 1) % HOURS, hour, (hour + 1) % HOURS])
        return max(GAP_FLOOR_S, GAP_MARGIN * usual)

    def _limit(
        self, gap: float, start_wall: float, now_wall: float, *, learned: bool = True
    ) -> str | None:
        day, night = self._split(gap, start_wall, now_wall)
        if day >= self.day_ceiling_s:
            return "day ceiling"
        if night >= self.night_ceiling_s:
            return "night ceiling"
        limit = self.learned_limit_s(start_wall) if learned else None
        if limit is not None and gap >= limit:
            return "learned"
        return None

    def _evidence(self, gap: float, start_wall: float, t: float) -> dict[str, Any]:
        learned = self.learned_limit_s(start_wall)
        hour = self.ctx.local.hour(start_wall)
        usual = self.gaps.highest([(hour - 1) % HOURS, hour, (hour + 1) % HOURS])
        return {
            "quiet_min": round(gap / 60.0),
            "last_activity": self.ctx.local.isoformat(start_wall),
            "learned_limit_min": None if learned is None else round(learned / 60.0),
            "ceiling_day_h": self.day_ceiling_s / 3600.0,
            "ceiling_night_h": self.night_ceiling_s / 3600.0,
            "baseline": {
                "hour": hour,
                "longest_usual_gap_min": round(usual / 60.0),
                "margin": GAP_MARGIN,
                "days_learned": self.gaps.days_learned,
                "min_days": self.min_days,
            },
        }

    def state(self) -> dict[str, Any]:
        return {
            "where": self.where.state(),
            "gaps": self.gaps.state(),
            "learnable": self.learnable,
            "in_bed": self.in_bed,
            "cond": self.cond.to_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.where.restore(state["where"])
        self.gaps.restore(state["gaps"])
        self.learnable = bool(state["learnable"])
        self.in_bed = bool(state.get("in_bed", False))
        self.cond = Condition.from_state(state["cond"])

    def conditions(self) -> Iterator[Condition]:
        return iter([self.cond] if self.cond.since is not None else [])


class _DailyCheck(Check):
    """Shared by the checks judged once a local day: the day roll and the out state."""

    quantities = ACTIVITY

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.min_days = ctx.checks.learning.min_days
        self.where = Whereabouts()
        self.today: int | None = None
        self.first_day: int | None = None
        self.cond = Condition("Home", None)

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        return is_activity_sensor(sensor)

    def _roll(self, stamp: Stamp, t: float) -> None:
        day = self.ctx.local.day(stamp.wall_time)
        if self.today is None:
            self.today = self.first_day = day
            return
        if day > self.today:
            ended = self.today
            self.today = day
            if self.cond.raised:
                self.alerts.clear(self.cond, stamp, t, {"ended": "the day ended"})
            self.cond.reset()
            self._day_ended(ended, ended != self.first_day)

    def _day_ended(self, day: int, whole: bool) -> None:
        raise NotImplementedError

    def _base_state(self) -> dict[str, Any]:
        return {
            "where": self.where.state(),
            "today": self.today,
            "first_day": self.first_day,
            "cond": self.cond.to_state(),
        }

    def _base_restore(self, state: Mapping[str, Any]) -> None:
        self.where.restore(state["where"])
        today, first = state["today"], state["first_day"]
        self.today = None if today is None else int(today)
        self.first_day = None if first is None else int(first)
        self.cond = Condition.from_state(state["cond"])

    def conditions(self) -> Iterator[Condition]:
        return iter([self.cond] if self.cond.since is not None else [])


@register
class NotUpCheck(_DailyCheck):
    name = "not_up"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        motion = [s for s in ctx.sensors.values() if s.kind is SensorKind.MOTION]
        day_rooms = {s.id for s in motion if s.role in DAY_ROLES}
        # Without a kitchen or living room sensor, anything outside the bedroom will do.
        self.day_sensors = day_rooms or {s.id for s in motion if s.role is not RoomRole.BEDROOM}
        self.up_s: float | None = None  # today's first activity in a day room (s of day)
        self.risings = DailyValues()

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if not is_activity(reading):
            return
        self._roll(reading.stamp, t)
        self.where.see(reading, sensor, t)
        if reading.quantity is not Quantity.MOTION or reading.value < ON:
            return
        if sensor.id not in self.day_sensors or self.up_s is not None:
            return
        now_s = self.ctx.local.seconds_of_day(reading.stamp.wall_time)
        if now_s < MORNING_S:
            return
        self.up_s = now_s
        if self.cond.raised:
            self.cond.exit_since = t
            evidence = {
                **self._evidence(),
                "up_at": self.ctx.local.isoformat(reading.stamp.wall_time),
            }
            self.alerts.clear(self.cond, reading.stamp, t, evidence)
        self.cond.reset()

    def _day_ended(self, day: int, whole: bool) -> None:
        if whole and self.up_s is not None:
            self.risings.add(self.up_s)
        self.up_s = None

    def usual_limit_s(self) -> float | None:
        """Seconds of day by which the person is normally up, once learned."""
        if len(self.risings) < self.min_days:
            return None
        ordered = sorted(self.risings.values)
        return max(self.risings.median() + RISE_MARGIN_S, ordered[-2] + RISE_LATE_MARGIN_S)

    def on_tick(self, stamp: Stamp, t: float) -> None:
        self._roll(stamp, t)
        if self.up_s is not None or self.cond.raised or self.where.out:
            return
        limit = self.usual_limit_s()
        if limit is None or limit >= DAY_S:
            return
        if self.ctx.local.seconds_of_day(stamp.wall_time) < limit:
            return
        self.cond.since = t
        self.alerts.raise_(self.cond, Severity.WARNING, stamp, t, self._evidence())

    def _evidence(self) -> dict[str, Any]:
        limit = self.usual_limit_s()
        return {
            "not_up_by": None if limit is None else _clock(limit),
            "baseline": {
                "usual_rising": _clock(self.risings.median()),
                "margin_min": round(RISE_MARGIN_S / 60.0),
                "days_learned": len(self.risings),
                "min_days": self.min_days,
            },
        }

    def state(self) -> dict[str, Any]:
        return {**self._base_state(), "up_s": self.up_s, "risings": self.risings.state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._base_restore(state)
        self.up_s = _opt(state["up_s"])
        self.risings.restore(state["risings"])


def _clock(seconds_of_day: float) -> str:
    minutes = int(seconds_of_day // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@register
class KitchenNotUsedCheck(_DailyCheck):
    name = "kitchen_not_used"

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        section = getattr(ctx.checks, "kitchen_not_used", None)
        start = str(getattr(section, "window_start", KITCHEN_WINDOW[0]))
        end = str(getattr(section, "window_end", KITCHEN_WINDOW[1]))
        self.window = DailyWindow(start, end)
        self.hours = hours_of(self.window.start_s, self.window.end_s)
        self.kitchens = sorted({s.room for s in ctx.sensors.values() if s.role is RoomRole.KITCHEN})
        self.kitchen_sensors = {
            s.id
            for s in ctx.sensors.values()
            if s.role is RoomRole.KITCHEN and s.kind in (SensorKind.MOTION, SensorKind.CONTACT)
        }
        self.profile = ActivityProfile(ctx.local)
        self.judged_day: int | None = None
        self.out_s = 0.0  # time out of the home inside today's window
        self.last_tick_t: float | None = None

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if not is_activity(reading):
            return
        self._roll(reading.stamp, t)
        self.where.see(reading, sensor, t)
        if sensor.id not in self.kitchen_sensors:
            return
        self.profile.observe(sensor.room, reading.stamp.wall_time)
        if self.cond.raised:
            self.cond.exit_since = t
            self.alerts.clear(
                self.cond, reading.stamp, t, {**self._evidence(), "ended_by": sensor.id}
            )
        self.cond.reset()

    def _day_ended(self, day: int, whole: bool) -> None:
        self.out_s = 0.0

    def on_tick(self, stamp: Stamp, t: float) -> None:
        self._roll(stamp, t)
        self.profile.advance(stamp.wall_time)
        now_s = self.ctx.local.seconds_of_day(stamp.wall_time)
        last, self.last_tick_t = self.last_tick_t, t
        if self.window.contains(now_s):
            if self.where.out and last is not None:
                self.out_s += max(0.0, t - last)
            return
        if not self.kitchens or self.judged_day == self.today or now_s < self.window.end_s:
            return
        if self.first_day == self.today:
            return  # today's window may have passed before the hub started
        self.judged_day = self.today
        if self.profile.days_learned < self.min_days or self.out_s > OUT_TOLERANCE_S:
            return
        usual = [
            room
            for room in self.kitchens
            if self.profile.active_share(room, self.hours) >= USUAL_SHARE
        ]
        if not usual or any(self.profile.minutes_today(r, self.hours) > 0 for r in self.kitchens):
            return
        self.cond.since = t
        self.alerts.raise_(self.cond, Severity.INFO, stamp, t, self._evidence())

    def _evidence(self) -> dict[str, Any]:
        shares = {r: round(self.profile.active_share(r, self.hours), 2) for r in self.kitchens}
        means = {
            r: round(sum(m) / len(m), 1) if (m := self.profile.day_minutes(r, self.hours)) else 0.0
            for r in self.kitchens
        }
        return {
            "window": str(self.window),
            "kitchen_minutes_today": sum(
                self.profile.minutes_today(r, self.hours) for r in self.kitchens
            ),
            "baseline": {
                "days_with_kitchen_use_share": shares,
                "usual_active_minutes": means,
                "days_learned": self.profile.days_learned,
                "min_days": self.min_days,
            },
        }

    def state(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "profile": self.profile.state(),
            "judged_day": self.judged_day,
            "out_s": self.out_s,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._base_restore(state)
        self.profile.restore(state["profile"])
        judged = state["judged_day"]
        self.judged_day = None if judged is None else int(judged)
        self.out_s = float(state["out_s"])
