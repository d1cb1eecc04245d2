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
# Deepest nesting of objects and arrays a stored JSON document may have. Real records and
# configs are 2-4 levels deep; far deeper documents store fine but then break every reader
# (pydantic refuses to serialise past ~255 levels, json.dumps recurses): refused up front.
MAX_JSON_DEPTH = 32


def row_for(hub_id: str, record: Mapping[str, Any], received_at: float) -> dict[str, Any]:
    """The events-table row for one wire record (its flat dict, kept whole as `body`)."""
    problem = json_problem(record)
    if problem is not None:
        raise StoreError(f"malformed record (seq {record.get('seq')!r:.24}): {problem}")
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


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` (parsed JSON) cannot be stored and read back, or None.

    - NUL in a string: valid JSON ("\\u0000") that PostgreSQL refuses in text and JSONB.
    - A lone surrogate ("\\ud800"): valid JSON, but not encodable as UTF-8 by the driver or
      by the JSON response.
    - Nesting deeper than `max_depth` objects/arrays (see MAX_JSON_DEPTH).
    Iterative, so a deep document costs no stack here.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list | tuple):
            depth += 1
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels of objects and arrays"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string holds a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate (not valid Unicode)"
    return None


def json_document(value: Any, where: str) -> Any:
    """`value` as it will read back from the database (tuples become lists, keys strings);
    StoreError when it is not JSON, holds NaN, infinity or unstorable text, or nests too
    deeply (checked first: json.dumps would recurse past Python's stack limit)."""
    problem = json_problem(value)
    if problem is not None:
        raise StoreError(f"{where}: {problem}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
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
