"""Disk full: the buffer degrades in DESIGN.md's order instead of just failing.

The quota (hub.store.quota) keeps the buffer within its own budget, but the SD card can fill
up before the buffer reaches it: another program's log, a core dump, a small card.

Why the buffer stops growing *before* the disk is full. In WAL mode SQLite grows the file
only when it copies the WAL back (the checkpoint); a commit that adds pages puts them in the
WAL. If the disk fills in between, the checkpoint cannot extend the file, the WAL can never
be reset, every later transaction must grow the WAL, and nothing at all can be written any
more, not even the pruning that would make room: stuck until someone frees space. So when
the disk has less than LOW_BYTES free (16 MiB: the WAL's 4 MiB checkpoint with room to
spare) the buffer is capped at the pages its file has (SQLite's max_page_count). From then
on a commit needing new pages is refused cleanly, and the store (Store.commit), under its
lock, makes room and retries once:

1. it releases the reserve file (below), so that what follows has room to be written;
2. it checkpoints the WAL, so the next transactions write it from its start again instead
   of growing it; if the file had room inside and what failed lives outside it (the
   sequence sidecar's next block, the WAL), it gives a few free pages back to the disk;
3. it frees pages inside the file by pruning in the quota's order (quota.make_room: synced
   events, then rejected ones, then the oldest unsynced routine readings with a gap event;
   never an alert or a system event): the batch's estimated size plus ROOM_BYTES, so the
   next commits reuse those pages and the pruning runs in bursts, not on every commit;
4. it checkpoints again and retries the commit. If that fails too the caller keeps the
   events (the GroupCommitter: in memory, bounded, alerts always kept, alerts tried alone)
   and tries again a commit interval later: no busy loop. An alert or system event with no
   room even after pruning (a buffer of alerts only) may grow the file into the released
   reserve, checkpointed at once.

The reserve. A file of `reserve_bytes` beside the buffer (RESERVE_BYTES, 8 MiB on the hub:
twice the WAL's checkpoint; nothing on a card of gigabytes), really allocated (fallocate,
else zeros: a sparse file reserves nothing). It is made only when the disk has room for it
and LOW_BYTES more, and released in halves. The first half at the first refusal (or when the
pruning itself is refused): room for the pruning's WAL frames, the checkpoint that was due,
the sequence sidecar (hub.store.recovery) and the first alert, even when another program has
taken every byte. The last half is kept for a start on the full disk (`room_to_start`: a
clean stop deleted the WAL and its index, and opening needs them again); only an alert that
has no other way in takes it before. It is made again when the disk has that much room once
more, which is also when the state returns to ok and the cap is lifted: hysteresis, so it is
never made and released in a loop. Until then the buffer stays capped, across a restart
too; a cap set only because the disk was low is lifted as soon as it has room again.

The state, "full" from the first refusal until space returns, goes into the health report's
`storage` section (since when, refused commits, readings dropped, events pruned) and each
change is a system event committed to the buffer and so uploaded: STORAGE_FULL when it
starts (free bytes, the reserve released, what the first pruning removed) and STORAGE_OK
when space is back (how long it lasted and what it cost). The start is kept in the buffer's
meta table, so an episode survives a restart and `hearth status` and `hearth doctor` see it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub.clock import Clock
from hub.events import Alert, Event, Priority, Stamp, SystemEvent, SystemKind
from hub.store import quota
from hub.store.rows import row_for

log = logging.getLogger(__name__)

_MIB = 1024 * 1024
RESERVE_BYTES = 8 * _MIB  # the hub service's reserve (hub.runtime.store_limits)
# Free pages a disk-full pruning leaves inside the file beyond the batch: about an hour of a
# typical hub's readings, so the pruning runs in bursts without dropping much more than needed.
ROOM_BYTES = 256 * 1024
# Pages given back to the filesystem when a full disk refused what lives outside the file
# (the sequence sidecar's next block, the WAL's growth) while the file had room inside.
GIVE_BACK_PAGES = 64
# Below this much free the buffer stops growing: the WAL (4 MiB between checkpoints) must
# always find room to be copied back into the file. See the module's docstring.
LOW_BYTES = 16 * _MIB
GROW_MARGIN_BYTES = 1 * _MIB  # an urgent batch may grow the file if this much more is free
# Below this much free at start the reserve gives way before the buffer is opened: opening
# (the check, a new WAL and its index) needs a little room, and a clean stop deleted both.
START_BYTES = 1 * _MIB
# estimate_bytes: a row takes about its values' text plus this much (record header, rowid,
# index entries: 69 bytes for a reading of 59 characters); an alert also writes its
# alert_state row; the estimate is this margin above what was measured.
_ROW_OVERHEAD = 10
_ALERT_FACTOR = 1.6
_ESTIMATE_MARGIN = 1.3
# Meta key of the buffer: since when the disk has been full (absent: ok). Survives a restart,
# so an episode spans it, and `hearth status` and `hearth doctor` can read it.
META_FULL_SINCE = "storage_full_since"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def reserve_path(db_path: Path) -> Path:
    """Where the reserve of the buffer at `db_path` lives (also read by `hearth doctor`)."""
    return db_path.with_name(db_path.name + ".reserve")


def is_disk_full_error(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, says the disk (or quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            if getattr(current, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
                return True
        elif isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def _prunable(conn: sqlite3.Connection) -> bool:
    """Whether any event could be pruned for room (anything but unsynced alerts and system
    events)."""
    row = conn.execute(
        f"SELECT 1 FROM events WHERE synced != 0 OR priority = {int(Priority.ROUTINE)} LIMIT 1"
    ).fetchone()
    return row is not None


def _outside_sqlite(exc: BaseException) -> bool:
    """Whether the disk-full error came from a file of ours, not from SQLite."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _FULL_ERRNOS


