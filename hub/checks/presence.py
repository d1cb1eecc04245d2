"""Where the person is, as far as the activity checks need it: at home or out, and whether
a quiet motion sensor may be a dead one rather than a still person.

"Out" is the exit door moving with no motion indoors since (beyond a short grace for the
hallway PIR that sees the person leave). Going out for hours must not read as inactivity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hub.checks.base import CheckContext
from hub.checks.routine import ON
from hub.config import RoomRole, SensorConfig, SensorKind
from hub.events import Quantity, Reading

DOOR_GRACE_S = 120.0  # motion this soon after the door is the person leaving, not staying
LOW_BATTERY_PCT = 25.0  # a quiet motion sensor on a battery this low is suspected dead
SUSPECT_QUIET_S = 1800.0  # ... once quiet for this long
MISSED_HEARTBEAT_S = 1800.0  # quiet this long past its usual longest gap: suspected dead
HEARTBEAT_MAX_S = 6 * 3600.0  # only for sensors whose usual longest gap is this short


class Whereabouts:
    """Last activity, last motion and last exit-door movement, on the timeline."""

    __slots__ = ("door_t", "last_motion_t", "last_t", "last_wall")

    def __init__(self) -> None:
        self.last_t: float | None = None
        self.last_wall: float | None = None
        self.last_motion_t: float | None = None
        self.door_t: float | None = None

    def see(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        if self.last_t is None or t >= self.last_t:
            self.last_t, self.last_wall = t, reading.stamp.wall_time
        if reading.quantity is Quantity.MOTION and reading.value >= ON:
            self.last_motion_t = t
        elif reading.quantity is Quantity.CONTACT and sensor.role is RoomRole.EXIT_DOOR:
            self.door_t = t

    @property
    def out(self) -> bool:
        door = self.door_t
        if door is None:
            return False
        motion = self.last_motion_t
        return motion is None or motion <= door + DOOR_GRACE_S

    def state(self) -> dict[str, Any]:
        return {
            "last_t": self.last_t,
            "last_wall": self.last_wall,
            "last_motion_t": self.last_motion_t,
            "door_t": self.door_t,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        def opt(key: str) -> float | None:
            value = state[key]
            return None if value is None else float(value)

        self.last_t = opt("last_t")
        self.last_wall = opt("last_wall")
        self.last_motion_t = opt("last_motion_t")
        self.door_t = opt("door_t")


def motion_sensors(ctx: CheckContext) -> list[str]:
    return [s.id for s in ctx.sensors.values() if s.kind is SensorKind.MOTION]


def suspect_sensors(ctx: CheckContext, sensor_ids: list[str], t: float) -> Iterator[str]:
    """Motion sensors that may have stopped reporting: judged silent by DeviceHealth, or
    quiet on a nearly flat battery, or quiet well past their own usual longest gap (a
    missed heartbeat). DeviceHealth waits for several missed intervals before it calls a
    sensor silent; an inactivity alarm cannot wait that long to be sure, so it asks sooner."""
    health = ctx.health
    for sid in sensor_ids:
        if health.is_silent(sid):
            yield sid
            continue
        last = health.last_heard(sid)
        if last is None:
            continue
        quiet = t - last
        rec = health.record(sid)
        battery = None if rec is None else rec.battery
        if battery is not None and battery < LOW_BATTERY_PCT and quiet > SUSPECT_QUIET_S:
            yield sid
            continue
        usual = health.usual_gap_s(sid)
        if usual is not None and usual <= HEARTBEAT_MAX_S and quiet > usual + MISSED_HEARTBEAT_S:
            yield sid
