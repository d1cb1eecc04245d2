"""The event model: what flows from drivers through checks into the store and up to the council.

Quantities and units are one closed vocabulary so a typo is a type error, not a silent new
series on the council's side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

JSONValue = Any  # what json.dumps accepts; evidence and details are free-form but serialisable


class Unit(StrEnum):
    CELSIUS = "°C"
    PERCENT = "%"
    PPM = "ppm"
    MICROGRAMS_PER_M3 = "µg/m³"
    HECTOPASCAL = "hPa"
    LUX = "lx"
    VOLT = "V"
    DBM = "dBm"
    STATE = "state"  # 0/1 binary states: see Quantity for what 1 means


class Quantity(StrEnum):
    """What a reading measures. Binary quantities use 1 for the "active" state named here."""

    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    CO2 = "co2"
    PM25 = "pm25"
    PRESSURE = "pressure"  # atmospheric pressure, not a pressure mat (that is OCCUPANCY)
    ILLUMINANCE = "illuminance"
    MOTION = "motion"  # 1 = movement detected
    CONTACT = "contact"  # 1 = open (door or window)
    BUTTON = "button"  # 1 = pressed (pull cord, panic button)
    OCCUPANCY = "occupancy"  # 1 = someone on the bed or chair pressure mat
    LEAK = "leak"  # 1 = water detected
    BATTERY = "battery"
    VOLTAGE = "voltage"
    RSSI = "rssi"

    @property
    def unit(self) -> Unit:
        return QUANTITY_UNITS[self]

    @property
    def is_binary(self) -> bool:
        return QUANTITY_UNITS[self] is Unit.STATE


QUANTITY_UNITS: Mapping[Quantity, Unit] = {
    Quantity.TEMPERATURE: Unit.CELSIUS,
    Quantity.HUMIDITY: Unit.PERCENT,
    Quantity.CO2: Unit.PPM,
    Quantity.PM25: Unit.MICROGRAMS_PER_M3,
    Quantity.PRESSURE: Unit.HECTOPASCAL,
    Quantity.ILLUMINANCE: Unit.LUX,
    Quantity.MOTION: Unit.STATE,
    Quantity.CONTACT: Unit.STATE,
    Quantity.BUTTON: Unit.STATE,
    Quantity.OCCUPANCY: Unit.STATE,
    Quantity.LEAK: Unit.STATE,
    Quantity.BATTERY: Unit.PERCENT,
    Quantity.VOLTAGE: Unit.VOLT,
    Quantity.RSSI: Unit.DBM,
}


# What a sensor in a home can report at all (inclusive), for every driver's sanity check.
# Wide on purpose: a saturated sensor at the top of its range is real; a 160 °C living room
# is a corrupt advert or a bad line in a file.
PLAUSIBLE: Mapping[Quantity, tuple[float, float]] = {
    Quantity.TEMPERATURE: (-80.0, 150.0),
    Quantity.HUMIDITY: (0.0, 100.0),
    Quantity.CO2: (0.0, 100_000.0),
    Quantity.PM25: (0.0, 10_000.0),
    Quantity.PRESSURE: (300.0, 1200.0),
    Quantity.ILLUMINANCE: (0.0, 200_000.0),
    Quantity.BATTERY: (0.0, 100.0),
    Quantity.VOLTAGE: (0.0, 60.0),
    Quantity.RSSI: (-150.0, 20.0),
}


class Priority(IntEnum):
    """Upload order: higher goes first. Alerts must overtake any backlog of readings."""

    ROUTINE = 0
    SYSTEM = 1
    ALERT = 2


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    URGENT = "urgent"


class AlertState(StrEnum):
    RAISED = "raised"
    ACTIVE = "active"  # an update while still open (escalation, fresh evidence)
    CLEARED = "cleared"


class SystemKind(StrEnum):
    """Events the hub itself records about its own health and its buffer."""

    GAP = "gap"  # routine readings dropped to stay within the storage quota
    STORAGE_FULL = "storage_full"  # the disk is full: the buffer degrades (hub.store.diskfull)
    STORAGE_OK = "storage_ok"  # the disk has room again after STORAGE_FULL
    STORE_RECOVERED = "store_recovered"  # a damaged buffer was moved aside and a new one begun
    HUB_STARTED = "hub_started"
    DRIVER_FAILED = "driver_failed"  # a driver stopped; its sensors are unread until restarted
    # Events the council refused for their content (or the hub could not encode): moved out
    # of the outbox so they stop blocking everything behind them; details {seqs, reason}.
    UPLOAD_REJECTED = "upload_rejected"
    # Events stamped before the clock was synchronised, already uploaded, whose wall times
    # are now known: details {boot_id, origin, source, seq_ranges}; the council sets each
    # one's wall_time to origin + monotonic (hub.store.clockfix).
    CLOCK_CORRECTED = "clock_corrected"


@dataclass(frozen=True, slots=True)
class Stamp:
    """When something happened, as well as a clock-less Pi can know it.

    `wall_time` is Unix seconds from the wall clock, which may be wrong until NTP has synced
    (`clock_synced`). `monotonic` is seconds on the boot's monotonic clock: never jumps, but
    only comparable within one boot. Ordering always uses the store's sequence, not either.

    `clock_corrected`: stamped while the clock was not synchronised (`clock_synced` stays
    False), and `wall_time` since rewritten as this boot's true origin + `monotonic`, once a
    later sync revealed that origin (hub.store.clockfix).
    """

    wall_time: float
    clock_synced: bool
    monotonic: float
    clock_corrected: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    quantity: Quantity
    value: float
    stamp: Stamp

    @property
    def unit(self) -> Unit:
        return self.quantity.unit

    @property
    def priority(self) -> Priority:
        return Priority.ROUTINE


@dataclass(frozen=True, slots=True)
class Alert:
    """One step in an alert's lifecycle (raised, active, cleared) for one condition.

    A condition is identified by (check, room, sensor_id); `start` and `end` are wall-clock
    times of the condition itself, `stamp` is when this lifecycle event was emitted.
    """

    check: str
    severity: Severity
    state: AlertState
    room: str
    sensor_id: str | None
    start: float
    end: float | None
    evidence: Mapping[str, JSONValue]
    stamp: Stamp

    @property
    def priority(self) -> Priority:
        return Priority.ALERT

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.check, self.room, self.sensor_id or "")


@dataclass(frozen=True, slots=True)
class SystemEvent:
    kind: SystemKind
    details: Mapping[str, JSONValue]
    stamp: Stamp

    @property
    def priority(self) -> Priority:
        return Priority.SYSTEM


Event = Reading | Alert | SystemEvent


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store holds it: with its sequence number, the order that counts."""

    seq: int
    event: Event
    synced: bool = field(default=False)

    def to_record(self) -> dict[str, JSONValue]:
        """A flat JSON-ready dict: the shape used by exports and the wire."""
        return {"seq": self.seq, **event_to_record(self.event)}


def event_to_record(event: Event) -> dict[str, JSONValue]:
    stamp = event.stamp
    base: dict[str, JSONValue] = {
        "wall_time": stamp.wall_time,
        "clock_synced": stamp.clock_synced,
        "monotonic": stamp.monotonic,
    }
    if stamp.clock_corrected:
        # Only when set: an uncorrected record keeps the exact shape older hubs sent, so a
        # batch re-sent across a software upgrade is still the same content to the council.
        base["clock_corrected"] = True
    if isinstance(event, Reading):
        return {
            "kind": "reading",
            **base,
            "sensor_id": event.sensor_id,
            "quantity": event.quantity.value,
            "value": event.value,
            "unit": event.unit.value,
        }
    if isinstance(event, Alert):
        return {
            "kind": "alert",
            **base,
            "check": event.check,
            "severity": event.severity.value,
            "state": event.state.value,
            "room": event.room,
            "sensor_id": event.sensor_id,
            "start": event.start,
            "end": event.end,
            "evidence": dict(event.evidence),
        }
    return {"kind": "system", **base, "system": event.kind.value, "details": dict(event.details)}
