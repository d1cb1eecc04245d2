"""Indoor climate on a one-minute grid: temperature, humidity and CO2 per room.

Simple physics with the features the checks care about: a house that loses heat to the
outdoors (time constant of a day or more) and a thermostat (day setpoint, night setback); a
winter-to-spring outdoor temperature with weather that wanders; showers that fill the bathroom
with steam for a while, cooking, a sleeper's breath in the bedroom, and people's CO2. A cold
spell (heating failure in a cold snap) and a damp week (broken extractor, condensation) are
switches on the same model, so the anomalies look like the rest of the data.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from hub.evaluation.routine import MINUTE, Activity, Room, Stay

CLIMATE_ROOMS = (Room.LIVING_ROOM, Room.BEDROOM, Room.BATHROOM, Room.KITCHEN)
# Rooms' temperatures relative to the living room, where the thermostat is.
_TEMP_OFFSET = {Room.LIVING_ROOM: 0.0, Room.KITCHEN: -0.3, Room.BATHROOM: -0.2, Room.BEDROOM: -0.5}
_RH_OFFSET = {Room.LIVING_ROOM: 0.0, Room.KITCHEN: 3.0, Room.BATHROOM: 5.0, Room.BEDROOM: 2.0}
_RH_PER_DEGREE = 3.0  # warmer air holds more water: RH falls about 3 points per °C
_CO2_OUTDOOR = 420.0
_SNAP_DROP_C = 4.0  # how much colder a cold snap is outdoors
_SNAP_MARGIN_S = 12 * 3600.0
# A damp week's levels, whatever the home's usual humidity: a bathroom that no longer clears
# (showers keep it above 70 % for hours) and a bedroom with condensation (high 70s by morning).
_DAMP_BATHROOM_RH = 68.0
_DAMP_BEDROOM_NIGHT_RH = 78.0
_DAMP_BEDROOM_DAY_RH = 60.0


@dataclass(frozen=True)
class House:
    """One dwelling's thermal and moisture character."""

    tau_h: float  # heat-loss time constant
    heater_c_per_h: float  # how fast the heating can warm the house
    day_setpoint: float
    night_setpoint: float
    heat_on_h: float
    heat_off_h: float
    base_rh: float
    co2_per_person: float
    shower_rh: float  # the peak a shower drives the bathroom towards
    extractor_tau_min: float  # how fast the bathroom clears afterwards

    @classmethod
    def draw(cls, rng: random.Random) -> House:
        return cls(
            tau_h=rng.uniform(28.0, 45.0),
            heater_c_per_h=rng.uniform(2.0, 3.5),
            day_setpoint=rng.uniform(20.0, 21.5),
            night_setpoint=rng.uniform(19.2, 19.8),
            heat_on_h=6.5 + rng.uniform(-0.25, 0.25),
            heat_off_h=22.0 + rng.uniform(-0.25, 0.25),
            base_rh=rng.uniform(38.0, 48.0),
            co2_per_person=rng.uniform(240.0, 330.0),
            shower_rh=rng.uniform(86.0, 96.0),
            extractor_tau_min=rng.uniform(12.0, 20.0),
        )


@dataclass(frozen=True)
class Events:
    """Anomalies that change the climate: intervals of Unix seconds."""

    heating_failures: Sequence[tuple[float, float]] = ()
    damp: Sequence[tuple[float, float]] = ()


