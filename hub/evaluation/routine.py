"""The resident's routine as a timeline of stays: where they are and what they are doing.

Sensor readings are derived from the timeline afterwards (sensors.py, climate.py), so an
anomaly is a change to the timeline (a fall cuts it and leaves the person still), never a
change to how sensors behave. Every random draw comes from the one seeded generator passed in.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

MINUTE = 60.0
HOUR = 3600.0


class Room(StrEnum):
    BEDROOM = "bedroom"
    BATHROOM = "bathroom"
    KITCHEN = "kitchen"
    LIVING_ROOM = "living_room"
    HALLWAY = "hallway"
    OUT = "out"


class Activity(StrEnum):
    SLEEP = "sleep"  # in bed: the pressure mat is occupied
    ACTIVE = "active"  # moving about: a PIR sees it every few seconds
    SEDENTARY = "sedentary"  # sitting: long still spells between small movements
    NAP = "nap"  # dozing in the chair: next to no movement
    SHOWER = "shower"
    COOK = "cook"
    VISIT = "visit"  # someone else in the living room too
    OUT = "out"
    FALLEN = "fallen"  # on the floor, out of any PIR's view: no movement at all


@dataclass(frozen=True, slots=True)
class Stay:
    start: float
    end: float
    room: Room
    activity: Activity


def local_time(date: dt.date, hours: float, tz: ZoneInfo) -> float:
    """Unix time of `hours` after local midnight of `date` on the wall clock (24+ rolls over)."""
    days, rest = divmod(hours, 24.0)
    day = date + dt.timedelta(days=int(days))
    seconds = round(rest * HOUR)
    when = dt.datetime(day.year, day.month, day.day, tzinfo=tz) + dt.timedelta(seconds=seconds)
    # Adding a timedelta to an aware datetime is wall-clock arithmetic; .timestamp() applies the
    # offset in force at that wall time, which is what "at 07:00 local" means across DST.
    return when.timestamp()


@dataclass(frozen=True)
class Profile:
    """One resident's habits: means of their daily times and how likely each optional event is."""

    wake_h: float
    bed_h: float
    jitter_h: float
    weekend_shift_h: float
    night_visits: tuple[float, float, float]  # weights of 0, 1 and 2 visits on an ordinary night
    shower_p: float
    evening_shower_p: float
    lunch_h: float
    dinner_h: float
    outing_p: float
    visitor_p: float
    nap_p: float

    @classmethod
    def draw(cls, rng: random.Random) -> Profile:
        none = rng.uniform(0.45, 0.7)
        two = 0.05
        return cls(
            wake_h=rng.uniform(6.5, 8.0),
            bed_h=rng.uniform(22.5, 23.5),
            jitter_h=rng.uniform(0.2, 0.4),
            weekend_shift_h=rng.uniform(0.0, 0.5),
            night_visits=(none, 1.0 - none - two, two),
            shower_p=rng.uniform(0.5, 0.9),
            evening_shower_p=rng.uniform(0.0, 0.3),
            lunch_h=rng.uniform(12.0, 13.0),
            dinner_h=rng.uniform(17.5, 18.75),
            outing_p=rng.uniform(0.3, 0.7),
            visitor_p=rng.uniform(0.1, 0.3),
            nap_p=rng.uniform(0.1, 0.5),
        )


