"""The hubs' health reports: checked on ingest, summarised for the fleet view.

A report arrives in every upload (see the contract in sync.protocol's users); the council keeps
one merged report per hub (each report replaces the keys it carries), in the hubs table, so
the fleet view is one read of that table and never a scan of the events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sync.council.errors import StoreError
from sync.health import STORAGE_STATES

SILENT_AFTER_S = 6 * 3600.0  # last_seen older than this at the hub's last contact: silent
LOW_BATTERY_PERCENT = 15.0
# Storage is "low" below this much free disk (provisioning.doctor's red line too): an OS
# update or a burst of logs takes tens of MB, so under 100 MiB the card can fill within a day.
# Also "low" when the disk has less room than the buffer may still take up to its quota: the
# card will fill before the quota's pruning starts, and the hub will run degraded (disk full).
DISK_LOW_BYTES = 100 * 1024 * 1024
Storage = Literal["ok", "low", "full"]
_MAX_INT = 2**63 - 1
_MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class SilentSensor:
    sensor_id: str
    room: str | None
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class LowBattery:
    sensor_id: str
    room: str | None
    battery: float


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """One hub as the fleet view shows it; health fields are None until a report arrives.
    `config_version` is the council's current version for the hub (what it should run)."""

    hub_id: str
    name: str | None
    enrolled_at: float
    last_contact: float | None
    software_version: str | None
    queue_depth: int | None
    uptime_s: float | None
    disk_free_bytes: int | None
    clock_synced: bool | None
    clock_offset_s: float | None
    config_version: int
    high_water: int
    events_held: int
    silent_sensors: tuple[SilentSensor, ...]
    low_batteries: tuple[LowBattery, ...]
    # "full": the hub says its disk is full and it is pruning to keep writing (since
    # `storage_since`, hub clock); "low": little room left (see DISK_LOW_BYTES); None: no
    # report with the disk's figures yet.
    storage: Storage | None = None
    storage_since: float | None = None
    dropped_readings: int | None = None  # lost for lack of space since the hub started


# -- validation ------------------------------------------------------------------------------


