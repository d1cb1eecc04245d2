"""What the hub last heard from each sensor, for the health report in every upload.

The council's fleet view shows silent sensors and low batteries across hundreds of homes;
this keeps the two facts it needs per sensor (when last heard, latest battery level) in a
dict updated on every reading, which costs one lookup on the hot path. Whether a sensor is
*silent* is the anomaly check's judgement (it knows each sensor's usual quiet gaps), so the
report takes it from the open `sensor_silent` alerts rather than guessing again here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.config import SensorConfig
from hub.events import Quantity, Reading

SILENT_CHECK = "sensor_silent"


@dataclass(slots=True)
class _Heard:
    room: str
    kind: str
    last_seen: float | None = None
    battery: float | None = None


class SensorHealth:
    """Last-heard time and battery per configured sensor (and any unconfigured one heard)."""

    def __init__(self, sensors: Iterable[SensorConfig]) -> None:
        self._by_id = {s.id: _Heard(room=s.room, kind=s.kind.value) for s in sensors}

    def on_reading(self, reading: Reading) -> None:
        heard = self._by_id.get(reading.sensor_id)
        if heard is None:
            heard = self._by_id[reading.sensor_id] = _Heard(room="", kind="unknown")
        heard.last_seen = reading.stamp.wall_time
        if reading.quantity is Quantity.BATTERY:
            heard.battery = reading.value

    def report(self, open_alerts: Iterable[Mapping[str, Any]] = ()) -> dict[str, dict[str, Any]]:
        """The health report's `sensors` map; `open_alerts` as `Store.open_alerts()` gives."""
        silent = {a["sensor_id"] for a in open_alerts if a.get("check") == SILENT_CHECK}
        return {
            sensor_id: {
                "room": heard.room,
                "kind": heard.kind,
                "last_seen": heard.last_seen,
                "battery": heard.battery,
                "silent": sensor_id in silent,
            }
            for sensor_id, heard in self._by_id.items()
        }
