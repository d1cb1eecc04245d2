"""Checks on what hubs send, before any of it reaches the database.

A refused record refuses its whole batch with a StoreError naming what was wrong, so a bad
upload is a clear 4xx and changes nothing, never a database error halfway through.

Text the database cannot hold inside an uploaded record (a NUL character, which PostgreSQL
refuses in text and JSONB; a lone surrogate, which is not Unicode and cannot be encoded as
UTF-8) is NOT a refusal: it is replaced by U+FFFD before the record is stored or compared.
A hub retries a refused batch for ever and sends alerts first, so one alert whose evidence
held a NUL would otherwise block that home's outbox for good. Because the same replacement
runs before the same-content comparison, a re-send of such a batch is a duplicate, not a
conflict. JSON request bodies (configs, notes) are still refused (`json_problem`): a person
sent those and can fix them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from sync.council.errors import StoreError

KINDS = ("reading", "alert", "system")
# Deepest nesting of objects and arrays a stored JSON document may have. Real records and
# configs are 2-4 levels deep; far deeper documents store fine but then break every reader
# (pydantic refuses to serialise past ~255 levels, json.dumps recurses): refused up front.
MAX_JSON_DEPTH = 32

# The events table's columns in the order of the rows `row_for` makes (bulk inserts use
# plain tuples: building a dict per row, and SQLAlchemy's per-row parameter processing,
# cost more than the insert itself at 500 rows a batch).
COLUMNS = (
    "hub_id",
    "seq",
    "kind",
    "wall_time",
    "clock_synced",
    "monotonic",
    "sensor_id",
    "quantity",
    "value",
    "received_at",
    "body",  # the record as JSON text, exactly as stored
    "clock_corrected",  # added by 0004: the hub corrected an unsynchronised wall time
)
SEQ: Final = 1  # positions in a Row (literals, so the type checker knows each type)
KIND: Final = 2
WALL: Final = 3
BODY: Final = 10
assert (COLUMNS[SEQ], COLUMNS[KIND], COLUMNS[WALL], COLUMNS[BODY]) == (
    "seq",
    "kind",
    "wall_time",
    "body",
)
Row = tuple[
    str, int, str, float, bool, float, str | None, str | None, float | None, float, str, bool
]

REPLACEMENT = "\ufffd"
# NUL, and any surrogate code point: in a Python str every one is lone (a valid pair is one
# code point), so none can be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# One encoder for every record (json.dumps with options builds one per call). NaN and
# infinity are refused: PostgreSQL's JSONB refuses them and no JSON reader accepts them.
# No circularity check: a cycle ends in RecursionError, and then in the depth check.
_encode = json.JSONEncoder(allow_nan=False, check_circular=False).encode


def row_for(hub_id: str, record: Mapping[str, Any], received_at: float) -> Row:
    """The events-table row for one wire record (its flat dict, kept whole as `body`), with
    unstorable text replaced (module doc)."""
    body = record if type(record) is dict else dict(record)
    try:
        text = _encode(body)
    except RecursionError:  # nested past the stack: the depth check below says so
        text = None
    except (TypeError, ValueError) as exc:  # NaN, infinity, something not JSON
        raise StoreError(f"malformed record: {exc!r}") from exc
    if text is None or _maybe_unstorable(text):
        try:
            dirty = _needs_cleaning(body, 1)
        except StoreError as exc:
            raise StoreError(f"malformed record (seq {body.get('seq')!r:.24}): {exc}") from None
        if dirty:
            body = storable(body)
        if dirty or text is None:
            text = _encode(body)
    try:
        seq = body["seq"]
        kind = body["kind"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise StoreError(f"seq must be a non-negative integer, got {seq!r}")
        if kind not in KINDS:
            raise StoreError(f"unknown kind {kind!r}")
        if seq >= 2**63:
            raise StoreError(f"seq out of range: {seq}")
        reading = kind == "reading"
        value = body.get("value") if reading else None
        corrected = body.get("clock_corrected", False)
        if corrected is not False and corrected is not True:
            raise StoreError(f"clock_corrected must be true or false, got {corrected!r:.40}")
        return (
            hub_id,
            seq,
            kind,
            finite(body["wall_time"]),
            bool(body["clock_synced"]),
            finite(body["monotonic"]),
            short_text(body.get("sensor_id"), 128),
            short_text(body.get("quantity"), 32) if reading else None,
            None if value is None else finite(value),
            received_at,
            text,
            corrected,
        )
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


def _maybe_unstorable(text: str) -> bool:
    """A cheap test on a record's JSON text (ASCII only: NUL is written \\u0000, every
    surrogate \\udXXX) that is True for every record needing the exact check: one holding
    NUL or a lone surrogate, or with any nested object or array (its depth must be checked).
    Flat ASCII records, i.e. nearly every reading, pass with a few C scans; the rest (a
    bracket or a backslash sequence inside a string, an astral character) only cost the
    exact check for nothing."""
    return text.count("{") != 1 or "[" in text or "\\u0000" in text or "\\ud" in text


def _needs_cleaning(value: Any, depth: int) -> bool:
    """Whether some string or key in `value` (a container at nesting `depth`) holds
    unstorable text. StoreError when containers nest deeper than MAX_JSON_DEPTH, checked on
    the way down, so the recursion is bounded whatever the input (a cycle too).

    Runs only for records `_maybe_unstorable` flags (alerts, system events, rare readings);
    `in` and isascii() are C scans without allocation, the regex runs only on non-ASCII."""
    if depth > MAX_JSON_DEPTH:
        raise StoreError(f"nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays")
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    dirty = False
    for key, item in items:
        if isinstance(item, str):
            if "\x00" in item or (not item.isascii() and _UNSTORABLE.search(item)):
                dirty = True
        elif isinstance(item, dict | list | tuple) and _needs_cleaning(item, depth + 1):
            dirty = True
        if isinstance(key, str) and (
            "\x00" in key or (not key.isascii() and _UNSTORABLE.search(key))
        ):
            dirty = True
    return dirty


def storable(value: Any) -> Any:
    """`value` with NUL and lone surrogates in its strings and keys replaced by U+FFFD
    (a copy; containers only, after `_needs_cleaning` has bounded the depth)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def cleaned(document: dict[str, Any]) -> dict[str, Any]:
    """A hub's JSON document (a health report) with unstorable text replaced, as records
    are; StoreError when it nests too deeply. Unchanged (not copied) when already clean."""
    if not _needs_cleaning(document, 1):
        return document
    result: dict[str, Any] = storable(document)
    return result


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` (parsed JSON) cannot be stored and read back, or None.

    - NUL in a string: valid JSON ("\\u0000") that PostgreSQL refuses in text and JSONB.
    - A lone surrogate ("\\ud800"): valid JSON, but not encodable as UTF-8 by the driver or
      by the JSON response.
    - Nesting deeper than `max_depth` objects/arrays (see MAX_JSON_DEPTH).
    Iterative, so a deep document costs no stack here. For API bodies and health reports;
    uploaded records are cleaned instead (module doc).
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