class Climate:
    """Per-minute values from `begin`; `at(room, quantity, t)` reads the minute holding t."""

    def __init__(self, begin: float, minutes: int) -> None:
        self.begin = begin
        self.minutes = minutes
        self.temperature = {room: array("d", bytes(8 * minutes)) for room in CLIMATE_ROOMS}
        self.humidity = {room: array("d", bytes(8 * minutes)) for room in CLIMATE_ROOMS}
        self.co2 = array("d", bytes(8 * minutes))
        self.outdoor = array("d", bytes(8 * minutes))

    def index(self, t: float) -> int:
        return min(self.minutes - 1, max(0, int((t - self.begin) // MINUTE)))

    def temperature_at(self, room: Room, t: float) -> float:
        return self.temperature[room][self.index(t)]

    def humidity_at(self, room: Room, t: float) -> float:
        return self.humidity[room][self.index(t)]

    def co2_at(self, t: float) -> float:
        return self.co2[self.index(t)]


def _mark(
    flags: bytearray, begin: float, minutes: int, start: float, end: float, value: int = 1
) -> None:
    lo = max(0, int((start - begin) // MINUTE))
    hi = min(minutes, math.ceil((end - begin) / MINUTE))
    for i in range(lo, hi):
        flags[i] = value


def _in_any(t: float, spans: Sequence[tuple[float, float]], margin: float = 0.0) -> bool:
    return any(a - margin <= t < b + margin for a, b in spans)


def _local_hours(begin: float, minutes: int, tz: ZoneInfo) -> array[float]:
    """Local hour of day of each minute (DST-aware: the offset is looked up once an hour)."""
    import datetime as dt

    hours = array("d", bytes(8 * minutes))
    offset = 0.0
    for i in range(minutes):
        t = begin + i * MINUTE
        if i % 60 == 0:
            moment = dt.datetime.fromtimestamp(t, tz)
            delta = moment.utcoffset()
            offset = delta.total_seconds() if delta is not None else 0.0
        hours[i] = ((t + offset) % 86400.0) / 3600.0
    return hours


def _outdoor_mean(t: float) -> float:
    """Seasonal daily mean outdoors in southern England: about 4.5 °C in late January."""
    day_of_year = (t / 86400.0) % 365.25
    return 10.5 - 6.0 * math.cos(2 * math.pi * (day_of_year - 20.0) / 365.25)


def simulate_climate(
    timeline: Sequence[Stay],
    begin: float,
    end: float,
    tz: ZoneInfo,
    house: House,
    rng: random.Random,
    events: Events = Events(),
) -> Climate:
    minutes = math.ceil((end - begin) / MINUTE)
    climate = Climate(begin, minutes)
    shower, cook, sleep, living = (bytearray(minutes) for _ in range(4))
    for stay in timeline:
        if stay.activity is Activity.SHOWER:
            _mark(shower, begin, minutes, stay.start, stay.end)
        elif stay.activity is Activity.COOK:
            _mark(cook, begin, minutes, stay.start, stay.end)
        elif stay.activity is Activity.SLEEP:
            _mark(sleep, begin, minutes, stay.start, stay.end)
        if stay.room is Room.LIVING_ROOM:
            people = 3 if stay.activity is Activity.VISIT else 1
            _mark(living, begin, minutes, stay.start, stay.end, people)
    hours = _local_hours(begin, minutes, tz)

    weather_a = math.exp(-1.0 / (48 * 60))  # outdoor weather wanders over about two days
    weather_s = 2.5 * math.sqrt(1 - weather_a**2)
    damp_air_a = math.exp(-1.0 / (24 * 60))  # indoor humidity wanders over about a day
    damp_air_s = 2.0 * math.sqrt(1 - damp_air_a**2)
    weather, damp_air = rng.gauss(0.0, 2.5), rng.gauss(0.0, 2.0)

    house_t = house.night_setpoint
    heating = False
    bath_t = bath_rh = kitchen_t = kitchen_rh = bed_rh = 0.0
    co2 = _CO2_OUTDOOR + 50.0
    loss = 1.0 / (house.tau_h * 60.0)
    heat = house.heater_c_per_h / 60.0
    failures, damp = events.heating_failures, events.damp
    bath_damp = _DAMP_BATHROOM_RH - house.base_rh - _RH_OFFSET[Room.BATHROOM]
    bed_usual = house.base_rh + _RH_OFFSET[Room.BEDROOM]
    bed_damp_night, bed_damp_day = (
        _DAMP_BEDROOM_NIGHT_RH - bed_usual,
        _DAMP_BEDROOM_DAY_RH - bed_usual,
    )

    for i in range(minutes):
        t = begin + i * MINUTE
        hour = hours[i]
        weather = weather * weather_a + rng.gauss(0.0, weather_s)
        damp_air = damp_air * damp_air_a + rng.gauss(0.0, damp_air_s)
        outdoor = _outdoor_mean(t) + 3.0 * math.cos(2 * math.pi * (hour - 15.0) / 24.0) + weather
        if _in_any(t, failures, _SNAP_MARGIN_S):
            outdoor -= _SNAP_DROP_C
        climate.outdoor[i] = outdoor

        broken = _in_any(t, failures)
        target = (
            house.day_setpoint
            if house.heat_on_h <= hour < house.heat_off_h
            else house.night_setpoint
        )
        if broken:
            heating = False
        elif house_t < target - 0.25:
            heating = True
        elif house_t > target + 0.25:
            heating = False
        house_t += (outdoor - house_t) * loss + (heat if heating else 0.0)

        is_damp = _in_any(t, damp)
        # Steam and cooking: first-order approach to a target while it lasts, decay after.
        if shower[i]:
            bath_t += (2.0 - bath_t) / 5.0
            bath_rh += (house.shower_rh - house.base_rh - _RH_OFFSET[Room.BATHROOM] - bath_rh) / 3.0
        else:
            bath_t -= bath_t / 20.0
            bath_rh -= bath_rh / (180.0 if is_damp else house.extractor_tau_min)
        if cook[i]:
            kitchen_t += (1.5 - kitchen_t) / 15.0
            kitchen_rh += (15.0 - kitchen_rh) / 10.0
        else:
            kitchen_t -= kitchen_t / 30.0
            kitchen_rh -= kitchen_rh / 20.0
        if is_damp:
            bed_target = bed_damp_night if sleep[i] else bed_damp_day
        else:
            bed_target = 6.0 if sleep[i] else 0.0
        bed_rh += (bed_target - bed_rh) / (90.0 if sleep[i] else 60.0)
        co2_target = _CO2_OUTDOOR + 30.0 + house.co2_per_person * living[i]
        co2 += (co2_target - co2) / (30.0 if living[i] else 60.0)
        climate.co2[i] = co2

        bath_base = bath_damp if is_damp else 0.0
        extra_t = {Room.BATHROOM: bath_t, Room.KITCHEN: kitchen_t}
        extra_rh = {
            Room.BATHROOM: bath_rh + bath_base,
            Room.KITCHEN: kitchen_rh,
            Room.BEDROOM: bed_rh,
        }
        # A colder house is a damper one; steam's own warmth is already in its humidity.
        base_rh = house.base_rh + damp_air - _RH_PER_DEGREE * (house_t - house.day_setpoint)
        for room in CLIMATE_ROOMS:
            rh = base_rh + _RH_OFFSET[room] + extra_rh.get(room, 0.0)
            climate.temperature[room][i] = house_t + _TEMP_OFFSET[room] + extra_t.get(room, 0.0)
            climate.humidity[room][i] = min(99.0, max(15.0, rh))
    return climate
