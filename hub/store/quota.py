"""Keeping the buffer within its byte quota and retention, in the order DESIGN.md promises.

1. Synced (and rejected) events older than the retention go.
2. Over quota: synced events go, oldest first; then rejected ones (synced = 2: refused by the
   council, kept only for diagnosis), oldest first.
3. Still over quota: the oldest *unsynced routine readings* go, and a gap event committed in
   the same transaction records exactly what was dropped (count, seq and time range, per
   sensor). Alerts and the hub's own system events are never dropped unsynced.

Pruning stops at a low-water mark below the quota so it runs in bursts, not on every commit.

The same order frees room when the disk fills before the quota is reached (`make_room`,
called by the store on a disk-full failure; see hub.store.diskfull): one pruning, two triggers.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
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

    reason: str = "storage quota"
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
            "reason": self.reason,
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


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use (free pages are reused before the file grows)."""
    pages = _pragma(conn, "page_count") - _pragma(conn, "freelist_count")
    return pages * _pragma(conn, "page_size")


def free_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of free pages inside the file: what the next writes reuse before it grows."""
    return _pragma(conn, "freelist_count") * _pragma(conn, "page_size")


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
    target = int(quota_bytes * LOW_WATER)

    def prune() -> None:
        if retention_cutoff is not None:
            report.expired = _delete_all(conn, _EXPIRED, retention_cutoff)
        if used_bytes(conn) > quota_bytes:
            _prune_in_order(conn, report, lambda: used_bytes(conn) > target)

    return _pruning_transaction(conn, report, prune, last_seq, gap_stamp)


def make_room(
    conn: sqlite3.Connection, *, needed_bytes: int, last_seq: int, gap_stamp: Stamp
) -> PruneReport:
    """The disk is full: prune in the quota's order until `needed_bytes` of pages are free
    inside the file (the next commits reuse them without growing it), in one transaction. A
    gap event, if needed, gets `last_seq + 1` and says "disk full". Stops early when nothing
    prunable is left (alerts and system events only): the report says how far it got."""
    report = PruneReport(gap=Gap(reason="disk full"))
    if free_bytes(conn) >= needed_bytes:
        return report

    def prune() -> None:
        _prune_in_order(conn, report, lambda: free_bytes(conn) < needed_bytes)

    return _pruning_transaction(conn, report, prune, last_seq, gap_stamp)


def _prune_in_order(
    conn: sqlite3.Connection, report: PruneReport, more: Callable[[], bool]
) -> None:
    """DESIGN.md's order, while `more()`: synced, then rejected, then the oldest unsynced
    routine readings (into the report's gap). Alerts and system events are never selected."""
    while more() and (n := _delete_chunk(conn, _OLDEST_SYNCED)):
        report.synced_pruned += n
    while more() and (n := _delete_chunk(conn, _OLDEST_REJECTED)):
        report.synced_pruned += n
    while more() and _drop_oldest_routine(conn, report.gap):
        pass


def _pruning_transaction(
    conn: sqlite3.Connection,
    report: PruneReport,
    prune: Callable[[], None],
    last_seq: int,
    gap_stamp: Stamp,
) -> PruneReport:
    """Run `prune` and record what it dropped (gap event, sequence floor) in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        prune()
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


def release_free_pages(conn: sqlite3.Connection, pages: int | None = None) -> None:
    """Give freed pages (all, or at most `pages`) back to the filesystem (auto_vacuum=
    INCREMENTAL), best effort: the pruning is committed whatever happens here. In WAL mode
    the file shrinks at the next checkpoint."""
    try:
        # Through executescript: execute() steps the pragma once, which frees a single page.
        limit = "" if pages is None else f"({int(pages)})"
        conn.executescript(f"PRAGMA incremental_vacuum{limit};")
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
