"""Corrected wall times at the council: the hub's side is hub.store.clockfix.

A hub stamps events with a wrong wall time until its clock is synchronised, and corrects
them once it learns its boot's origin (wall_time = origin + monotonic). What reaches the
council corrected needs nothing here. Two cases do:

- Events uploaded before the correction: the hub cannot send them again, so it sends a
  `clock_corrected` system event naming their sequence numbers and the origin; ingesting it
  applies the same formula to the rows held (`apply`). The formula is absolute, so a replayed
  event, or a second correction, never shifts a time twice.
- An event sent before the correction whose acknowledgement was lost is sent again
  corrected. It is the same event, not a conflict (`same_event`): the row takes the
  corrected wall time (`take_corrected`); its body stays as first received.

Pull API clients that read such rows before the correction see the clock_corrected event
later in the cursor order, with what it changed, and can apply it themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.events import SystemKind
from sync.council.errors import StoreError
from sync.council.records import BODY, KIND, SEQ, WALL, Row, same_json
from sync.council.tables import events

MAX_RANGES = 10_000  # the hub sends at most 1000 runs per event
_MAX_SEQ = 2**63 - 1
# The parts of a record a correction changes: everything else must be equal.
_CLOCK_KEYS = frozenset(("wall_time", "clock_corrected"))


@dataclass(frozen=True, slots=True)
class ClockCorrection:
    """One clock_corrected event: set wall_time = origin + monotonic on the hub's rows in
    `ranges` (inclusive) that were stamped unsynchronised."""

    seq: int
    origin: float
    ranges: tuple[tuple[int, int], ...]


def corrections_in(rows: Iterable[Row]) -> list[ClockCorrection]:
    """The clock_corrected events among a batch's rows, oldest first, checked: StoreError
    names what is wrong, so a bad one refuses its batch before anything is written."""
    found: list[ClockCorrection] = []
    for row in rows:
        if row[KIND] != "system":
            continue
        body = json.loads(row[BODY])
        if body.get("system") != SystemKind.CLOCK_CORRECTED:
            continue
        found.append(_checked(row[SEQ], body.get("details")))
    return sorted(found, key=lambda c: c.seq)


def _checked(seq: int, details: Any) -> ClockCorrection:
    where = f"seq {seq}: clock_corrected"
    if not isinstance(details, dict):
        raise StoreError(f"{where}: details are not an object")
    origin = details.get("origin")
    if isinstance(origin, bool) or not isinstance(origin, int | float):
        raise StoreError(f"{where}: origin {origin!r:.40} is not a number")
    if not math.isfinite(origin) or origin <= 0:
        raise StoreError(f"{where}: origin {origin!r} is not a positive finite time")
    raw = details.get("seq_ranges")
    if not isinstance(raw, list) or len(raw) > MAX_RANGES:
        raise StoreError(f"{where}: seq_ranges is not a list of at most {MAX_RANGES} ranges")
    ranges: list[tuple[int, int]] = []
    for i, pair in enumerate(raw):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(type(s) is int and 1 <= s <= _MAX_SEQ for s in pair)
            or pair[0] > pair[1]
        ):
            raise StoreError(f"{where}: seq_ranges[{i}] {pair!r:.60} is not [first, last]")
        ranges.append((pair[0], pair[1]))
    return ClockCorrection(seq, float(origin), tuple(ranges))


def apply(conn: Connection, hub_id: str, corrections: Iterable[ClockCorrection]) -> None:
    """Apply these corrections, in order, to the hub's rows held (in the ingest transaction)."""
    params = [
        {"h": hub_id, "a": first, "b": last, "o": c.origin}
        for c in corrections
        for first, last in c.ranges
    ]
    if params:
        conn.execute(_CORRECT, params)


_e = events.c
_CORRECT = (
    sa.update(events)
    .where(
        _e.hub_id == sa.bindparam("h"),
        _e.seq.between(sa.bindparam("a"), sa.bindparam("b")),
        _e.clock_synced == sa.false(),
    )
    .values(wall_time=sa.bindparam("o", type_=sa.Float()) + _e.monotonic, clock_corrected=True)
)


def same_event(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two records that differ are one event stamped unsynchronised, before and
    after its wall time was corrected (either way round)."""
    if stored.get("clock_synced") is not False or new.get("clock_synced") is not False:
        return False
    rest = [{k: v for k, v in r.items() if k not in _CLOCK_KEYS} for r in (stored, new)]
    return same_json(rest[0], rest[1])


def take_corrected(conn: Connection, hub_id: str, rows: Iterable[Row]) -> None:
    """Held rows re-sent corrected take the corrected wall time (in the ingest transaction)."""
    params = [{"h": hub_id, "s": row[SEQ], "w": row[WALL]} for row in rows]
    if params:
        conn.execute(_TAKE, params)


_TAKE = (
    sa.update(events)
    .where(
        _e.hub_id == sa.bindparam("h"),
        _e.seq == sa.bindparam("s"),
        _e.clock_synced == sa.false(),
    )
    .values(wall_time=sa.bindparam("w", type_=sa.Float()), clock_corrected=True)
)
