"""How events map to rows of the `events` table and back: one place for the encoding."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from hub.events import (
    Alert,
    AlertState,
    Event,
    Priority,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)

INSERT = (
    "INSERT INTO events (seq, kind, priority, wall_time, clock_synced, monotonic,"
    " sensor_id, quantity, value, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT = (
    "SELECT seq, kind, synced, wall_time, clock_synced, monotonic, sensor_id, quantity, value,"
    " body FROM events"
)
# Sequence numbers bound per statement by `in_chunks`: SQLite binds only so many parameters.
SEQ_CHUNK = 500


def in_chunks(
    conn: sqlite3.Connection, sql: str, seqs: Sequence[int], bound: Sequence[Any] = ()
) -> Iterator[sqlite3.Cursor]:
    """Run `sql`, whose `{marks}` takes the placeholders, over `seqs` SEQ_CHUNK at a time.
    `bound`: parameters that come before the seqs in every statement."""
    for i in range(0, len(seqs), SEQ_CHUNK):
        chunk = seqs[i : i + SEQ_CHUNK]
        marks = ",".join("?" * len(chunk))
        yield conn.execute(sql.format(marks=marks), (*bound, *chunk))


# The `clock_synced` column holds more than the stamp's flag: whether an unsynchronised wall
# time was corrected since (hub.store.clockfix), and whether the row may still be corrected
# by its boot (a row renumbered into another boot's range may not).
CLOCK_UNSYNCED = 0  # stamped unsynchronised; correctable within its boot
CLOCK_SYNCED = 1
CLOCK_CORRECTED = 2  # stamped unsynchronised, wall_time since set to origin + monotonic
CLOCK_UNSYNCED_DETACHED = 3  # as 0, but renumbered away from its boot: never corrected
CLOCK_CORRECTED_DETACHED = 4  # as 2, but renumbered away from its boot: never re-corrected
_CORRECTED_CODES = (CLOCK_CORRECTED, CLOCK_CORRECTED_DETACHED)


def clock_code(stamp: Stamp) -> int:
    if stamp.clock_synced:
        return CLOCK_SYNCED
    return CLOCK_CORRECTED if stamp.clock_corrected else CLOCK_UNSYNCED


def _json(value: object) -> str:
    # default=str: evidence a check filled with something JSON cannot hold (a datetime, a
    # Path) is kept as text rather than making the whole commit fail, alert included.
    return json.dumps(value, separators=(",", ":"), default=str)


def row_for(seq: int, event: Event) -> tuple[Any, ...]:
    s = event.stamp
    if isinstance(event, Reading):
        return (
            seq,
            "reading",
            0,
            s.wall_time,
            clock_code(s),
            s.monotonic,
            event.sensor_id,
            event.quantity.value,
            event.value,
            None,
        )
    if isinstance(event, Alert):
        body = {
            "check": event.check,
            "severity": event.severity.value,
            "state": event.state.value,
            "room": event.room,
            "start": event.start,
            "end": event.end,
            "evidence": dict(event.evidence),
        }
        return (
            seq,
            "alert",
            int(Priority.ALERT),
            s.wall_time,
            clock_code(s),
            s.monotonic,
            event.sensor_id,
            None,
            None,
            _json(body),
        )
    body = {"system": event.kind.value, "details": dict(event.details)}
    return (
        seq,
        "system",
        int(Priority.SYSTEM),
        s.wall_time,
        clock_code(s),
        s.monotonic,
        None,
        None,
        None,
        _json(body),
    )


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    seq, kind, synced, wall, clock_synced, mono, sensor_id, quantity, value, body = row
    stamp = Stamp(wall, clock_synced == CLOCK_SYNCED, mono, clock_synced in _CORRECTED_CODES)
    event: Event
    if kind == "reading":
        event = Reading(sensor_id, Quantity(quantity), value, stamp)
    elif kind == "alert":
        b = json.loads(body)
        event = Alert(
            check=b["check"],
            severity=Severity(b["severity"]),
            state=AlertState(b["state"]),
            room=b["room"],
            sensor_id=sensor_id,
            start=b["start"],
            end=b["end"],
            evidence=b["evidence"],
            stamp=stamp,
        )
    else:
        b = json.loads(body)
        event = SystemEvent(SystemKind(b["system"]), b["details"], stamp)
    return StoredEvent(seq=seq, event=event, synced=bool(synced))
