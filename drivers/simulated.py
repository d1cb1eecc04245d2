"""A simulated home: one resident with a daily routine, for the demo and for tests.

It speaks only Readings, like any other driver, and takes its time from the hub's Clock, so
an accelerated clock gives a day of plausible data in seconds. It is deliberately simple; the
evaluation's resident simulator (with labelled anomalies) is a separate, richer thing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from drivers.base import Emit
from hub.clock import Clock
from hub.events import Quantity, Reading

STEP_S = 60.0  # simulated seconds between steps of the routine
CLIMATE_EVERY_S = 300.0
BATTERY_EVERY_S = 6 * 3600.0

# (kind of sensor) -> what it reports; roles decide where the resident is.
_BASE_TEMPERATURE = {"bedroom": 18.5, "bathroom": 20.5, "kitchen": 20.0}
_BASE_HUMIDITY = {"bathroom": 60.0, "kitchen": 52.0}


@dataclass(frozen=True)
class SimSensor:
    id: str
    kind: str  # a config SensorKind value: motion, contact, climate, ...
    role: str  # a config RoomRole value: bedroom, bathroom, ...


def where_is_resident(hour: float, rng: random.Random) -> str:
    """The room role the resident is in at this local hour (a typical, slightly noisy day)."""
    if hour < 7.0 or hour >= 22.5:
        return "bathroom" if 3.0 <= hour < 3.2 else "bedroom"
    if 7.0 <= hour < 7.5:
        return "bathroom"
    if 10.0 <= hour < 11.5:
        return "out"
    if hour % 4.0 < 0.4:
        return "kitchen"
    return rng.choice(("living_room", "living_room", "living_room", "kitchen", "hallway"))


class SimulatedHome:
    """One source for all simulated sensors of a hub: they share one resident."""

    name = "simulated"

    def __init__(
        self, sensors: list[SimSensor], clock: Clock, timezone: str, seed: int = 7
    ) -> None:
        self.sensors = sensors
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self.rng = random.Random(seed)
        self._last_climate = float("-inf")
        self._last_battery = float("-inf")
        self._door_open = False
        self._room = "bedroom"
        self._in_bed = True

    async def run(self, emit: Emit) -> None:
        while True:
            self.step(emit)
            await self.clock.sleep(STEP_S)

    def step(self, emit: Emit) -> None:
        stamp = self.clock.stamp()
        local = datetime.fromtimestamp(stamp.wall_time, self.tz)
        hour = local.hour + local.minute / 60.0
        room = where_is_resident(hour, self.rng)
        leaving_or_back = (room == "out") != (self._room == "out")
        in_bed = room == "bedroom" and (hour < 7.0 or hour >= 22.5)
        self._room = room

        def reading(sensor: SimSensor, quantity: Quantity, value: float) -> None:
            emit(Reading(sensor.id, quantity, round(value, 2), stamp))

        for sensor in self.sensors:
            if sensor.kind == "motion":
                if sensor.role == room and self.rng.random() < 0.35:
                    reading(sensor, Quantity.MOTION, 1.0)
            elif sensor.kind == "contact" and sensor.role == "exit_door":
                if leaving_or_back or self._door_open:
                    self._door_open = not self._door_open
                    reading(sensor, Quantity.CONTACT, float(self._door_open))
            elif sensor.kind == "pressure_mat" and in_bed != self._in_bed:
                reading(sensor, Quantity.OCCUPANCY, float(in_bed))
        if stamp.monotonic - self._last_climate >= CLIMATE_EVERY_S:
            self._last_climate = stamp.monotonic
            for sensor in self.sensors:
                if sensor.kind in ("climate", "thermometer"):
                    daily = math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
                    base = _BASE_TEMPERATURE.get(sensor.role, 20.5)
                    reading(
                        sensor, Quantity.TEMPERATURE, base + 1.5 * daily + self.rng.gauss(0, 0.1)
                    )
                    if sensor.kind == "climate":
                        shower = 30.0 if sensor.role == "bathroom" and 7.0 <= hour < 8.0 else 0.0
                        rh = _BASE_HUMIDITY.get(sensor.role, 45.0) + shower + self.rng.gauss(0, 1.0)
                        reading(sensor, Quantity.HUMIDITY, min(rh, 99.0))
        if stamp.monotonic - self._last_battery >= BATTERY_EVERY_S:
            self._last_battery = stamp.monotonic
            for sensor in self.sensors:
                if sensor.kind in ("climate", "thermometer", "motion", "contact"):
                    reading(sensor, Quantity.BATTERY, 100.0 - stamp.monotonic / 86400.0 * 0.05)
        self._in_bed = in_bed
