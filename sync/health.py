"""The health report every upload carries (the contract's `health` dict), built on the hub.

The council rejects a batch whose health has a wrong type (422), which would stall the whole
outbox, so what the runtime supplies is checked here and bad entries are dropped with a log
line instead of being sent.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

log = logging.getLogger(__name__)


class SensorEntry(TypedDict):
    """One sensor as the fleet view shows it. `last_seen` is Unix seconds or None (never
    heard since start); `battery` is percent or None (not reported); `silent` is the hub's
    own judgement (the sensor_silent check)."""

    room: str
    kind: str
    last_seen: float | None
    battery: float | None
    silent: bool


class SensorHealthSource(Protocol):
    """What the runtime supplies (e.g. hub.sensor_health.SensorHealth.report with the
    store's open alerts): sensor id -> the SensorEntry keys. Called once per upload from a
    worker thread, so it must only read state, and be quick. Entries are checked here."""

    def __call__(self) -> Mapping[str, Mapping[str, Any]]: ...


class StorageSource(Protocol):
    """The buffer's storage section (hub.store.Store.storage_report): state "ok" or "full"
    (the disk refused writes and the buffer is pruning to keep writing), since when, and
    counts since the service started. Called once per upload from a worker thread."""

    def __call__(self) -> Mapping[str, Any]: ...


STORAGE_STATES = ("ok", "full")
_STORAGE_COUNTS = (
    "failed_commits",
    "dropped_readings",
    "pruned_events",
    "buffer_bytes",
    "quota_bytes",
    "reserve_bytes",
)


def software_version() -> str:
    from hub import __version__

    return __version__


def _clock_synced() -> bool:
    from hub.clock import kernel_clock_synchronised

    return kernel_clock_synchronised()


@dataclass
class HealthReporter:
    data_dir: Path
    sensors: SensorHealthSource | None = None
    storage: StorageSource | None = None
    software_version: str = field(default_factory=software_version)
    clock_synced: Callable[[], bool] = _clock_synced
    monotonic: Callable[[], float] = time.monotonic
    started_at: float = field(default=math.nan)  # on `monotonic`; NaN: when built
    # False for a one-off command (hearth sync now): it knows no service uptime, and the
    # sensors and the storage state are the running service's to report.
    service: bool = True

    def __post_init__(self) -> None:
        if math.isnan(self.started_at):
            self.started_at = self.monotonic()

    def report(self, queue_depth: int, config_version: int | None = None) -> dict[str, Any]:
        """The health dict for one batch. Never raises: a part that cannot be read is left
        out (every key is optional in the contract)."""
        health: dict[str, Any] = {
            "software_version": self.software_version,
            "queue_depth": int(queue_depth),
        }
        if self.service:
            health["uptime_s"] = max(0.0, self.monotonic() - self.started_at)
        try:
            health["disk_free_bytes"] = shutil.disk_usage(self.data_dir).free
        except OSError as exc:
            log.debug("disk free of %s unknown: %s", self.data_dir, exc)
        try:
            health["clock_synced"] = bool(self.clock_synced())
        except Exception:
            log.exception("could not read the clock state for the health report")
        if config_version is not None:
            health["config_version"] = int(config_version)
        if self.sensors is not None and self.service:
            try:
                supplied = self.sensors()
            except Exception:
                log.exception("the sensor health source failed; sending health without it")
            else:
                health["sensors"] = checked_sensors(supplied)
        if self.storage is not None and self.service:
            try:
                storage = checked_storage(self.storage())
            except Exception:
                log.exception("the storage state could not be read; sending health without it")
            else:
                if storage:
                    health["storage"] = storage
        return health


def _number_or_none(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    if not math.isfinite(value):
        raise TypeError(f"{value!r} is not finite")
    return float(value)


def checked_sensors(sensors: Mapping[str, Mapping[str, Any]]) -> dict[str, SensorEntry]:
    """Sensor entries in exactly the contract's types; malformed ones are dropped, logged."""
    out: dict[str, SensorEntry] = {}
    for sensor_id, entry in sensors.items():
        try:
            if not isinstance(sensor_id, str) or not isinstance(entry, Mapping):
                raise TypeError("not a sensor id and a table")
            room, kind, silent = entry.get("room"), entry.get("kind"), entry.get("silent", False)
            if not isinstance(room, str) or not isinstance(kind, str):
                raise TypeError("room and kind must be text")
            if not isinstance(silent, bool):
                raise TypeError("silent must be true or false")
            out[sensor_id] = SensorEntry(
                room=room,
                kind=kind,
                last_seen=_number_or_none(entry.get("last_seen")),
                battery=_number_or_none(entry.get("battery")),
                silent=silent,
            )
        except TypeError as exc:
            log.warning("sensor %r left out of the health report: %s", sensor_id, exc)
    return out


def checked_storage(storage: Mapping[str, Any]) -> dict[str, Any]:
    """The storage section in exactly the contract's types; a wrong entry is left out, logged
    (the council would refuse the whole batch for it). Empty without a valid state."""
    state = storage.get("state")
    if state not in STORAGE_STATES:
        log.warning("storage state %r left out of the health report", state)
        return {}
    out: dict[str, Any] = {"state": state}
    try:
        out["since"] = _number_or_none(storage.get("since"))
    except TypeError as exc:
        log.warning("storage since left out of the health report: %s", exc)
    for key in _STORAGE_COUNTS:
        value = storage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
            out[key] = value
        elif key in storage:
            log.warning("storage %s left out of the health report: %r", key, value)
    return out
