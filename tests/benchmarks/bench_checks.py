"""Check engine benchmark: readings per second through every check together, on one core.

A home of 25 sensors (climate, air quality, motion, doors, pull cords, leak, pressure mats)
reporting a realistic mix of quantities whose values move through the day (cold nights,
showers, a stuffy evening), so conditions start, raise and clear while it runs; the engine
ticks once per simulated minute as it would on the hub. Readings are built beforehand:
only the engine is timed. Figures, not assertions.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from hub.checks import CheckEngine
from hub.clock import VirtualClock
from hub.config import HubConfig
from hub.events import Alert, Quantity, Reading, Stamp

T0 = 1_764_316_800.0  # 2025-11-28 08:00 UTC

_ROOMS = [
    ("living", "Living room", "living_room"),
    ("bedroom", "Bedroom", "bedroom"),
    ("bedroom2", "Spare bedroom", "bedroom"),
    ("kitchen", "Kitchen", "kitchen"),
    ("bathroom", "Bathroom", "bathroom"),
    ("toilet", "Toilet", "toilet"),
    ("hall", "Hallway", "hallway"),
]


def _home() -> tuple[HubConfig, list[tuple[str, list[Quantity]]]]:
    sensors: list[dict[str, str]] = []
    reporting: list[tuple[str, list[Quantity]]] = []

    def add(sid: str, kind: str, room: str, role: str, quantities: list[Quantity]) -> None:
        sensors.append({"id": sid, "kind": kind, "room": room, "role": role, "source": "ble"})
        reporting.append((sid, quantities))

    climate = [Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY]
    for key, room, role in _ROOMS:
        add(f"{key}-climate", "climate", room, role, climate)
        add(f"{key}-motion", "motion", room, role, [Quantity.MOTION, Quantity.BATTERY])
    air = [Quantity.CO2, Quantity.PM25, Quantity.TEMPERATURE, Quantity.HUMIDITY]
    add("living-air", "air_quality", "Living room", "living_room", air)
    add("bedroom-air", "air_quality", "Bedroom", "bedroom", air)
    for key, room, role in [
        ("front-door", "Hallway", "exit_door"),
        ("back-door", "Kitchen", "exit_door"),
        ("fridge-door", "Kitchen", "kitchen"),
    ]:
        add(key, "contact", room, role, [Quantity.CONTACT])
    add("bathroom-cord", "button", "Bathroom", "bathroom", [Quantity.BUTTON])
    add("bedroom-cord", "button", "Bedroom", "bedroom", [Quantity.BUTTON])
    add("kitchen-leak", "leak", "Kitchen", "kitchen", [Quantity.LEAK])
    add("bathroom-leak", "leak", "Bathroom", "bathroom", [Quantity.LEAK])
    add("bed-mat", "pressure_mat", "Bedroom", "bedroom", [Quantity.OCCUPANCY])
    add("chair-mat", "pressure_mat", "Living room", "living_room", [Quantity.OCCUPANCY])
    for i, sensor in enumerate(sensors):  # BLE sensors need an address; any unique one will do
        sensor["address"] = f"A4:C1:38:00:00:{i:02X}"
    config = HubConfig.model_validate({"hub": {"name": "bench"}, "sensors": sensors})
    return config, reporting


# Share of readings by quantity, roughly as a hub's report policy passes them on.
_WEIGHTS = {
    Quantity.TEMPERATURE: 24,
    Quantity.HUMIDITY: 24,
    Quantity.MOTION: 25,
    Quantity.CO2: 6,
    Quantity.PM25: 6,
    Quantity.BATTERY: 2,
    Quantity.CONTACT: 6,
    Quantity.OCCUPANCY: 5,
    Quantity.BUTTON: 0.02,
    Quantity.LEAK: 0.02,
}


def _value(quantity: Quantity, t: float, rng: random.Random) -> float:
    hour = ((t - T0) / 3600.0 + 8.0) % 24.0
    day = math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
    if quantity is Quantity.TEMPERATURE:
        return 17.5 + 3.0 * day + rng.gauss(0, 0.3)  # cold nights, warm afternoons
    if quantity is Quantity.HUMIDITY:
        shower = 35.0 if 7.0 <= hour < 7.6 else 0.0
        return min(99.0, 55.0 + 8.0 * day + shower + rng.gauss(0, 2))
    if quantity is Quantity.CO2:
        return 700.0 + (1000.0 if 19.0 <= hour < 22.0 else 0.0) + rng.gauss(0, 80)
    if quantity is Quantity.PM25:
        return max(0.0, 9.0 + 8.0 * day + rng.gauss(0, 3))
    if quantity is Quantity.BATTERY:
        return max(0.0, 100.0 - (t - T0) / 86400.0 * 8.0)
    return float(rng.random() < 0.5)


def build_readings(count: int, seconds_per_reading: float = 1.0, seed: int = 7) -> list[Reading]:
    rng = random.Random(seed)
    _, reporting = _home()
    by_quantity: dict[Quantity, list[str]] = {}
    for sid, quantities in reporting:
        for quantity in quantities:
            by_quantity.setdefault(quantity, []).append(sid)
    quantities = list(_WEIGHTS)
    picks = rng.choices(quantities, weights=[_WEIGHTS[q] for q in quantities], k=count)
    readings = []
    for i, quantity in enumerate(picks):
        t = i * seconds_per_reading
        sid = rng.choice(by_quantity[quantity])
        stamp = Stamp(T0 + t, True, t)
        readings.append(Reading(sid, quantity, _value(quantity, T0 + t, rng), stamp))
    return readings


def checks_throughput(count: int = 400_000, seconds_per_reading: float = 1.0) -> dict[str, Any]:
    """All registered checks on one core: readings/s including a tick every simulated minute.

    At one reading a second the run covers `count` seconds of a busy home (400,000: 4.6
    days); a real hub sees a few thousand readings a day."""
    config, _ = _home()
    readings = build_readings(count, seconds_per_reading)
    alerts: list[Alert] = []
    engine = CheckEngine(config, VirtualClock(T0), alerts.append)
    tick_every = 60.0
    next_tick = tick_every
    ticks = 0
    began = time.perf_counter()
    for reading in readings:
        if reading.stamp.monotonic >= next_tick:
            engine.tick(Stamp(T0 + next_tick, True, next_tick))
            next_tick += tick_every
            ticks += 1
        engine.on_reading(reading)
    seconds = time.perf_counter() - began

    bare = CheckEngine(config, VirtualClock(T0), alerts.append)
    began = time.perf_counter()
    for reading in readings:
        bare.on_reading(reading)
    reading_only_s = time.perf_counter() - began
    return {
        "readings": count,
        "sensors": len(config.sensors),
        "checks": len(engine.checks),
        "simulated_days": round(count * seconds_per_reading / 86400.0, 1),
        "ticks": ticks,
        "seconds": round(seconds, 3),
        "readings_per_s": round(count / seconds),
        "readings_per_s_without_ticks": round(count / reading_only_s),
        "us_per_reading": round(seconds / count * 1e6, 2),
        "alerts": len(alerts),
        "target_readings_per_s": 100_000,
    }


if __name__ == "__main__":
    for key, value in checks_throughput().items():
        print(f"{key:32} {value}")
