"""Which sensor values are worth a row in the buffer.

A thermometer advertising every 2 s would write 43,000 rows a day. A value is stored when it
moved by at least its quantity's deadband since the last *stored* value (comparing with the
last stored, not the last seen, so a slow drift is still caught), when a binary state changes,
or when the last stored value is older than the heartbeat, so a quiet sensor is still heard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hub.config import ReportSection
from hub.events import Quantity

# Decoders round to a few decimals and floats do not subtract exactly (21.3 - 21.1 is
# 0.1999...), so a change of exactly one deadband must not be lost to the last bit.
_EPSILON = 1e-9


class ReportPolicy:
    """Per (sensor, quantity): store on a change beyond the deadband, or on the heartbeat.

    Non-binary quantities without a configured deadband are stored on any change.
    """

    __slots__ = ("_stored", "_thresholds", "heartbeat_s")

    def __init__(self, heartbeat_s: float, deadbands: Mapping[Quantity, float]) -> None:
        if not (math.isfinite(heartbeat_s) and heartbeat_s > 0):
            raise ValueError(f"heartbeat must be a positive number of seconds, got {heartbeat_s}")
        for quantity, band in deadbands.items():
            if not (math.isfinite(band) and band >= 0):
                raise ValueError(f"deadband for {quantity} must be >= 0, got {band}")
        self.heartbeat_s = float(heartbeat_s)
        # None: a binary state, stored on every change whatever a deadband says.
        self._thresholds: dict[Quantity, float | None] = {
            q: None if q.is_binary else float(deadbands.get(q, 0.0)) - _EPSILON for q in Quantity
        }
        # sensor id -> quantity -> (last stored value, monotonic time it was stored)
        self._stored: dict[str, dict[Quantity, tuple[float, float]]] = {}

    @classmethod
    def from_config(cls, report: ReportSection) -> ReportPolicy:
        bands = report.deadband
        deadbands = {
            Quantity(name): float(getattr(bands, name)) for name in type(bands).model_fields
        }
        return cls(report.heartbeat_min * 60.0, deadbands)

    def should_store(
        self, sensor_id: str, quantity: Quantity, value: float, now_monotonic: float
    ) -> bool:
        """Decide, and if the answer is yes remember `value` as the last stored one."""
        if value != value:  # NaN: never a value worth storing, and it would poison the deadband
            return False
        stored = self._stored.get(sensor_id)
        if stored is None:
            stored = self._stored[sensor_id] = {}
        last = stored.get(quantity)
        if last is not None and now_monotonic - last[1] < self.heartbeat_s:
            threshold = self._thresholds[quantity]
            if threshold is None:
                if value == last[0]:
                    return False
            else:
                delta = abs(value - last[0])
                if delta == 0.0 or delta < threshold:
                    return False
        stored[quantity] = (value, now_monotonic)
        return True

    def due_at(self, sensor_id: str) -> float:
        """The monotonic time at which the oldest stored value of this sensor needs its
        heartbeat (infinity if nothing is stored yet). Lets a caller skip the policy entirely
        until then."""
        stored = self._stored.get(sensor_id)
        if not stored:
            return math.inf
        return min(at for _, at in stored.values()) + self.heartbeat_s

    def forget(self, sensor_id: str) -> None:
        """Drop what was stored for a sensor (unpaired, or re-paired as a different device)."""
        self._stored.pop(sensor_id, None)
