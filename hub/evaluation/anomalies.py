"""Anomalies injected into a simulated home, each with the label that says what the hub should
have noticed, when, and with which check.

An anomaly is planned on a day, changes the resident's timeline, the climate or a sensor's
battery, and after the data is made reads its own label off that data (the first reading below
18 °C, the first battery report at or below 20 %), so a label never claims what the data
does not show.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from enum import StrEnum

from hub.evaluation.climate import Climate, Events
from hub.evaluation.labels import Label
from hub.evaluation.routine import HOUR, MINUTE, Activity, Planner, Room, Stay, splice, stay_at
from hub.evaluation.sensors import (
    FRONT_DOOR,
    MOTION_ROOMS,
    Outage,
    Sample,
    climate_sensor_id,
    motion_sensor_id,
)
from hub.events import Quantity

COLD_C = 18.0
DAMP_RH = 70.0
LOW_BATTERY_PCT = 20.0


class Kind(StrEnum):
    FALL_DAY = "fall_day"
    FALL_NIGHT = "fall_night"
    NIGHT_EXIT = "night_exit"
    NIGHT_BATHROOM_WEEK = "night_bathroom_week"
    COLD_SPELL = "cold_spell"
    DAMP_WEEK = "damp_week"
    BATTERY_DEATH = "battery_death"


# Days an anomaly occupies from the day it is planned on (a night runs into the next day).
DAYS_NEEDED = {
    Kind.FALL_DAY: 1,
    Kind.FALL_NIGHT: 2,
    Kind.NIGHT_EXIT: 2,
    Kind.NIGHT_BATHROOM_WEEK: 8,
    Kind.COLD_SPELL: 3,
    Kind.DAMP_WEEK: 8,
    Kind.BATTERY_DEATH: 6,
}


def schedule(
    rng: random.Random, days: int, warmup_days: int, kinds: Sequence[Kind]
) -> list[tuple[Kind, int]]:
    """(kind, day) for each anomaly that fits, in a random order after `warmup_days` clean
    days, with 2-4 clean days before each; those that do not fit are left out."""
    order = list(kinds)
    rng.shuffle(order)
    placed: list[tuple[Kind, int]] = []
    cursor = warmup_days
    for kind in order:
        day = cursor + rng.randint(2, 4)
        if day + DAYS_NEEDED[kind] > days:
            continue
        placed.append((kind, day))
        cursor = day + DAYS_NEEDED[kind]
    return placed


class Injection:
    """One anomaly: hooks called in order while the home is built (all optional)."""

    kind: Kind

    def __init__(self, home: str, day: int, planner: Planner, rng: random.Random) -> None:
        self.home = home
        self.day = day
        self.planner = planner
        self.rng = rng

    def visits(self) -> dict[int, int]:
        return {}

    def quiet_days(self) -> set[int]:
        return set()

    def edit(self, timeline: list[Stay]) -> list[Stay]:
        return timeline

    def extra(self) -> list[Sample]:
        return []

    def events(self) -> Events:
        return Events()

    def outage(self) -> Outage | None:
        return None

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        return []


def _carer(found: float) -> list[Sample]:
    """Someone who has a key lets themselves in at `found` and leaves half an hour later."""
    hallway = motion_sensor_id(Room.HALLWAY)
    return [
        Sample(found - 60.0, FRONT_DOOR, Quantity.CONTACT, 1.0),
        Sample(found - 50.0, FRONT_DOOR, Quantity.CONTACT, 0.0),
        Sample(found - 40.0, hallway, Quantity.MOTION, 1.0),
        Sample(found + 30 * MINUTE, FRONT_DOOR, Quantity.CONTACT, 1.0),
        Sample(found + 30 * MINUTE + 10.0, FRONT_DOOR, Quantity.CONTACT, 0.0),
    ]


class FallByDay(Injection):
    """A fall in the morning: no movement anywhere until someone calls hours later."""

    kind = Kind.FALL_DAY

    def quiet_days(self) -> set[int]:
        return {self.day}

    def edit(self, timeline: list[Stay]) -> list[Stay]:
        p = self.planner
        self.fall = max(p.at(self.day, self.rng.uniform(9.0, 12.0)), p.wakes[self.day] + 1.5 * HOUR)
        self.found = self.fall + self.rng.uniform(5.0, 7.0) * HOUR
        self.room = stay_at(timeline, self.fall).room
        return splice(
            timeline,
            self.fall,
            self.found,
            [Stay(self.fall, self.found, self.room, Activity.FALLEN)],
        )

    def extra(self) -> list[Sample]:
        return _carer(self.found)

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        return [
            Label(
                self.home,
                self.kind.value,
                self.fall,
                self.found,
                ("inactivity",),
                also=("kitchen_not_used",),
                details={
                    "room": self.room.value,
                    "hours": round((self.found - self.fall) / HOUR, 2),
                },
            )
        ]


def _night_moment(
    planner: Planner, night: int, rng: random.Random, lo_h: float, hi_h: float
) -> float:
    """A time between lo_h and hi_h (local, the morning after `night`), inside that night."""
    bed, wake = planner.night(night)
    t = planner.at(night + 1, rng.uniform(lo_h, hi_h))
    return min(max(t, bed + 30 * MINUTE), wake - 90 * MINUTE)


class FallAtNight(Injection):
    """Up in the night, a fall in the bathroom or hallway, not back to bed until found."""

    kind = Kind.FALL_NIGHT

    def edit(self, timeline: list[Stay]) -> list[Stay]:
        rng = self.rng
        self.up = _night_moment(self.planner, self.day, rng, 1.25, 2.75)
        self.found = self.up + rng.uniform(5.0, 8.0) * HOUR
        t = self.up
        parts = [(Room.BEDROOM, rng.uniform(0.3, 1.0)), (Room.HALLWAY, rng.uniform(0.3, 1.0))]
        self.room = Room.BATHROOM if rng.random() < 0.6 else Room.HALLWAY
        if self.room is Room.BATHROOM:
            parts.append((Room.BATHROOM, rng.uniform(1.0, 3.0)))
        new: list[Stay] = []
        for room, minutes in parts:
            new.append(Stay(t, t + minutes * MINUTE, room, Activity.ACTIVE))
            t += minutes * MINUTE
        new.append(Stay(t, self.found, self.room, Activity.FALLEN))
        return splice(timeline, self.up, self.found, new)

    def extra(self) -> list[Sample]:
        return _carer(self.found)

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        return [
            Label(
                self.home,
                self.kind.value,
                self.up,
                self.found,
                ("out_of_bed",),
                also=("inactivity", "not_up", "night_bathroom", "kitchen_not_used"),
                details={"room": self.room.value},
            )
        ]


class NightExit(Injection):
    """Out of the front door at about three in the morning, back a while later."""

    kind = Kind.NIGHT_EXIT

    def edit(self, timeline: list[Stay]) -> list[Stay]:
        rng = self.rng
        start = _night_moment(self.planner, self.day, rng, 2.5, 3.5)
        t = start
        parts = [
            (Room.BEDROOM, Activity.ACTIVE, rng.uniform(0.5, 1.5)),
            (Room.HALLWAY, Activity.ACTIVE, rng.uniform(0.3, 1.0)),
            (Room.OUT, Activity.OUT, rng.uniform(20.0, 90.0)),
            (Room.HALLWAY, Activity.ACTIVE, rng.uniform(0.3, 1.0)),
            (Room.BEDROOM, Activity.ACTIVE, rng.uniform(1.0, 3.0)),
        ]
        new: list[Stay] = []
        for room, activity, minutes in parts:
            new.append(Stay(t, t + minutes * MINUTE, room, activity))
            if room is Room.OUT:
                self.left, self.back = t - 12.0, t + minutes * MINUTE  # door opened, came back
            t += minutes * MINUTE
        return splice(timeline, start, t, new)

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        return [
            Label(
                self.home,
                self.kind.value,
                self.left,
                self.back,
                ("night_exit",),
                also=("out_of_bed", "inactivity"),
                details={"minutes_out": round((self.back - self.left) / MINUTE)},
            )
        ]


class NightBathroomWeek(Injection):
    """A week of three to five bathroom visits a night (a possible urinary infection)."""

    kind = Kind.NIGHT_BATHROOM_WEEK
    NIGHTS = 7

    def visits(self) -> dict[int, int]:
        self.counts = {self.day + n: self.rng.randint(3, 5) for n in range(self.NIGHTS)}
        return self.counts

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        start, _ = self.planner.night(self.day)
        _, end = self.planner.night(self.day + self.NIGHTS - 1)
        return [
            Label(
                self.home,
                self.kind.value,
                start,
                end,
                ("night_bathroom",),
                also=("out_of_bed",),
                details={"visits_per_night": list(self.counts.values())},
            )
        ]


def _first(
    samples: Sequence[Sample],
    start: float,
    sensors: tuple[str, ...],
    quantity: Quantity,
    beyond: Callable[[float], bool],
) -> float | None:
    """When the first reading of `quantity` from `sensors` at or after `start` is `beyond`."""
    return next(
        (
            s.t
            for s in samples
            if s.t >= start and s.quantity is quantity and s.sensor in sensors and beyond(s.value)
        ),
        None,
    )


class ColdSpell(Injection):
    """The boiler fails in a cold snap; repaired a day or so later."""

    kind = Kind.COLD_SPELL

    def events(self) -> Events:
        self.failed = self.planner.at(self.day, self.rng.uniform(6.0, 20.0))
        self.repaired = self.failed + self.rng.uniform(20.0, 30.0) * HOUR
        return Events(heating_failures=[(self.failed, self.repaired)])

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        rooms = [r for r in climate.temperature]
        sensors = tuple(climate_sensor_id(r) for r in rooms)
        cold = _first(samples, self.failed, sensors, Quantity.TEMPERATURE, lambda v: v < COLD_C)
        end = self.repaired
        while end < climate.begin + climate.minutes * MINUTE and any(
            climate.temperature_at(r, end) < COLD_C + 0.3 for r in rooms
        ):
            end += 5 * MINUTE
        coldest = min(
            climate.temperature_at(r, t)
            for r in rooms
            for t in range(int(self.failed), int(self.repaired), 600)
        )
        return [
            Label(
                self.home,
                self.kind.value,
                self.failed if cold is None else cold,
                end,
                ("cold_home",),
                onset=self.failed,
                also=("damp",),
                details={
                    "coldest_c": round(coldest, 1),
                    "heating_off_h": round((self.repaired - self.failed) / HOUR, 1),
                },
            )
        ]


class DampWeek(Injection):
    """A broken extractor and condensation: bathroom and bedroom humid for hours every day."""

    kind = Kind.DAMP_WEEK

    def events(self) -> Events:
        self.begin = self.planner.at(self.day, 0.0)
        self.finish = self.planner.at(self.day + 7, 0.0)
        return Events(damp=[(self.begin, self.finish)])

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        rooms = (Room.BATHROOM, Room.BEDROOM)
        sensors = tuple(climate_sensor_id(r) for r in rooms)
        damp = _first(samples, self.begin, sensors, Quantity.HUMIDITY, lambda v: v > DAMP_RH)
        end = self.finish
        while end < climate.begin + climate.minutes * MINUTE and any(
            climate.humidity_at(r, end) > DAMP_RH - 2 for r in rooms
        ):
            end += 5 * MINUTE
        return [
            Label(
                self.home,
                self.kind.value,
                self.begin if damp is None else damp,
                end,
                ("damp",),
                onset=self.begin,
                rooms=("Bathroom", "Bedroom"),
            )
        ]


class BatteryDeath(Injection):
    """A motion sensor's battery runs down and the sensor goes silent until it is replaced;
    the resident goes on as usual, so this is a device problem, not an inactive person."""

    kind = Kind.BATTERY_DEATH

    def outage(self) -> Outage:
        rng = self.rng
        self.sensor = motion_sensor_id(rng.choice(MOTION_ROOMS))
        decline = self.planner.at(self.day, rng.uniform(0.0, 24.0))
        death = decline + rng.uniform(48.0, 72.0) * HOUR
        self.failure = Outage(self.sensor, decline, death, death + rng.uniform(24.0, 48.0) * HOUR)
        return self.failure

    def labels(self, samples: Sequence[Sample], climate: Climate) -> list[Label]:
        o = self.failure
        low = _first(
            samples, o.decline_start, (o.sensor,), Quantity.BATTERY, lambda v: v <= LOW_BATTERY_PCT
        )
        return [
            Label(
                self.home,
                "battery_low",
                o.decline_start if low is None else low,
                o.death,
                ("low_battery",),
                onset=o.decline_start,
                sensor=o.sensor,
            ),
            Label(
                self.home,
                "sensor_dead",
                o.death,
                o.replaced,
                ("sensor_silent",),
                forbidden=("inactivity",),
                sensor=o.sensor,
                details={"silent_h": round((o.replaced - o.death) / HOUR, 1)},
            ),
        ]


_TYPES: dict[Kind, type[Injection]] = {
    Kind.FALL_DAY: FallByDay,
    Kind.FALL_NIGHT: FallAtNight,
    Kind.NIGHT_EXIT: NightExit,
    Kind.NIGHT_BATHROOM_WEEK: NightBathroomWeek,
    Kind.COLD_SPELL: ColdSpell,
    Kind.DAMP_WEEK: DampWeek,
    Kind.BATTERY_DEATH: BatteryDeath,
}


def injection(kind: Kind, home: str, day: int, planner: Planner, rng: random.Random) -> Injection:
    return _TYPES[kind](home, day, planner, rng)
