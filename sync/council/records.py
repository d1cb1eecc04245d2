"""Checks on what hubs send, before any of it reaches the database.

A refused record refuses its whole batch with a StoreError naming what was wrong, so a bad
upload is a clear 4xx and changes nothing, never a database error halfway through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from sync.council.errors import StoreError

KINDS = ("reading", "alert", "system")


def row_for(hub_id: str, record: Mapping[str, Any], received_at: float) -> dict[str, Any]:
    """The events-table row for one wire record (its flat dict, kept whole as `body`)."""
    try:
        seq = record["seq"]
        kind = record["kind"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise StoreError(f"seq must be a non-negative integer, got {seq!r}")
        if kind not in KINDS:
            raise StoreError(f"unknown kind {kind!r}")
        if seq >= 2**63:
            raise StoreError(f"seq out of range: {seq}")
        value = record.get("value") if kind == "reading" else None
        return {
            "hub_id": hub_id,
            "seq": seq,
            "kind": kind,
            "wall_time": finite(record["wall_time"]),
            "clock_synced": bool(record["clock_synced"]),
            "monotonic": finite(record["monotonic"]),
            "sensor_id": short_text(record.get("sensor_id"), 128),
            "quantity": short_text(record.get("quantity"), 32) if kind == "reading" else None,
            "value": None if value is None else finite(value),
            "received_at": received_at,
            "body": dict(record),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"malformed record: {exc!r}") from exc


def finite(value: Any) -> float:
    """Engines disagree on NaN and infinity (PostgreSQL's JSONB refuses them): refuse both."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"not a finite number: {value!r}")
    return float(value)


def short_text(value: Any, limit: int) -> str | None:
    """A column bound checked here, so an over-long id is a refused batch, not a DB error."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise StoreError(f"not a string of at most {limit} characters: {value!r:.80}")
    return value


def json_document(value: Any, where: str) -> Any:
    """`value` as it will read back from the database (tuples become lists, keys strings);
    StoreError when it is not JSON or holds NaN or infinity."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: not a JSON document ({exc})") from exc


def same_json(stored: Any, new: Any) -> bool:
    """Equality of two JSON documents as values. Numbers compare by value across int and
    float: PostgreSQL's JSONB keeps numbers as decimals and prints 1e+23 back as an integer,
    which Python's == would call different from the float the hub sent."""
    if isinstance(stored, bool) or isinstance(new, bool):
        return stored is new
    if isinstance(stored, int | float) and isinstance(new, int | float):
        if isinstance(stored, int) and isinstance(new, int):
            return stored == new
        return float(stored) == float(new)
    if isinstance(stored, dict) and isinstance(new, dict):
        return stored.keys() == new.keys() and all(same_json(stored[k], new[k]) for k in stored)
    if isinstance(stored, list) and isinstance(new, list):
        return len(stored) == len(new) and all(map(same_json, stored, new))
    return bool(stored == new)
