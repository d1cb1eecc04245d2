"""The hub's own JSON-lines export: one hub.events.StoredEvent.to_record() object per line.

Readings are replayed with the stamp they were recorded with (wall time and whether the clock
was synchronised then); alerts and system events are the hub's own conclusions, not input, so
they are skipped and counted. The recording hub's monotonic time belongs to its boot and is
not carried over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from drivers.replay.records import Record, ReplayStats, SensorKey, numbered_lines
from drivers.replay.values import bad_time, implausible
from hub.events import Quantity

SENSOR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # the pattern hub.config enforces
_QUANTITIES = {quantity.value: quantity for quantity in Quantity}
_NOT_READINGS = ("alert", "system")


class ExportedReading(NamedTuple):
    t: float
    sensor_id: str
    quantity: Quantity
    value: float
    synced: bool


def _number(record: dict[str, Any], name: str) -> float:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name!r} must be a number, got {json.dumps(value)}")
    return float(value)


def parse_line(text: str) -> ExportedReading | None:
    """The reading on one line, None for another kind of event; ValueError if it is bad."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = record.get("kind")
    if kind in _NOT_READINGS:
        return None
    if kind != "reading":
        raise ValueError(f"unknown event kind {json.dumps(kind)}")
    t = _number(record, "wall_time")
    sensor_id = record.get("sensor_id")
    if not isinstance(sensor_id, str) or not SENSOR_ID.fullmatch(sensor_id):
        raise ValueError(f"'sensor_id' {json.dumps(sensor_id)} is not a valid sensor id")
    named = record.get("quantity")
    quantity = _QUANTITIES.get(named) if isinstance(named, str) else None
    if quantity is None:
        raise ValueError(f"unknown quantity {json.dumps(named)}")
    value = _number(record, "value")
    unit = record.get("unit", quantity.unit.value)
    if unit != quantity.unit.value:
        raise ValueError(f"unit {json.dumps(unit)} is not the unit of {quantity}")
    synced = record.get("clock_synced", True)
    if not isinstance(synced, bool):
        raise ValueError(f"'clock_synced' must be true or false, got {json.dumps(synced)}")
    problem = bad_time(t) or implausible(quantity, value)
    if problem is not None:
        raise ValueError(problem)
    return ExportedReading(t, sensor_id, quantity, value, synced)


def read_jsonl(path: str, stats: ReplayStats) -> Iterator[Record]:
    """The readings of one export, in file order; other events are counted as skipped."""
    for number, text in numbered_lines(path, stats):
        if not text.strip():
            continue
        try:
            reading = parse_line(text)
        except ValueError as exc:
            stats.bad_line(path, number, str(exc), text)
            continue
        if reading is None:
            stats.skipped += 1
            continue
        key = SensorKey(reading.sensor_id, reading.sensor_id)
        yield Record(reading.t, key, reading.quantity, reading.value, reading.synced, path, number)
