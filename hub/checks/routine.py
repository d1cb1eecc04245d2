"""The learned routine: what the person usually does, by local day and hour of day.

Learned checks compare today against the person's own past days, never a population norm.
Everything here is kept per local calendar day (DST-aware through LocalClock) and only whole
days count as learned: the day the hub started is partial and is left out, so a hub switched
on at noon does not learn "no kitchen in the morning". Days are rolled when the first stamp
of a new day is seen (a reading or a tick), and the last KEEP_DAYS are kept.

  ActivityProfile  active minutes per room per hour (the per-room profile)
  HourlyMaxima     per hour of day, the largest value seen on each day (inactivity gaps)
  DailyValues      one number per day (first rising time, night bathroom visits)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hub.checks.timeline import LocalClock
from hub.config import RoomRole, SensorConfig, SensorKind
from hub.events import Quantity, Reading

KEEP_DAYS = 28  # four weeks: enough for weekly habits, short enough to follow a change
HOURS = 24
ON = 0.5  # a binary reading at or above this is "active"

NIGHT_ROLES = frozenset({RoomRole.BEDROOM})
WASH_ROLES = frozenset({RoomRole.BATHROOM, RoomRole.TOILET})
ACTIVITY_QUANTITIES = frozenset({Quantity.MOTION, Quantity.CONTACT, Quantity.OCCUPANCY})


def is_activity(reading: Reading) -> bool:
    """A sign of a person moving: motion seen, a door opened or closed, a bed mat changed."""
    if reading.quantity is Quantity.MOTION:
        return reading.value >= ON
    return reading.quantity in ACTIVITY_QUANTITIES


def is_activity_sensor(sensor: SensorConfig) -> bool:
    return sensor.kind in (SensorKind.MOTION, SensorKind.CONTACT, SensorKind.PRESSURE_MAT)


def hours_of(start_s: float, end_s: float) -> list[int]:
    """The hours of day a local window (seconds of day, may wrap) touches."""
    first, last = int(start_s // 3600), int((end_s - 1) // 3600) % HOURS
    hours = [first]
    while hours[-1] != last:
        hours.append((hours[-1] + 1) % HOURS)
    return hours


class _Days:
    """The local-day bookkeeping shared by the learners: which day is open, whether it is
    the partial first day."""

    __slots__ = ("first_day", "local", "today")

    def __init__(self, local: LocalClock) -> None:
        self.local = local
        self.today: int | None = None
        self.first_day: int | None = None

    def turn(self, wall: float) -> int | None:
        """The day that just ended if `wall` starts a new one (None otherwise)."""
        day = self.local.day(wall)
        today = self.today
        if today is None:
            self.today = self.first_day = day
            return None
        if day <= today:
            return None
        self.today = day
        return today

    def whole(self, day: int) -> bool:
        return day != self.first_day

    def state(self) -> dict[str, Any]:
        return {"today": self.today, "first_day": self.first_day}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.today = None if state["today"] is None else int(state["today"])
        self.first_day = None if state["first_day"] is None else int(state["first_day"])


class ActivityProfile:
    """Active minutes per room per hour of day, for each of the last KEEP_DAYS whole days.

    An active minute is a distinct clock minute with at least one activity reading in that
    room: a PIR that fires ten times a minute counts once, so the profile does not depend on
    how chatty a sensor is.
    """

    def __init__(self, local: LocalClock, keep_days: int = KEEP_DAYS) -> None:
        self.keep_days = keep_days
        self._days = _Days(local)
        self.local = local
        self.current: dict[str, list[int]] = {}
        self._last_minute: dict[str, float] = {}
        self.history: list[tuple[int, dict[str, list[int]]]] = []

    @property
    def days_learned(self) -> int:
        return len(self.history)

    def advance(self, wall: float) -> None:
        """Roll the day if `wall` is in a new one (call on ticks: a day may pass unseen)."""
        ended = self._days.turn(wall)
        if ended is None:
            return
        if self._days.whole(ended):
            self.history.append((ended, self.current))
            del self.history[: -self.keep_days]
        self.current = {}
        self._last_minute = {}

    def observe(self, room: str, wall: float) -> None:
        self.advance(wall)
        minute = wall // 60.0
        if self._last_minute.get(room) == minute:
            return
        self._last_minute[room] = minute
        counts = self.current.get(room)
        if counts is None:
            counts = self.current[room] = [0] * HOURS
        counts[self.local.hour(wall)] += 1

    def minutes_today(self, room: str, hours: Iterable[int]) -> int:
        counts = self.current.get(room)
        return 0 if counts is None else sum(counts[h] for h in hours)

    def day_minutes(self, room: str, hours: Sequence[int]) -> list[int]:
        """Active minutes in `room` over `hours` on each learned day, oldest first."""
        return [sum(day.get(room, _ZERO)[h] for h in hours) for _, day in self.history]

    def active_share(self, room: str, hours: Sequence[int]) -> float:
        """The share of learned days with any activity in `room` during `hours`."""
        minutes = self.day_minutes(room, hours)
        return sum(1 for m in minutes if m > 0) / len(minutes) if minutes else 0.0

    def state(self) -> dict[str, Any]:
        return {
            "days": self._days.state(),
            "current": self.current,
            "history": [[day, counts] for day, counts in self.history],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._days.restore(state["days"])
        self.current = {str(r): [int(x) for x in c] for r, c in state["current"].items()}
        self.history = [
            (int(day), {str(r): [int(x) for x in c] for r, c in counts.items()})
            for day, counts in state["history"]
        ][-self.keep_days :]


_ZERO = [0] * HOURS


class HourlyMaxima:
    """Per hour of day, the largest value recorded on each whole day (0: none that day)."""

    def __init__(self, local: LocalClock, keep_days: int = KEEP_DAYS) -> None:
        self.keep_days = keep_days
        self._days = _Days(local)
        self.local = local
        self.current = [0.0] * HOURS
        self.history: list[list[float]] = []

    @property
    def days_learned(self) -> int:
        return len(self.history)

    def advance(self, wall: float) -> None:
        ended = self._days.turn(wall)
        if ended is None:
            return
        if self._days.whole(ended):
            self.history.append(self.current)
            del self.history[: -self.keep_days]
        self.current = [0.0] * HOURS

    def record(self, hour: int, value: float) -> None:
        if value > self.current[hour]:
            self.current[hour] = value

    def highest(self, hours: Iterable[int]) -> float:
        """The largest value over the learned days in any of `hours` (0 if none)."""
        wanted = list(hours)
        return max((day[h] for day in self.history for h in wanted), default=0.0)

    def state(self) -> dict[str, Any]:
        return {"days": self._days.state(), "current": self.current, "history": self.history}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._days.restore(state["days"])
        self.current = [float(x) for x in state["current"]]
        self.history = [[float(x) for x in day] for day in state["history"]][-self.keep_days :]


class DailyValues:
    """One number per day (or night), the last KEEP_DAYS of them, oldest first."""

    def __init__(self, keep_days: int = KEEP_DAYS) -> None:
        self.keep_days = keep_days
        self.values: list[float] = []

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: float) -> None:
        self.values.append(value)
        del self.values[: -self.keep_days]

    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0

    def median(self) -> float:
        ordered = sorted(self.values)
        n = len(ordered)
        if n == 0:
            return 0.0
        return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0

    def state(self) -> list[float]:
        return list(self.values)

    def restore(self, values: Sequence[Any]) -> None:
        self.values = [float(v) for v in values][-self.keep_days :]