def _text(value: Any, where: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise StoreError(f"{where}: expected a string of at most {limit} characters")
    return value


def _number(value: Any, where: str) -> float:
    # bool is an int in Python but never a number on the wire; NaN/inf break PostgreSQL JSONB.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"{where}: expected a finite number, got {value!r:.40}")
    return float(value)


def _optional_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise StoreError(f"{where}: expected a non-negative integer, got {value!r:.40}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise StoreError(f"{where}: expected true or false, got {value!r:.40}")
    return value


def _storage_state(value: Any, where: str) -> str:
    if value not in STORAGE_STATES:
        raise StoreError(f"{where}: expected one of {', '.join(STORAGE_STATES)}, got {value!r:.40}")
    return str(value)


def _storage(value: Any, where: str) -> dict[str, Any] | None:
    """The storage section checked; None (left out) when its state is one this council
    does not know yet: a newer hub's state must not refuse its whole upload."""
    if not isinstance(value, Mapping):
        raise StoreError(f"{where}: expected an object")
    state = value.get("state")
    if isinstance(state, str) and state not in STORAGE_STATES:
        return None
    return {
        key: check(value[key], f"{where}.{key}") for key, check in _STORAGE.items() if key in value
    }


_Check = Callable[[Any, str], Any]

_TOP: dict[str, _Check] = {
    "software_version": lambda v, w: _text(v, w, 64),
    "uptime_s": _number,
    "queue_depth": _count,
    "disk_free_bytes": _count,
    "clock_synced": _flag,
    "config_version": _count,
    "storage": _storage,
}
# The hub's storage section (hub.store.diskfull.StorageGuard.report).
_STORAGE: dict[str, _Check] = {
    "state": _storage_state,
    "since": _optional_number,
    "failed_commits": _count,
    "dropped_readings": _count,
    "pruned_events": _count,
    "buffer_bytes": _count,
    "quota_bytes": _count,
    "reserve_bytes": _count,
}
_SENSOR: dict[str, _Check] = {
    "room": _text,
    "kind": _text,
    "last_seen": _optional_number,
    "battery": _optional_number,
    "silent": _flag,
}


def validate_health(health: Any) -> dict[str, Any]:
    """The report with only known keys, each of the right type; raises StoreError naming the
    first wrong field. Unknown keys are dropped, so a newer hub never breaks an older council
    (and nothing unchecked reaches the database)."""
    if not isinstance(health, Mapping):
        raise StoreError("health: expected an object")
    clean: dict[str, Any] = {
        key: check(health[key], f"health.{key}") for key, check in _TOP.items() if key in health
    }
    if clean.get("storage", {}) is None:
        del clean["storage"]  # a state this council does not know: see _storage
    if "sensors" in health:
        sensors = health["sensors"]
        if not isinstance(sensors, Mapping):
            raise StoreError("health.sensors: expected an object of sensor id -> object")
        clean["sensors"] = {
            _text(sensor_id, "health.sensors key", 128): _sensor(report, sensor_id)
            for sensor_id, report in sensors.items()
        }
    return clean


def _sensor(report: Any, sensor_id: str) -> dict[str, Any]:
    where = f"health.sensors[{sensor_id!r}]"
    if not isinstance(report, Mapping):
        raise StoreError(f"{where}: expected an object")
    return {
        key: check(report[key], f"{where}.{key}") for key, check in _SENSOR.items() if key in report
    }


# -- the fleet view --------------------------------------------------------------------------


def fleet_entry(row: Mapping[str, Any]) -> FleetEntry:
    """A FleetEntry from one row of the hubs table (its columns by name)."""
    health: Mapping[str, Any] = row["health"] or {}
    silent, low = _sensor_findings(health, row["health_at"], row["clock_offset_s"])
    storage: Mapping[str, Any] = health.get("storage") or {}
    return FleetEntry(
        hub_id=row["hub_id"],
        name=row["name"],
        enrolled_at=row["enrolled_at"],
        last_contact=row["last_contact"],
        software_version=row["software_version"],
        queue_depth=health.get("queue_depth"),
        uptime_s=health.get("uptime_s"),
        disk_free_bytes=health.get("disk_free_bytes"),
        clock_synced=health.get("clock_synced"),
        clock_offset_s=row["clock_offset_s"],
        config_version=row["config_version"],
        high_water=row["high_water"],
        events_held=row["events_held"],
        silent_sensors=silent,
        low_batteries=low,
        storage=storage_flag(health),
        storage_since=storage.get("since") if storage.get("state") == "full" else None,
        dropped_readings=storage.get("dropped_readings"),
    )


def storage_flag(health: Mapping[str, Any]) -> Storage | None:
    """ "full" when the hub says so; "low" under DISK_LOW_BYTES free, or when the disk has
    less room than the buffer may still take up to its quota; else "ok". None: unknown."""
    storage: Mapping[str, Any] = health.get("storage") or {}
    if storage.get("state") == "full":
        return "full"
    free = health.get("disk_free_bytes")
    if free is None:
        return None
    still_to_grow = storage.get("quota_bytes", 0) - storage.get("buffer_bytes", 0)
    return "low" if free < max(DISK_LOW_BYTES, still_to_grow) else "ok"


def _sensor_findings(
    health: Mapping[str, Any], reported_at: float | None, clock_offset_s: float | None
) -> tuple[tuple[SilentSensor, ...], tuple[LowBattery, ...]]:
    """Silent: the hub says so, or last_seen is over 6 h older than the hub's clock at the
    report. last_seen is hub wall-clock time, so the council's receive time is shifted by the
    measured offset first; with the hub's clock unsynced that comparison means nothing and only
    the hub's own judgement counts."""
    judge_age = reported_at is not None and health.get("clock_synced") is not False
    hub_now = (reported_at or 0.0) - (clock_offset_s or 0.0)
    silent: list[SilentSensor] = []
    low: list[LowBattery] = []
    sensors: Mapping[str, Mapping[str, Any]] = health.get("sensors") or {}
    for sensor_id in sorted(sensors):
        report = sensors[sensor_id]
        room, last_seen, battery = (
            report.get("room"),
            report.get("last_seen"),
            report.get("battery"),
        )
        stale = judge_age and last_seen is not None and hub_now - last_seen > SILENT_AFTER_S
        if report.get("silent") is True or stale:
            silent.append(SilentSensor(sensor_id, room, last_seen))
        if battery is not None and battery < LOW_BATTERY_PERCENT:
            low.append(LowBattery(sensor_id, room, battery))
    return tuple(silent), tuple(low)
