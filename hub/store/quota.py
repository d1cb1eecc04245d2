"""Keeping the buffer within its byte quota and retention, in the order DESIGN.md promises.

1. Synced (and rejected) events older than the retention go.
2. Over quota: synced events go, oldest first; then rejected ones (synced = 2: refused by the
   council, kept only for diagnosis), oldest first.
3. Still over quota: the oldest *unsynced routine readings* go, and a gap event committed in
   the same transaction records exactly what was dropped (count, seq and time range, per
   sensor). Alerts and the hub's own system events are never dropped unsynced.

Pruning stops at a low-water mark below the quota so it runs in bursts, not on every commit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field

from hub.events import Priority, Stamp, SystemEvent, SystemKind
from hub.store.rows import INSERT, row_for

log = logging.getLogger(__name__)

LOW_WATER = 0.9  # prune down to this fraction of the quota
_CHUNK = 2000

_EXPIRED = "SELECT seq FROM events WHERE synced != 0 AND wall_time < ? ORDER BY seq LIMIT ?"
_OLDEST_SYNCED = "SELECT seq FROM events WHERE synced = 1 ORDER BY seq LIMIT ?"
_OLDEST_REJECTED = "SELECT seq FROM events WHERE synced = 2 ORDER BY seq LIMIT ?"
_OLDEST_ROUTINE = (
    "SELECT seq, wall_time, sensor_id FROM events"
    f" WHERE synced = 0 AND priority = {int(Priority.ROUTINE)} ORDER BY seq LIMIT ?"
)


@dataclass
class Gap:
    """Unsynced readings dropped in one pruning pass: what the gap event reports."""

    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    from_time: float | None = None
    to_time: float | None = None
    per_sensor: dict[str, int] = field(default_factory=dict)
    # Exactly which sequence numbers are gone, as inclusive [first, last] runs: the council
    # can tell a hole it will never fill from an event still on its way.
    seq_ranges: list[list[int]] = field(default_factory=list)

    def add(self, seq: int, wall_time: float, sensor_id: str) -> None:
        if self.seq_ranges and self.seq_ranges[-1][1] == seq - 1:
            self.seq_ranges[-1][1] = seq
        else:
            self.seq_ranges.append([seq, seq])
        self.count += 1
        self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self.from_time = wall_time if self.from_time is None else min(self.from_time, wall_time)
        self.to_time = wall_time if self.to_time is None else max(self.to_time, wall_time)
        self.per_sensor[sensor_id] = self.per_sensor.get(sensor_id, 0) + 1

    def details(self) -> dict[str, object]:
        return {
            "reason": "storage quota",
            "dropped_readings": self.count,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "from_time": self.from_time,
            "to_time": self.to_time,
            "per_sensor": dict(sorted(self.per_sensor.items())),
            "seq_ranges": self.seq_ranges,
        }


@dataclass
class PruneReport:
    expired: int = 0  # synced, past retention
    synced_pruned: int = 0  # synced (or rejected), for the quota
    gap: Gap = field(default_factory=Gap)  # unsynced routine readings dropped
    gap_seq: int | None = None  # the gap event's sequence number, if one was written
    over_quota_after: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.synced_pruned or self.gap.count)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use (free pages are reused before the file grows)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def enforce(
    conn: sqlite3.Connection,
    *,
    quota_bytes: int,
    retention_cutoff: float | None,
    last_seq: int,
    gap_stamp: Stamp,
) -> PruneReport:
    """One pruning pass in one transaction. A gap event, if needed, gets `last_seq + 1`.

    `retention_cutoff` None skips the retention sweep: it scans the table, so the store runs
    it periodically, while the quota test (three pragmas) is cheap enough for every commit.
    """
    report = PruneReport()
    if retention_cutoff is None and used_bytes(conn) <= quota_bytes:
        return report
    conn.execute("BEGIN IMMEDIATE")
    try:
        if retention_cutoff is not None:
            report.expired = _delete_all(conn, _EXPIRED, retention_cutoff)
        if used_bytes(conn) > quota_bytes:
            target = int(quota_bytes * LOW_WATER)
            while used_bytes(conn) > target and (n := _delete_chunk(conn, _OLDEST_SYNCED)):
                report.synced_pruned += n
            while used_bytes(conn) > target and (n := _delete_chunk(conn, _OLDEST_REJECTED)):
                report.synced_pruned += n
            while used_bytes(conn) > target and _drop_oldest_routine(conn, report.gap):
                pass
        if report.gap.count:
            report.gap_seq = last_seq + 1
            gap = SystemEvent(SystemKind.GAP, report.gap.details(), gap_stamp)
            conn.execute(INSERT, row_for(report.gap_seq, gap))
        if report.changed:
            # Deleting the newest rows must never let their sequence numbers be reused.
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', ?)",
                (str(report.gap_seq or last_seq),),
            )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise
    return report


def release_free_pages(conn: sqlite3.Connection) -> None:
    """Give freed pages back to the filesystem (auto_vacuum=INCREMENTAL), best effort: the
    pruning is committed whatever happens here."""
    try:
        # Through executescript: execute() steps the pragma once, which frees a single page.
        conn.executescript("PRAGMA incremental_vacuum;")
    except sqlite3.Error as exc:
        log.warning("could not release free pages of the buffer: %s", exc)


def _delete_seqs(conn: sqlite3.Connection, seqs: list[int]) -> None:
    conn.execute(f"DELETE FROM events WHERE seq IN ({','.join('?' * len(seqs))})", seqs)


def _delete_chunk(conn: sqlite3.Connection, select: str, *params: object) -> int:
    seqs = [r[0] for r in conn.execute(select, (*params, _CHUNK))]
    if seqs:
        _delete_seqs(conn, seqs)
    return len(seqs)


def _delete_all(conn: sqlite3.Connection, select: str, *params: object) -> int:
    total = 0
    while n := _delete_chunk(conn, select, *params):
        total += n
    return total


def _drop_oldest_routine(conn: sqlite3.Connection, gap: Gap) -> bool:
    rows = conn.execute(_OLDEST_ROUTINE, (_CHUNK,)).fetchall()
    for seq, wall_time, sensor_id in rows:
        gap.add(seq, wall_time, sensor_id)
    if rows:
        _delete_seqs(conn, [r[0] for r in rows])
    return bool(rows)