class _Sequence:
    """Stays laid end to end from a start time."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.stays: list[Stay] = []

    def add(self, room: Room, activity: Activity, minutes: float) -> None:
        self.until(room, activity, self.t + minutes * MINUTE)

    def until(self, room: Room, activity: Activity, end: float) -> None:
        if end > self.t:
            self.stays.append(Stay(self.t, end, room, activity))
            self.t = end


@dataclass(frozen=True)
class _Anchor:
    start: float
    end: float
    room: Room
    activity: Activity


def _jitter(rng: random.Random, sigma: float) -> float:
    return max(-2.5 * sigma, min(2.5 * sigma, rng.gauss(0.0, sigma)))


class Planner:
    """Plans `days` days of one resident's life from local midnight of `first_date`."""

    def __init__(
        self,
        profile: Profile,
        rng: random.Random,
        tz: ZoneInfo,
        first_date: dt.date,
        days: int,
    ) -> None:
        self.profile = profile
        self.rng = rng
        self.tz = tz
        self.first_date = first_date
        self.days = days
        self.begin = local_time(first_date, 0.0, tz)
        self.finish = local_time(first_date, 24.0 * days, tz)
        self.wakes = [self._daily(d, profile.wake_h) for d in range(days)]
        self.beds = [self._daily(d, profile.bed_h) for d in range(days)]

    def date(self, day: int) -> dt.date:
        return self.first_date + dt.timedelta(days=day)

    def at(self, day: int, hours: float) -> float:
        return local_time(self.date(day), hours, self.tz)

    def _daily(self, day: int, mean_h: float) -> float:
        weekend = self.date(day).weekday() >= 5
        shift = self.profile.weekend_shift_h if weekend else 0.0
        return self.at(day, mean_h + shift + _jitter(self.rng, self.profile.jitter_h))

    def night(self, night: int) -> tuple[float, float]:
        """Bed to waking of night `night` (the one that begins on the evening of that day;
        -1 is the part-night the data opens with)."""
        start = self.begin if night < 0 else self.beds[night]
        end = self.finish if night + 1 >= self.days else self.wakes[night + 1]
        return start, end

    def plan(
        self,
        visits_per_night: Mapping[int, int] | None = None,
        quiet_days: Collection[int] = (),
    ) -> list[Stay]:
        """The whole timeline. `visits_per_night` overrides the bathroom visits of some nights;
        on `quiet_days` nobody calls and the resident stays in (a fall is staged there)."""
        overrides = visits_per_night or {}
        stays: list[Stay] = []
        for night in range(-1, self.days):
            if night >= 0:
                stays.extend(self._day(night, quiet=night in quiet_days))
            visits = overrides.get(night)
            if visits is None:
                visits = self.rng.choices((0, 1, 2), weights=self.profile.night_visits)[0]
            stays.extend(self._night(*self.night(night), visits))
        return stays

    def _night(self, start: float, end: float, visits: int) -> list[Stay]:
        rng = self.rng
        lo, hi = start + 30 * MINUTE, end - 20 * MINUTE
        times: list[float] = []
        if hi > lo:
            times = sorted(rng.uniform(lo, hi) for _ in range(visits))
        seq = _Sequence(start)
        for t in times:
            t = max(t, seq.t + 15 * MINUTE)  # at least a short sleep between two visits
            if t + 10 * MINUTE >= end:
                break
            seq.until(Room.BEDROOM, Activity.SLEEP, t)
            seq.add(Room.BEDROOM, Activity.ACTIVE, rng.uniform(0.3, 1.0))
            seq.add(Room.BATHROOM, Activity.ACTIVE, rng.uniform(2.0, 6.0))
            seq.add(Room.BEDROOM, Activity.ACTIVE, rng.uniform(0.3, 0.8))
        seq.until(Room.BEDROOM, Activity.SLEEP, end)
        return seq.stays

    def _day(self, day: int, *, quiet: bool) -> list[Stay]:
        rng, p = self.rng, self.profile
        wake, bed = self.wakes[day], self.beds[day]
        seq = _Sequence(wake)
        seq.add(Room.BEDROOM, Activity.ACTIVE, rng.uniform(2, 6))
        seq.add(Room.BATHROOM, Activity.ACTIVE, rng.uniform(3, 8))
        shower = rng.random() < p.shower_p
        evening_shower = shower and rng.random() < p.evening_shower_p
        if shower and not evening_shower:
            seq.add(Room.BATHROOM, Activity.SHOWER, rng.uniform(10, 20))
        seq.add(Room.BEDROOM, Activity.ACTIVE, rng.uniform(4, 10))
        seq.add(Room.KITCHEN, Activity.COOK, rng.uniform(15, 30))

        evening = [(Room.BATHROOM, Activity.ACTIVE, rng.uniform(5, 10))]
        if evening_shower:
            evening.append((Room.BATHROOM, Activity.SHOWER, rng.uniform(10, 20)))
        evening.append((Room.BEDROOM, Activity.ACTIVE, rng.uniform(3, 8)))
        evening_start = bed - sum(minutes for _, _, minutes in evening) * MINUTE

        for anchor in self._anchors(day, seq.t + 10 * MINUTE, evening_start - 10 * MINUTE, quiet):
            self._fill(seq, anchor.start)
            seq.until(anchor.room, anchor.activity, anchor.end)
        self._fill(seq, evening_start)
        for room, activity, minutes in evening:
            seq.add(room, activity, minutes)
        seq.until(Room.BEDROOM, Activity.ACTIVE, bed)  # rounding: end exactly at bedtime
        return seq.stays

    def _anchors(self, day: int, lo: float, hi: float, quiet: bool) -> list[_Anchor]:
        """Meals, an outing, a visitor and a nap, most important first; one that clashes with
        an earlier one is dropped (an outing over lunchtime means lunch out)."""
        rng, p = self.rng, self.profile

        def block(
            mean_h: float, sigma: float, minutes: float, room: Room, act: Activity
        ) -> _Anchor:
            start = self.at(day, mean_h + _jitter(rng, sigma))
            return _Anchor(start, start + minutes * MINUTE, room, act)

        wanted = [block(p.dinner_h, 0.3, rng.uniform(30, 60), Room.KITCHEN, Activity.COOK)]
        if not quiet and rng.random() < p.outing_p:
            start_h = rng.uniform(9.5, 15.0)
            wanted.append(block(start_h, 0.0, rng.uniform(45, 210), Room.OUT, Activity.OUT))
        wanted.append(block(p.lunch_h, 0.3, rng.uniform(20, 45), Room.KITCHEN, Activity.COOK))
        if not quiet and rng.random() < p.visitor_p:
            start_h = rng.uniform(13.5, 17.0)
            wanted.append(
                block(start_h, 0.0, rng.uniform(30, 120), Room.LIVING_ROOM, Activity.VISIT)
            )
        if rng.random() < p.nap_p:
            start_h = rng.uniform(13.5, 15.5)
            wanted.append(block(start_h, 0.0, rng.uniform(20, 60), Room.LIVING_ROOM, Activity.NAP))
        kept: list[_Anchor] = []
        gap = 10 * MINUTE
        for anchor in wanted:
            if anchor.start < lo or anchor.end > hi:
                continue
            if all(anchor.end + gap <= k.start or k.end + gap <= anchor.start for k in kept):
                kept.append(anchor)
        return sorted(kept, key=lambda a: a.start)

    def _fill(self, seq: _Sequence, end: float) -> None:
        """Sitting in the living room, with trips to the kitchen, bathroom or elsewhere."""
        rng = self.rng
        trips = (
            (Room.KITCHEN, 3.0, 8.0),
            (Room.BATHROOM, 3.0, 7.0),
            (Room.BEDROOM, 2.0, 5.0),
            (Room.HALLWAY, 0.5, 2.0),
        )
        while end - seq.t > 2 * MINUTE:
            sit = seq.t + rng.uniform(30, 110) * MINUTE
            if sit >= end - 2 * MINUTE:
                break
            seq.until(Room.LIVING_ROOM, Activity.SEDENTARY, sit)
            room, low, high = rng.choices(trips, weights=(0.5, 0.35, 0.1, 0.05))[0]
            seq.until(room, Activity.ACTIVE, min(end, seq.t + rng.uniform(low, high) * MINUTE))
        seq.until(Room.LIVING_ROOM, Activity.SEDENTARY, end)


def stay_at(timeline: Sequence[Stay], t: float) -> Stay:
    """The stay in progress at `t` (the timeline covers its span without gaps)."""
    index = bisect.bisect_right([s.start for s in timeline], t) - 1
    return timeline[max(0, index)]


def splice(timeline: Sequence[Stay], start: float, end: float, new: Sequence[Stay]) -> list[Stay]:
    """The timeline with [start, end) replaced by `new` (which must cover exactly that span)."""
    out: list[Stay] = []
    for stay in timeline:
        if stay.end <= start or stay.start >= end:
            out.append(stay)
            continue
        if stay.start < start:
            out.append(Stay(stay.start, start, stay.room, stay.activity))
        if stay.end > end:
            out.append(Stay(end, stay.end, stay.room, stay.activity))
    out.extend(new)
    out.sort(key=lambda s: s.start)
    return out


def build_sequence(start: float, parts: Sequence[tuple[Room, Activity, float]]) -> list[Stay]:
    """Stays laid end to end from `start`, each (room, activity, minutes)."""
    seq = _Sequence(start)
    for room, activity, minutes in parts:
        seq.add(room, activity, minutes)
    return seq.stays
