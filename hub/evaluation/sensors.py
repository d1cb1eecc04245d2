"""A simulated home's sensors, and the readings they make of the resident's timeline.

Each sensor behaves like the hardware it stands for: a PIR reports movement it can see, at
most once per blind period; a door contact reports open and closed; a bed mat reports getting
in and out; a climate sensor reports every few minutes with its own small calibration error;
every battery device reports its level every few hours. A sensor that is dead (its battery
ran out) reports nothing at all, while the resident goes on as before.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.config import HubConfig, HubSection, RoomRole, SensorConfig, SensorKind, SensorSource
from hub.evaluation.climate import Climate
from hub.evaluation.routine import HOUR, Activity, Room, Stay
from hub.events import Quantity, Reading, Stamp, StoredEvent

PIR_BLIND_S = 20.0  # a PIR reports again only after this long
_RATE_PER_MIN = {
    Activity.ACTIVE: 3.0,
    Activity.COOK: 2.5,
    Activity.SHOWER: 1.0,
    Activity.VISIT: 3.0,
    Activity.NAP: 1.0 / 45.0,
    Activity.SLEEP: 1.0 / 60.0,  # turning over
}
_UNSEEN = (Activity.OUT, Activity.FALLEN)


@dataclass(frozen=True)
class SensorSpec:
    id: str
    kind: SensorKind
    room_name: str
    role: RoomRole
    room: Room  # the simulated room it watches

    def config(self) -> SensorConfig:
        return SensorConfig(
            id=self.id,
            kind=self.kind,
            room=self.room_name,
            role=self.role,
            source=SensorSource.REPLAY,
        )


_ROOM_NAMES = {
    Room.BEDROOM: ("Bedroom", RoomRole.BEDROOM),
    Room.BATHROOM: ("Bathroom", RoomRole.BATHROOM),
    Room.KITCHEN: ("Kitchen", RoomRole.KITCHEN),
    Room.LIVING_ROOM: ("Living room", RoomRole.LIVING_ROOM),
    Room.HALLWAY: ("Hallway", RoomRole.HALLWAY),
}


def _spec(sensor_id: str, kind: SensorKind, room: Room, role: RoomRole | None = None) -> SensorSpec:
    name, room_role = _ROOM_NAMES[room]
    return SensorSpec(sensor_id, kind, name, role or room_role, room)


def motion_sensor_id(room: Room) -> str:
    return f"{room.value.replace('_', '-')}-motion"


def climate_sensor_id(room: Room) -> str:
    return f"{room.value.replace('_', '-')}-climate"


FRONT_DOOR = "front-door"
BED_MAT = "bed-mat"
CO2_SENSOR = "living-room-co2"
MOTION_ROOMS = (Room.BEDROOM, Room.BATHROOM, Room.KITCHEN, Room.LIVING_ROOM, Room.HALLWAY)
CLIMATE_ROOMS = (Room.LIVING_ROOM, Room.BEDROOM, Room.BATHROOM, Room.KITCHEN)


def home_sensors(*, with_co2: bool) -> list[SensorSpec]:
    sensors = [_spec(motion_sensor_id(room), SensorKind.MOTION, room) for room in MOTION_ROOMS]
    sensors.append(_spec(FRONT_DOOR, SensorKind.CONTACT, Room.HALLWAY, RoomRole.EXIT_DOOR))
    sensors.append(_spec(BED_MAT, SensorKind.PRESSURE_MAT, Room.BEDROOM))
    sensors.extend(_spec(climate_sensor_id(r), SensorKind.CLIMATE, r) for r in CLIMATE_ROOMS)
    if with_co2:
        sensors.append(_spec(CO2_SENSOR, SensorKind.AIR_QUALITY, Room.LIVING_ROOM))
    return sensors


def hub_config(
    name: str, sensors: Sequence[SensorSpec], timezone: str, data_dir: Path
) -> HubConfig:
    """The home's config: the design's default checks and these sensors."""
    return HubConfig(
        hub=HubSection(name=name, timezone=timezone, data_dir=data_dir),
        sensors=tuple(sensor.config() for sensor in sensors),
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """A reading before it has a stamp: time, sensor, quantity, value."""

    t: float
    sensor: str
    quantity: Quantity
    value: float


@dataclass(frozen=True)
class Outage:
    """A battery that fails: it declines from `decline_start`, the sensor is silent from
    `death` until the battery is replaced at `replaced`."""

    sensor: str
    decline_start: float
    death: float
    replaced: float


# --- movement ------------------------------------------------------------------------------


def _poisson(rng: random.Random, start: float, end: float, per_min: float) -> Iterable[float]:
    if per_min <= 0:
        return
    t = start + rng.expovariate(per_min / 60.0)
    while t < end:
        yield t
        t += rng.expovariate(per_min / 60.0)


def _sitting(rng: random.Random, start: float, end: float) -> Iterable[float]:
    """Sitting still for minutes at a time, with short fidgets a PIR can see."""
    t = start
    while t < end:
        t += min(rng.expovariate(1.0 / (12 * 60.0)), 40 * 60.0)
        fidget_end = min(end, t + rng.uniform(30.0, 180.0))
        yield from _poisson(rng, t, fidget_end, 2.0)
        t = fidget_end


def movement(timeline: Sequence[Stay], rng: random.Random) -> list[Sample]:
    """Motion, door and bed-mat readings of the resident moving through the timeline."""
    out: list[Sample] = []
    hallway = motion_sensor_id(Room.HALLWAY)

    def motion(t: float, room: Room) -> None:
        out.append(Sample(t, motion_sensor_id(room), Quantity.MOTION, 1.0))

    def door(t: float, opened: bool) -> None:
        out.append(Sample(t, FRONT_DOOR, Quantity.CONTACT, 1.0 if opened else 0.0))

    previous: Stay | None = None
    for stay in timeline:
        moved = previous is not None and previous.room is not stay.room
        if previous is not None and moved:
            if stay.room is Room.OUT:  # leaving
                motion(stay.start - 25.0, Room.HALLWAY)
                door(stay.start - 12.0, True)
                door(stay.start - 3.0, False)
            elif previous.room is Room.OUT:  # coming home
                door(stay.start, True)
                door(stay.start + 8.0, False)
                motion(stay.start + 14.0, Room.HALLWAY)
            elif Room.HALLWAY not in (stay.room, previous.room) and rng.random() < 0.85:
                motion(stay.start - rng.uniform(3.0, 10.0), Room.HALLWAY)
        if previous is not None:
            if stay.activity is Activity.SLEEP and previous.activity is not Activity.SLEEP:
                out.append(Sample(stay.start + 5.0, BED_MAT, Quantity.OCCUPANCY, 1.0))
            if previous.activity is Activity.SLEEP and stay.activity is not Activity.SLEEP:
                out.append(Sample(stay.start, BED_MAT, Quantity.OCCUPANCY, 0.0))
        elif stay.activity is Activity.SLEEP:
            out.append(Sample(stay.start + 1.0, BED_MAT, Quantity.OCCUPANCY, 1.0))
        if stay.activity is Activity.VISIT:  # the resident lets a visitor in and out
            for t in (stay.start - 50.0, stay.start - 20.0, stay.end + 10.0):
                out.append(Sample(t, hallway, Quantity.MOTION, 1.0))
            door(stay.start - 40.0, True)
            door(stay.start - 30.0, False)
            door(stay.end + 20.0, True)
            door(stay.end + 30.0, False)
        if stay.room is not Room.OUT and stay.activity not in _UNSEEN:
            if moved and stay.activity is not Activity.SLEEP and rng.random() < 0.97:
                motion(stay.start + rng.uniform(1.0, 5.0), stay.room)
            if stay.activity is Activity.SEDENTARY:
                times = _sitting(rng, stay.start, stay.end)
            else:
                times = _poisson(rng, stay.start, stay.end, _RATE_PER_MIN[stay.activity])
            for t in times:
                motion(t, stay.room)
        previous = stay
    return pir_blind(out)


def pir_blind(samples: Iterable[Sample]) -> list[Sample]:
    """Drop motion a PIR would not report: within its blind period after its last report."""
    last: dict[str, float] = {}
    kept: list[Sample] = []
    for sample in sorted(samples, key=lambda s: s.t):
        if sample.quantity is Quantity.MOTION:
            if sample.t - last.get(sample.sensor, -math.inf) < PIR_BLIND_S:
                continue
            last[sample.sensor] = sample.t
        kept.append(sample)
    return kept


# --- climate and batteries -----------------------------------------------------------------


def _report_times(rng: random.Random, start: float, end: float, every_s: float) -> Iterable[float]:
    t = start + rng.uniform(0.0, every_s)
    while t < end:
        yield t
        t += every_s * rng.uniform(0.9, 1.1)


def climate_readings(
    climate: Climate, sensors: Sequence[SensorSpec], rng: random.Random, end: float
) -> list[Sample]:
    """Each climate sensor every 5-10 minutes (its own rate), CO2 every 5-7 minutes."""
    out: list[Sample] = []
    for sensor in sensors:
        if sensor.kind is SensorKind.CLIMATE:
            temp_error, rh_error = rng.uniform(-0.2, 0.2), rng.uniform(-2.0, 2.0)
            for t in _report_times(rng, climate.begin, end, rng.uniform(300.0, 600.0)):
                temp = climate.temperature_at(sensor.room, t) + temp_error + rng.gauss(0, 0.05)
                rh = climate.humidity_at(sensor.room, t) + rh_error + rng.gauss(0, 0.7)
                out.append(Sample(t, sensor.id, Quantity.TEMPERATURE, round(temp, 1)))
                out.append(Sample(t, sensor.id, Quantity.HUMIDITY, float(round(min(100, rh)))))
        elif sensor.kind is SensorKind.AIR_QUALITY:
            for t in _report_times(rng, climate.begin, end, rng.uniform(300.0, 420.0)):
                ppm = max(380.0, climate.co2_at(t) + rng.gauss(0, 15))
                out.append(Sample(t, sensor.id, Quantity.CO2, float(round(ppm))))
    return out


def battery_readings(
    sensors: Sequence[SensorSpec],
    rng: random.Random,
    begin: float,
    end: float,
    outages: Sequence[Outage] = (),
) -> list[Sample]:
    """Every device's battery level every 1.5-3 hours; a failing one falls to a few percent."""
    failing = {outage.sensor: outage for outage in outages}
    out: list[Sample] = []
    for sensor in sensors:
        level, drain = rng.uniform(55.0, 100.0), rng.uniform(0.03, 0.1) / 86400.0
        outage = failing.get(sensor.id)
        for t in _report_times(rng, begin, end, rng.uniform(1.5, 3.0) * HOUR):
            value = level - drain * (t - begin)
            if outage is not None and t >= outage.replaced:
                value = 100.0 - drain * (t - outage.replaced)
            elif outage is not None and t >= outage.decline_start:
                at_start = level - drain * (outage.decline_start - begin)
                share = (t - outage.decline_start) / (outage.death - outage.decline_start)
                value = at_start - (at_start - 3.0) * min(1.0, share)
            out.append(Sample(t, sensor.id, Quantity.BATTERY, float(max(0, math.floor(value)))))
    return out


def silence(samples: Iterable[Sample], outages: Sequence[Outage]) -> list[Sample]:
    """Remove everything a dead sensor would have sent."""
    return [
        s
        for s in samples
        if not any(o.sensor == s.sensor and o.death <= s.t < o.replaced for o in outages)
    ]


def write_jsonl(path: Path, samples: Sequence[Sample], begin: float) -> int:
    """The hub's own export shape (StoredEvent.to_record), in time order; returns the count."""
    import json

    ordered = sorted(samples, key=lambda s: s.t)
    with path.open("w", encoding="utf-8") as out:
        for seq, sample in enumerate(ordered, 1):
            stamp = Stamp(round(sample.t, 3), True, round(sample.t - begin, 3))
            event = Reading(sample.sensor, sample.quantity, sample.value, stamp)
            out.write(json.dumps(StoredEvent(seq, event).to_record(), ensure_ascii=False) + "\n")
    return len(ordered)