def disk_free(path: Path) -> int | None:
    """Bytes free for this user on the filesystem holding `path`; None if unknown."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def estimate_bytes(events: Sequence[Event]) -> int:
    """Room committing `events` may take inside the file: a little above what it takes (a
    pruning for room frees this, so a generous estimate drops readings for nothing)."""
    total = 0.0
    for event in events:
        size = _ROW_OVERHEAD + sum(len(str(v)) for v in row_for(0, event))
        total += size * _ALERT_FACTOR if isinstance(event, Alert) else size
    return int(total * _ESTIMATE_MARGIN)


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL back into the file, best effort (PASSIVE: never waits for a reader).
    Once it is all copied, the next transaction writes the WAL from its start again."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        log.debug("WAL checkpoint failed: %s", exc)


class Reserve:
    """A file of `size` allocated bytes beside the buffer, given back when the disk is full."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def present(self) -> bool:
        try:
            return self.size > 0 and self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has room for it and LOW_BYTES
        more; True when it is in place. Never raises: a hub without its reserve still runs."""
        if self.size <= 0:
            return False
        if self.present:
            return True
        free = disk_free(self.path.parent)
        if free is None or free < self.size + LOW_BYTES:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                _allocate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("could not make the disk-full reserve %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        log.info("disk-full reserve of %d bytes in place at %s", self.size, self.path)
        return True

    def release(self, *, keep_last: bool = False) -> int:
        """Give half the reserve (or what is left) back to the filesystem; returns the
        bytes. In halves: the first half covers the checkpoint and the pruning, the second
        is kept (`keep_last`) for a start on the full disk (opening the buffer begins a new
        WAL file), which only an alert that has no other way in may take before."""
        if self.size <= 0:
            return 0
        try:
            size = self.path.stat().st_size
            step = max(self.size // 2, 1)
            if keep_last and size <= step:
                return 0
            if size <= step:
                self.path.unlink()
            else:
                os.truncate(self.path, size - step)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("could not release the disk-full reserve %s: %s", self.path, exc)
            return 0
        released = min(size, step)
        log.warning("disk full: released %d bytes of the reserve %s", released, self.path)
        return released


def room_to_start(db_path: Path, reserve_bytes: int) -> int:
    """Before the buffer at `db_path` is opened: with less than START_BYTES free, release
    (half of what is left of) its reserve, so the hub can open its buffer and write an
    alert on a disk another program filled while it was stopped. Returns the bytes."""
    free = disk_free(db_path.parent)
    if reserve_bytes <= 0 or free is None or free >= START_BYTES:
        return 0
    released = Reserve(reserve_path(db_path), reserve_bytes).release()
    if released:
        log.warning("disk full at start (%d bytes free): reserve released to open the buffer", free)
    return released


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    block = bytes(64 * 1024)  # a filesystem without fallocate: write the zeros
    written = 0
    while written < size:
        written += os.write(fd, block[: size - written])


class StorageGuard:
    """The store's disk-full state, its cap, its reserve and its counters. Used under the
    store's lock, except `readings_dropped` (the group committer's memory bound) and
    `report` (the uploader's thread): the counters have a lock of their own."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db_path: Path,
        reserve_bytes: int,
        clock: Clock,
        full_since: str | None = None,
    ) -> None:
        """`full_since`: the buffer's META_FULL_SINCE, so an episode goes on after a restart
        (a kill, a watchdog restart) and ends with its STORAGE_OK once there is room."""
        self.db_path = db_path
        self.reserve = Reserve(reserve_path(db_path), reserve_bytes)
        self.clock = clock
        self.room_bytes = ROOM_BYTES
        self.full_since: float | None = float_or_none(full_since)
        self.ok_since: float | None = None  # None: ok since this process started
        # Since this process started:
        self.failed_commits = 0  # commits refused to their caller (the events were kept)
        self.dropped_readings = 0  # unsynced readings lost for space: quota, disk, memory
        self.pruned_events = 0  # synced or rejected events pruned because the disk was full
        self._episode_start: tuple[int, int, int] = (0, 0, 0)
        self._full_details: dict[str, Any] | None = None
        self._full_stamp: Stamp | None = None
        self._uncapped: int | None = None  # max_page_count before the cap; None: no cap
        self._urgent_only = False  # the refused batch has no routine readings
        self._growing = False  # the cap is lifted for one retry (see `settle`)
        self._due: list[SystemEvent] = []
        self._count_lock = threading.Lock()
        self.reserve.ensure()
        self._follow_disk(conn, disk_free(db_path.parent))

    @property
    def full(self) -> bool:
        return self.full_since is not None

    @property
    def capped(self) -> bool:
        return self._uncapped is not None

    # -- the store's commit path -----------------------------------------------------------

    def room_needed(
        self, conn: sqlite3.Connection, exc: BaseException, events: Sequence[Event]
    ) -> int | None:
        """Bytes to free inside the file before retrying a refused commit of `events` (0:
        just retry, the disk has room again), or None when the refusal is not the disk
        running out (an I/O error, or SQLite's page limit with a roomy disk): then a later
        retry is all there is to do."""
        if not is_disk_full_error(exc):
            return None
        free = disk_free(self.db_path.parent)
        if self.full and self._recovered(conn, free):
            return 0
        if not self.full and free is not None and free >= LOW_BYTES:
            if not self.capped:
                return None
            # Capped while the disk was low, and it has room again: grow, prune nothing.
            self._lift_cap(conn)
            return 0
        self._urgent_only = all(e.priority != Priority.ROUTINE for e in events)
        estimate = estimate_bytes(events)
        released = (
            self.reserve.release(keep_last=not self._urgent_only)
            if self._needs_room(conn, estimate)
            else 0
        )
        if not self.full:
            self._full_stamp = self.clock.stamp()
            self.full_since = self._full_stamp.wall_time
            self.ok_since = None
            self._episode_start = self._counters()
            self._full_details = {
                "free_bytes": free,
                "reserve_released_bytes": released,
                "error": str(exc)[:300],
            }
            log.error(
                "disk full (%s bytes free): pruning the buffer in the quota's order to keep"
                " writing; alerts are kept",
                free,
            )
        self._cap(conn)
        return estimate + self.room_bytes

    def release_for_pruning(self, exc: BaseException) -> bool:
        """The pruning itself was refused by the full disk (no room for its WAL frames):
        release half the reserve for it; returns whether there was any to release (the last
        half only for an alert's batch: it is kept for a start on the full disk)."""
        if not is_disk_full_error(exc):
            return False
        released = self.reserve.release(keep_last=not self._urgent_only)
        if released and self._full_details is not None:
            self._full_details["reserve_released_bytes"] += released
        return released > 0

    def _needs_room(self, conn: sqlite3.Connection, estimate: int) -> bool:
        """Whether the reserve should give: at the first refusal always (the checkpoint that
        was due may need it), later only when pruning cannot cure it (nothing prunable
        left, or the file already had the room and what failed lives outside it)."""
        if not self.full:
            return True
        return quota.free_bytes(conn) >= estimate or not _prunable(conn)

    def give_back(self, conn: sqlite3.Connection, exc: BaseException, needed: int) -> None:
        """When the file has `needed` bytes free inside, or the sidecar (not SQLite) was
        refused, what failed lives outside the file: return GIVE_BACK_PAGES free pages to
        the disk for it, and cap the file at its new size. Only then: another program takes
        whatever is given back, and the file would shrink at every refusal."""
        if quota.free_bytes(conn) < needed and not _outside_sqlite(exc):
            return
        if quota.free_bytes(conn):
            quota.release_free_pages(conn, GIVE_BACK_PAGES)
            checkpoint(conn)  # the file shrinks when the WAL is copied back
            self._cap(conn)

    def pruned(
        self, conn: sqlite3.Connection, report: quota.PruneReport | None, needed: int
    ) -> None:
        """What a disk-full pruning removed (None: it could not run). When it left less than
        `needed` free and the batch is urgent (alerts, system events), the file may grow for
        this one retry if the disk has the room: an alert must not wait beside free space."""
        if report is None and self._urgent_only:
            self.reserve.release()  # no pruning: an alert may have the last of the reserve
        if report is not None:
            with self._count_lock:
                self.pruned_events += report.synced_pruned
                self.dropped_readings += report.gap.count
            if report.gap.count:
                log.warning(
                    "disk full: dropped %d unsynced readings (gap event %s)",
                    report.gap.count,
                    report.gap_seq,
                )
        if self._full_details is not None and self._full_stamp is not None:
            details = dict(self._full_details)
            if report is not None:
                details.update(
                    pruned_events=report.synced_pruned,
                    dropped_readings=report.gap.count,
                    gap_seq=report.gap_seq,
                )
            self._due.append(SystemEvent(SystemKind.STORAGE_FULL, details, self._full_stamp))
            self._full_details = self._full_stamp = None
        if self._urgent_only and quota.free_bytes(conn) < needed:
            free = disk_free(self.db_path.parent)
            if free is not None and free >= needed + GROW_MARGIN_BYTES:
                self._lift_cap(conn)
                self._growing = True

    def settle(self, conn: sqlite3.Connection) -> None:
        """After the retry: if the file was let grow, copy the WAL back now (the disk had the
        room a moment ago) and cap it again at its new size."""
        if self._growing:
            self._growing = False
            checkpoint(conn)
            self._cap(conn)

    def commit_refused(self) -> None:
        with self._count_lock:
            self.failed_commits += 1

    def readings_dropped(self, count: int) -> None:
        """Readings lost for space outside a disk-full pruning (the quota, the committer's
        memory bound): counted in the health report, recorded by their own gap events."""
        with self._count_lock:
            self.dropped_readings += count

    def due(self, conn: sqlite3.Connection) -> list[SystemEvent]:
        """After each successful commit: follow the disk (cap when it runs low, back to ok
        when it has room), and return the system events to commit now: STORAGE_FULL at the
        start of an episode, STORAGE_OK at its end. `sent()` once they are committed."""
        free = disk_free(self.db_path.parent)
        if not (self.full and self._recovered(conn, free)):
            self._follow_disk(conn, free)
        return list(self._due)

    def sent(self) -> None:
        self._due.clear()

    # -- the state -------------------------------------------------------------------------

    def _follow_disk(self, conn: sqlite3.Connection, free: int | None) -> None:
        """While ok: stop growing when the disk runs low, grow again when it has room. While
        full (after a restart too): stay capped until there is room to recover."""
        if free is None:
            return
        if self.full:
            if free < LOW_BYTES + self.reserve.size:
                self._cap(conn)
            return
        if free < LOW_BYTES:
            if not self.capped:
                log.warning("disk low (%d bytes free): the buffer stops growing", free)
            self._cap(conn)
        elif self.capped:
            self._lift_cap(conn)

    def _recovered(self, conn: sqlite3.Connection, free: int | None) -> bool:
        """Back to ok when the disk has room for the reserve and LOW_BYTES more (and the
        reserve is made again): lift the cap and make STORAGE_OK due. Returns whether it
        did."""
        if free is None or free < self.reserve.size + LOW_BYTES:
            return False
        if self.reserve.size > 0 and not self.reserve.ensure():
            return False
        assert self.full_since is not None
        self._lift_cap(conn)
        now = self.clock.wall()
        failed, dropped, pruned = (
            total - before
            for total, before in zip(self._counters(), self._episode_start, strict=True)
        )
        details = {
            "full_since": self.full_since,
            "duration_s": max(0.0, now - self.full_since),
            "free_bytes": free,
            "failed_commits": failed,
            "dropped_readings": dropped,
            "pruned_events": pruned,
            "reserve_bytes": self.reserve.size if self.reserve.present else 0,
        }
        self._due.append(SystemEvent(SystemKind.STORAGE_OK, details, self.clock.stamp()))
        self.full_since = None
        self.ok_since = now
        log.warning("disk has room again (%d bytes free): storage ok", free)
        return True

    def _cap(self, conn: sqlite3.Connection) -> None:
        """No growth beyond the pages the file has on disk (SQLite keeps the cap at or above
        the database's current size by itself)."""
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        if self._uncapped is None:
            self._uncapped = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
        try:
            on_disk = self.db_path.stat().st_size // page_size
        except OSError:
            on_disk = 0
        conn.execute(f"PRAGMA max_page_count = {int(on_disk)}").fetchall()

    def _lift_cap(self, conn: sqlite3.Connection) -> None:
        if self._uncapped is not None:
            conn.execute(f"PRAGMA max_page_count = {self._uncapped}").fetchall()
            self._uncapped = None

    def _counters(self) -> tuple[int, int, int]:
        with self._count_lock:
            return (self.failed_commits, self.dropped_readings, self.pruned_events)

    # -- reporting ---------------------------------------------------------------------------

    def report(self, buffer_bytes: int, quota_bytes: int) -> dict[str, Any]:
        """The health report's `storage` section (sync.health, checked by the council)."""
        failed, dropped, pruned = self._counters()
        return {
            "state": "full" if self.full else "ok",
            "since": self.full_since if self.full else self.ok_since,
            "failed_commits": failed,
            "dropped_readings": dropped,
            "pruned_events": pruned,
            "buffer_bytes": buffer_bytes,
            "quota_bytes": quota_bytes,
            "reserve_bytes": self.reserve.size if self.reserve.present else 0,
        }


def float_or_none(text: str | None) -> float | None:
    """META_FULL_SINCE as a number; None when absent or not a finite number."""
    try:
        value = None if text is None else float(text)
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
