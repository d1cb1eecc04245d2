"""The hub's durable buffer: one SQLite file in WAL mode, written through sqlite-utils.

What "committed" means here: `Store.commit()` returns only after SQLite has committed the
transaction with `synchronous=FULL`, i.e. the WAL frames are fsynced. A committed event
survives a crash, a kill -9 and a power cut (as far as the SD card honours fsync). Events
still waiting in the group committer's memory (at most about one commit interval of routine
readings; never an alert) are what a power cut can cost.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from hub.clock import Clock, SystemClock
from hub.events import (
    Alert,
    Event,
    Priority,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from hub.store import clockfix, diskfull, quota, schema
from hub.store.recovery import (
    Recovery,
    SalvageStats,
    SequenceReservation,
    find_problem,
    move_aside,
    salvage_unsynced,
)
from hub.store.rows import CLOCK_SYNCED, INSERT, SELECT, event_from_row, in_chunks, row_for

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_WAL_SIZE_LIMIT = 4 * 1024 * 1024
# Rows corrected per transaction (hub.store.clockfix): bounds the lock hold and the WAL.
CORRECT_CHUNK_ROWS = 5000
# A CLOCK_CORRECTED system event, as hub.store.rows stores it.
_IS_CLOCK_REPORT = (
    f"(kind = 'system' AND json_extract(body, '$.system') = '{SystemKind.CLOCK_CORRECTED.value}')"
)
# What the council last said it understands (kept by sync.uploader). Until it names
# clock_corrected, clock reports wait in the outbox: held, not backlog.
META_COUNCIL_FEATURES = "council_features"
_HELD_CLOCK_REPORTS = (
    f"SELECT count(*) FROM events WHERE synced = 0 AND priority = {int(Priority.SYSTEM)}"
    f" AND {_IS_CLOCK_REPORT}"
)


def held_clock_reports(conn: sqlite3.Connection) -> int:
    """Clock reports waiting for the council to understand them; cheap (system rows only)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_COUNCIL_FEATURES,))
    kept = row.fetchone()
    if kept is not None and SystemKind.CLOCK_CORRECTED.value in kept[0].split(","):
        return 0
    return int(conn.execute(_HELD_CLOCK_REPORTS).fetchone()[0])


class StoreWriteError(Exception):
    """A commit failed (disk full, I/O error); nothing of that transaction was written."""


@dataclass(frozen=True)
class StoreLimits:
    quota_bytes: int = 512 * 1024 * 1024
    retention_days: float = 30.0
    retention_sweep_every_s: float = 3600.0  # the sweep scans the table: not on every commit
    # A file kept free for a full disk (hub.store.diskfull); the hub service uses 8 MiB.
    reserve_bytes: int = 0


@dataclass(frozen=True)
class StoreStatus:
    path: str
    queue_depth: dict[str, int]
    oldest_unsynced: dict[str, Any] | None
    last_sync_at: float | None
    file_bytes: int
    used_bytes: int
    quota_bytes: int | None
    total_events: int
    last_seq: int
    open_alerts: list[dict[str, Any]] = field(default_factory=list)
    # The uploader's last failure, when it is newer than the last successful sync:
    # {"message": ..., "at": unix seconds}. None while syncing works (or never tried).
    sync_problem: dict[str, Any] | None = None
    # Events set aside because the council refused their content (Store.reject): never sent
    # again, kept for diagnosis.
    rejected: int = 0
    # Since when the disk has been full (hub.store.diskfull): the buffer prunes to keep
    # writing. None: storage ok.
    storage_full_since: float | None = None


# Meta keys the uploader keeps in the buffer, so `hearth status` can show them beside a
# running hub (and they survive a restart).
META_LAST_SYNC_ERROR = "last_sync_error"
META_LAST_SYNC_ERROR_AT = "last_sync_error_at"


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class Store:
    """The buffer. Thread-safe: one connection behind a lock, since SQLite allows one writer."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        limits: StoreLimits,
        clock: Clock,
        reservation: SequenceReservation,
    ) -> None:
        self._conn = conn
        self._db = Database(conn)
        self.path = path
        self.limits = limits
        self.clock = clock
        self._reservation = reservation
        self._lock = threading.RLock()
        self._next_seq = self._load_next_seq()
        self._boot = self._record_boot()  # None: this clock's stamps are never corrected
        # The highest seq next_batch handed out in this process: up to it, an unsynced row
        # may be in flight uncorrected, so correcting it is reported (clockfix.Correction).
        self._sent_upto = 0
        self._retention_due = float("-inf")  # on the store clock's monotonic time
        self.recovery: Recovery | None = None
        self.storage = diskfull.StorageGuard(  # disk full
            conn, path, limits.reserve_bytes, clock, self.get_meta(diskfull.META_FULL_SINCE)
        )

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        limits: StoreLimits | None = None,
        clock: Clock | None = None,
    ) -> Store:
        """Open (creating or migrating) the buffer; a damaged file is moved aside, not fatal."""
        path.parent.mkdir(parents=True, exist_ok=True)
        limits = limits or StoreLimits()
        diskfull.room_to_start(path, limits.reserve_bytes)  # a disk filled while stopped
        problem = find_problem(path)
        recovery = move_aside(path, problem) if problem else None
        conn = _connect(path)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective only on a new file
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        applied = schema.apply(Database(conn))
        if applied:
            log.info("buffer %s: applied schema migrations %s", path, ", ".join(applied))
        store = cls(conn, path, limits, clock or SystemClock(), SequenceReservation(path))
        if recovery is not None:
            store._start_after_recovery(recovery)
        store._finish_earlier_boots()
        return store

    def _load_next_seq(self) -> int:
        row = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        floor = self._conn.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()
        highest = max(row[0] or 0, int(floor[0]) if floor else 0)
        if highest == 0:
            # A brand-new buffer: continue above anything an earlier buffer may have used.
            highest = self._reservation.reserved_upto
        return highest + 1

    def _start_after_recovery(self, recovery: Recovery) -> None:
        """Carry over what the damaged file still had unsynced (with its own sequence
        numbers, so the council's idempotency still holds), then record the recovery."""
        self.recovery = recovery
        stats = SalvageStats()
        carried = skipped = 0
        batch: list[tuple[Any, ...]] = []
        alerts: list[tuple[int, Alert]] = []
        with self._lock:
            for row in salvage_unsynced(Path(recovery.moved_to), SELECT, stats):
                try:
                    stored = event_from_row(row)
                except Exception:  # a row read from a damaged page may be garbage: skip it
                    skipped += 1
                    continue
                batch.append(row_for(stored.seq, stored.event))
                if isinstance(stored.event, Alert):
                    alerts.append((stored.seq, stored.event))
                if len(batch) >= 5000:
                    carried += self._insert_salvaged(batch, alerts)
            carried += self._insert_salvaged(batch, alerts)
            floor = max(stats.max_seq or 0, self._reservation.reserved_upto)
            self._next_seq = max(self._next_seq, floor + 1)
            if self._boot is not None:  # the salvaged rows below are not this boot's
                with contextlib.suppress(sqlite3.Error):
                    clockfix.renumber_boot(self._conn, self._boot, self._next_seq)
        details = {
            "moved_to": recovery.moved_to,
            "problem": recovery.problem,
            "damaged_max_seq": stats.max_seq,
            "unsynced_carried_over": carried,
            "unreadable_rows_skipped": skipped,
            "stopped_by_damage": stats.stopped_by_damage,
            "resumed_at_seq": self._next_seq,
        }
        self.commit([SystemEvent(SystemKind.STORE_RECOVERED, details, self.clock.stamp())])

    def _insert_salvaged(self, rows: list[tuple[Any, ...]], alerts: list[tuple[int, Alert]]) -> int:
        count = len(rows)
        if rows:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(INSERT, rows)
            self._update_alert_state(alerts)
            self._conn.execute("COMMIT")
        rows.clear()
        alerts.clear()
        return count

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- writing -------------------------------------------------------------------------

    def commit(self, events: Sequence[Event]) -> list[int]:
        """Write `events` in one durable transaction and return their sequence numbers.

        Any failure (disk full, I/O error, the seq reservation unwritable) raises
        StoreWriteError with nothing written, so the caller can keep the events and retry.
        A full disk is first met by making room in DESIGN.md's order (hub.store.diskfull).
        """
        if not events:
            return []
        with self._lock:
            try:
                seqs = self._commit_making_room(events)
            except StoreWriteError:
                self.storage.commit_refused()
                raise
            except Exception as exc:  # making room failed oddly: still the caller keeps them
                self._rollback()
                self.storage.commit_refused()
                raise StoreWriteError(f"could not commit {len(events)} events: {exc}") from exc
            try:  # the events are in: nothing here may make the caller commit them again
                self._commit_storage_events()
            except Exception:
                log.exception("could not follow the disk's state after a commit")
            return seqs

    def _commit_making_room(self, events: Sequence[Event]) -> list[int]:
        try:
            return self._commit_locked(events)
        except sqlite3.IntegrityError:
            # A sequence number already taken means our counter fell behind the file
            # (it cannot by design; if it ever does, re-reading it beats jamming forever).
            self._rollback()
            log.error("sequence counter behind the buffer; re-reading it from the file")
            self._next_seq = self._load_next_seq()
            return self._commit_locked(events)
        except StoreWriteError as exc:
            if not self._make_room(exc, events):
                raise
            try:
                return self._commit_locked(events)
            finally:
                self.storage.settle(self._conn)

    # -- disk full (hub.store.diskfull) ----------------------------------------------------

    def _make_room(self, exc: StoreWriteError, events: Sequence[Event]) -> bool:
        """A commit refused by a full disk: release the reserve and free pages inside the
        file in DESIGN.md's order; returns whether retrying the commit is worth it."""
        needed = self.storage.room_needed(self._conn, exc, events)
        if not needed:
            return needed == 0  # 0: the disk has room again, just retry
        diskfull.checkpoint(self._conn)
        self.storage.give_back(self._conn, exc, needed)
        report = self._prune_for_room(needed)
        self.storage.pruned(self._conn, report, needed)
        diskfull.checkpoint(self._conn)
        return True

    def _prune_for_room(self, needed: int) -> quota.PruneReport | None:
        """Prune until `needed` bytes are free inside the file; None if it could not. A
        pruning the full disk refused (no room for its WAL frames) is tried once more after
        half the reserve is released: without that the buffer would be jammed for good."""
        for attempt in range(2):
            try:
                self._reservation.ensure(self._next_seq)  # the gap event may need it
                report = quota.make_room(
                    self._conn,
                    needed_bytes=needed,
                    last_seq=self._next_seq - 1,
                    gap_stamp=self.clock.stamp(),
                )
            except (sqlite3.Error, OSError) as err:
                if attempt or not self.storage.release_for_pruning(err):
                    log.error("disk full, and no room could be made in the buffer yet: %s", err)
                    return None
                diskfull.checkpoint(self._conn)
            else:
                if report.gap_seq is not None:
                    self._next_seq = report.gap_seq + 1
                return report
        return None

    def _commit_storage_events(self) -> None:
        """STORAGE_FULL or STORAGE_OK, when due, right after a commit that went through."""
        due = self.storage.due(self._conn)
        if not due:
            return
        try:
            self._commit_locked(due)
        except (StoreWriteError, sqlite3.IntegrityError) as exc:
            self._rollback()
            log.warning("storage state event not written yet (tried again later): %s", exc)
        else:
            self.storage.sent()
            since = self.storage.full_since
            try:  # for `hearth status` and `hearth doctor`, and the next start
                self.set_meta({diskfull.META_FULL_SINCE: None if since is None else str(since)})
            except StoreWriteError as exc:
                log.warning("%s", exc)

    def storage_report(self) -> dict[str, Any]:
        """The health report's `storage` section (sync.health)."""
        return self.storage.report(self.used_bytes(), self.limits.quota_bytes)

    def _commit_locked(self, events: Sequence[Event]) -> list[int]:
        first = self._next_seq
        seqs = list(range(first, first + len(events)))
        try:
            rows = list(map(row_for, seqs, events))
            self._reservation.ensure(seqs[-1])
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(INSERT, rows)
            alerts = [(s, e) for s, e in zip(seqs, events, strict=True) if isinstance(e, Alert)]
            if alerts:
                self._update_alert_state(alerts)
            self._conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except Exception as exc:
            self._rollback()
            raise StoreWriteError(f"could not commit {len(events)} events: {exc}") from exc
        self._next_seq = seqs[-1] + 1
        return seqs

    def _update_alert_state(self, alerts: Iterable[tuple[int, Alert]]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (a.check, a.room, a.sensor_id or "", a.severity.value, a.state.value, a.start, s)
                for s, a in alerts
            ],
        )

    def _rollback(self) -> None:
        # No transaction may be open any more: SQLite rolls back by itself on some errors.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    # -- the outbox ----------------------------------------------------------------------

    def next_batch(
        self, limit: int = 500, *, hold_clock_reports: bool = False
    ) -> list[StoredEvent]:
        """The next unsynced events to upload: alerts first, then system events, then readings;
        oldest first within a priority. `hold_clock_reports`: leave CLOCK_CORRECTED events
        out (the council has not said it understands them: they wait, never set aside)."""
        held = f" AND NOT {_IS_CLOCK_REPORT}" if hold_clock_reports else ""
        with self._lock:
            rows = self._conn.execute(
                f"{SELECT} WHERE synced = 0{held} ORDER BY priority DESC, seq LIMIT ?", (limit,)
            ).fetchall()
            # In the same lock hold: nothing leaves uncorrected once the origin is known.
            seqs = [r[0] for r in rows]
            if self._correct_batch_quietly(seqs):
                sql = SELECT + " WHERE seq IN ({marks})"
                again = {r[0]: r for cur in self._in_chunks(sql, seqs) for r in cur}
                rows = [again.get(r[0], r) for r in rows]
            if seqs:
                self._sent_upto = max(self._sent_upto, *seqs)
        return [event_from_row(r) for r in rows]

    def mark_synced(self, seqs: Iterable[int]) -> int:
        """Record that the council acknowledged these events; returns how many were new."""
        seq_list = list(seqs)

        def write() -> int:
            changed = sum(
                cur.rowcount
                for cur in self._in_chunks(
                    "UPDATE events SET synced = 1 WHERE synced = 0 AND seq IN ({marks})",
                    seq_list,
                )
            )
            self._set_meta("last_sync_at", str(self.clock.wall()))
            return changed

        return self._write(write, f"mark {len(seq_list)} events synced")

    def _write(self, write: Callable[[], _T], what: str) -> _T:
        """Run `write` in one durable transaction under the store's lock. Refused by a full
        disk, it is tried once more after a checkpoint (the WAL then starts again from its
        beginning instead of growing). Any failure raises StoreWriteError, nothing written."""
        with self._lock:
            for attempt in range(2):
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    result = write()
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    if attempt == 0 and diskfull.is_disk_full_error(exc):
                        diskfull.checkpoint(self._conn)
                        continue
                    raise StoreWriteError(f"could not {what}: {exc}") from exc
                return result
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction (the caller holds the store's lock): committed when the
        block ends, even by `return`; any failure rolls it back and raises StoreWriteError
        ("could not `what`"), so nothing is half written."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._conn.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            raise StoreWriteError(f"could not {what}: {exc}") from exc

    def reject(self, seqs: Iterable[int], reason: str) -> int | None:
        """Move these unsynced events out of the outbox for good (synced = 2, "rejected")
        and commit an upload_rejected system event saying which and why, in one transaction;
        returns that event's sequence number (None when none of them was still unsynced).

        Why: the council refuses them for their content (or they cannot be encoded), and an
        outbox read from its head would otherwise send them first forever, blocking alerts.
        They stay in the buffer for diagnosis (`hearth status` counts them) and are pruned
        only after synced events.
        """
        wanted = sorted(set(seqs))
        if not wanted:
            return None
        reason = reason[:500]
        with self._lock:
            with self._transaction(f"set aside {len(wanted)} events"):
                present = self._unsynced_among(wanted)
                if not present:
                    return None
                for _ in self._in_chunks(
                    "UPDATE events SET synced = 2 WHERE synced = 0 AND seq IN ({marks})", present
                ):
                    pass
                seq = max(self._next_seq, self._file_floor() + 1)
                self._reservation.ensure(seq)
                details = {"seqs": present, "reason": reason}
                report = SystemEvent(SystemKind.UPLOAD_REJECTED, details, self.clock.stamp())
                self._conn.execute(INSERT, row_for(seq, report))
            self._next_seq = seq + 1
        return seq

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- clock correction (hub.store.clockfix) ---------------------------------------------

    def correct_clock(self, origin: clockfix.Origin | None = None) -> clockfix.Correction | None:
        """Correct this boot's unsynchronised stamps with `origin` (the council's) or, when
        the store's clock is synchronised now, with NTP's: whichever is better, else the
        boot's recorded origin. Rows the council may hold are reported to it by
        CLOCK_CORRECTED events, committed with the rows they report. None: nothing to
        correct with (unknown origin, or a clock whose stamps are never corrected).
        Called by the uploader after each answer, and periodically (hub.clockwatch).

        In chunks of CORRECT_CHUNK_ROWS, one transaction each, the lock released between
        them: a buffer of a million uncorrected rows neither holds an alert's commit for
        seconds nor grows the WAL by its size. The origin is recorded with the first chunk.
        """
        if self._boot is None:
            return None
        origin = clockfix.ntp_origin(self.clock) or origin  # NTP beats any estimate
        return self._correct_boot(self._boot, origin)

    def _correct_boot(
        self, boot: str, origin: clockfix.Origin | None
    ) -> clockfix.Correction | None:
        total: clockfix.Correction | None = None
        while True:
            with self._lock:
                todo = clockfix.plan(self._conn, boot, origin)
                if todo is None or not todo.has_work:  # the usual case: no write lock taken
                    if total is None and todo is not None:
                        total = clockfix.Correction(boot, todo.origin, todo.source)
                    break
                fix = self._write_correction(
                    boot,
                    origin,
                    lambda t: clockfix.apply_chunk(
                        self._conn, boot, t, CORRECT_CHUNK_ROWS, self._sent_upto
                    ),
                )
            if fix is None:
                break
            if total is None:
                total = fix
            else:
                total.add(fix)
            if fix.corrected < CORRECT_CHUNK_ROWS:
                break
            time.sleep(0)  # the lock is not fair: let a waiting commit (an alert) have it
        if total is not None and (total.new_origin or total.uploaded_ranges):
            log.info(
                "clock origin %.3f from %s: corrected %d wall times stamped before the clock"
                " was synchronised (%d runs the council may hold, reported to it)",
                total.origin,
                total.source.value,
                total.corrected,
                len(total.uploaded_ranges),
            )
        return total

    def _write_correction(
        self,
        boot: str,
        origin: clockfix.Origin | None,
        work: Callable[[clockfix.Plan], clockfix.Correction],
    ) -> clockfix.Correction | None:
        """One write transaction (lock held by the caller): plan again as of the lock, do
        `work`, commit its CLOCK_CORRECTED reports with it."""
        with self._transaction("correct the clock's stamps"):
            todo = clockfix.plan(self._conn, boot, origin)  # as of the lock
            fix = None if todo is None or not todo.has_work else work(todo)
            reports = [] if fix is None else fix.reports(self.clock.stamp())
            seq = 0
            if fix is not None and reports:
                seq = max(self._next_seq, self._file_floor() + 1)
                self._reservation.ensure(seq + len(reports) - 1)
                self._conn.executemany(
                    INSERT,
                    [
                        row_for(seq + i, replace(r, stamp=clockfix.corrected_stamp(r.stamp, fix)))
                        for i, r in enumerate(reports)
                    ],
                )
        if reports:
            self._next_seq = seq + len(reports)
        return fix

    def _correct_batch_quietly(self, seqs: list[int]) -> bool:
        """Correct the rows of an outbox batch about to be read (lock held by the caller),
        and only those: the bulk goes in chunks elsewhere. Best effort: a failure (disk full)
        is logged, and the events go as they are, flagged unsynchronised, to be corrected at
        the council later. True when rows were corrected (the caller reads them again)."""
        if self._boot is None or not seqs:
            return False
        boot = self._boot
        try:
            origin = clockfix.ntp_origin(self.clock)
            todo = clockfix.plan(self._conn, boot, origin)
            if todo is None or not todo.has_work:
                return False
            sql = f"SELECT seq FROM events WHERE {todo.where} AND seq IN ({{marks}})"
            needy = [r[0] for cur in self._in_chunks(sql, seqs, todo.bounds) for r in cur]
            if not needy and not todo.learned:
                return False
            fix = self._write_correction(
                boot,
                origin,
                lambda t: clockfix.apply_seqs(self._conn, boot, t, needy, self._sent_upto),
            )
        except Exception as exc:  # never stops the outbox: the events go flagged as they are
            log.warning("could not correct a batch's stamps: %s", exc)
            return False
        return fix is not None and fix.corrected > 0

    def _finish_earlier_boots(self) -> None:
        """Finish correcting earlier boots whose origin was recorded but whose last chunks
        were not written (a power cut mid-way): only their own recorded origin can."""
        try:
            earlier = clockfix.earlier_boots_with_origin(self._conn, self._boot)
            for boot in earlier:
                self._correct_boot(boot, None)
        except Exception as exc:  # best effort (a full disk, say): the next open retries
            log.warning("could not finish correcting an earlier boot's stamps: %s", exc)

    def _record_boot(self) -> str | None:
        boot = clockfix.boot_of(self.clock)
        if boot is None:
            return None
        try:
            clockfix.record_boot(self._conn, boot, self._next_seq)
        except sqlite3.Error as exc:  # a full disk must not stop the store from opening
            log.warning(
                "could not record this boot in the buffer (%s): its stamps stay uncorrected", exc
            )
            return None
        return boot

    # -- sync support (sync.uploader) -----------------------------------------------------

    def renumber(self, seqs: Iterable[int], floor: int = 0) -> dict[int, int]:
        """Move these unsynced events to fresh sequence numbers above every number this hub
        has used and above `floor` (the council's high water); returns old -> new for each
        event moved. Synced or unknown numbers are left alone and left out of the result.

        Why: the council holds different content under these numbers (an SD card that lost
        the newest commits made the hub hand them out again), and never overwrites it; under
        new numbers the events are stored instead of being taken for duplicates.

        Kill safety: the sequence reservation is extended first (a crash right after it only
        wastes numbers); the moves, the alert_state references and the raised floor are one
        transaction, so a kill leaves either every old number or every new one, never an
        event twice or not at all. The base is read inside that transaction from the file
        itself, so a second process on the same buffer (`hearth sync now`) cannot collide.
        """
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        with self._lock:
            with self._transaction(f"renumber {len(wanted)} events"):
                present = self._unsynced_among(wanted)
                if not present:
                    return {}
                base = max(self._next_seq - 1, floor, self._file_floor())
                mapping = {old: base + 1 + i for i, old in enumerate(present)}
                top = base + len(present)
                self._reservation.ensure(top)
                moves = [(new, old) for old, new in mapping.items()]
                self._conn.executemany("UPDATE events SET seq = ? WHERE seq = ?", moves)
                self._conn.executemany("UPDATE alert_state SET seq = ? WHERE seq = ?", moves)
                clockfix.detach_moved(self._conn, mapping)
                self._raise_meta_floor(top)
            self._next_seq = max(self._next_seq, top + 1)
        log.warning(
            "renumbered %d events the council holds with other content: %s",
            len(mapping),
            _describe_moves(mapping),
        )
        return mapping

    def raise_seq_floor(self, high_water: int) -> bool:
        """Never hand out a sequence number at or below `high_water` again; returns whether
        the floor moved. Costs no write in the normal case (the council holds nothing above
        what this hub has numbered); only a hub that lost its newest commits (or a new buffer
        after a damaged one) writes the floor, durably, before its next commit can reuse a
        number the council already holds."""
        with self._lock:
            if high_water < self._next_seq:
                return False
            with self._transaction("raise the sequence floor"):
                # Compared with the file, inside the write lock: another process on this
                # buffer (`hearth sync now` beside `hearth run`) may have numbered above
                # this process's counter since it last committed.
                file_floor = self._file_floor()
                moves = high_water > file_floor
                if moves:
                    self._reservation.ensure(high_water)
                    self._raise_meta_floor(high_water)
            if not moves:
                self._next_seq = max(self._next_seq, file_floor + 1)
                return False
            self._next_seq = high_water + 1
        log.warning("the council holds sequence numbers up to %d: continuing above it", high_water)
        return True

    def _unsynced_among(self, seqs: Sequence[int]) -> list[int]:
        sql = "SELECT seq FROM events WHERE synced = 0 AND seq IN ({marks})"
        return sorted(row[0] for cur in self._in_chunks(sql, seqs) for row in cur)

    def _in_chunks(
        self, sql: str, seqs: Sequence[int], bound: Sequence[Any] = ()
    ) -> Iterator[sqlite3.Cursor]:
        return in_chunks(self._conn, sql, seqs, bound)

    def _file_floor(self) -> int:
        """The highest number the file itself says was used (rows or the persisted floor)."""
        highest = self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        floor = self._conn.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()
        return max(int(highest), int(floor[0]) if floor else 0)

    def _raise_meta_floor(self, value: int) -> None:
        # Only upwards: quota.enforce writes the floor too, and a floor must never go down.
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('seq_floor', ?) ON CONFLICT (key) DO UPDATE"
            " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (str(value),),
        )

    def queue_depth(self) -> int:
        """Unsynced events waiting to go (all priorities; held clock reports not counted):
        cheap, it counts the outbox index only."""
        with self._lock:
            unsynced = self._conn.execute("SELECT count(*) FROM events WHERE synced = 0")
            return int(unsynced.fetchone()[0]) - held_clock_reports(self._conn)

    def set_meta(self, values: Mapping[str, str | None]) -> None:
        """Set (or, with None, delete) meta keys in one durable transaction: the uploader's
        last error survives a restart and `hearth status` can read it from another process."""

        def write() -> None:
            for key, value in values.items():
                if value is None:
                    self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    self._set_meta(key, value)

        self._write(write, f"write {', '.join(values)}")

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- limits --------------------------------------------------------------------------

    def enforce_limits(self) -> quota.PruneReport:
        """Apply the quota now, and the retention sweep when it is due (at most once per
        `retention_sweep_every_s` of the store's clock). Called after every group commit."""
        with self._lock:
            cutoff = None
            if self.clock.monotonic() >= self._retention_due:
                self._retention_due = self.clock.monotonic() + self.limits.retention_sweep_every_s
                cutoff = self.clock.wall() - self.limits.retention_days * 86400
            self._reservation.ensure(self._next_seq)  # the gap event may need it
            report = quota.enforce(
                self._conn,
                quota_bytes=self.limits.quota_bytes,
                retention_cutoff=cutoff,
                last_seq=self._next_seq - 1,
                gap_stamp=self.clock.stamp(),
            )
            if report.gap_seq is not None:
                self._next_seq = report.gap_seq + 1
                self.storage.readings_dropped(report.gap.count)
                log.warning(
                    "buffer over quota: dropped %d unsynced readings (gap event %d)",
                    report.gap.count,
                    report.gap_seq,
                )
            if report.changed and not self.storage.full:  # on a full disk, keep the pages
                quota.release_free_pages(self._conn)
            report.over_quota_after = quota.used_bytes(self._conn) > self.limits.quota_bytes
        return report

    def used_bytes(self) -> int:
        with self._lock:
            return quota.used_bytes(self._conn)

    # -- check state (hub.checks) ---------------------------------------------------------

    def load_check_state(self) -> dict[str, str]:
        """The anomaly checks' saved state: check name -> JSON text."""
        with self._lock:
            rows = self._conn.execute("SELECT name, state FROM check_state").fetchall()
        return {name: state for name, state in rows}

    def save_check_state(self, states: Mapping[str, str], saved_at: float) -> None:
        """Replace the named states in one durable transaction: all of them or none
        (StoreWriteError)."""
        rows = [(name, state, saved_at) for name, state in states.items()]

        def write() -> None:
            self._conn.executemany(
                "INSERT OR REPLACE INTO check_state (name, state, saved_at) VALUES (?, ?, ?)",
                rows,
            )

        self._write(write, "save the checks' state")

    # -- reading back --------------------------------------------------------------------

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events in store order after `after_seq`: for exports, replays and tests."""
        with self._lock:
            rows = self._conn.execute(
                f"{SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [event_from_row(r) for r in rows]

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def open_alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return read_open_alerts(self._conn)

    def status(self) -> StoreStatus:
        with self._lock:
            return read_status(self._conn, self.path, self.limits.quota_bytes)


def read_open_alerts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The latest step of every alert condition not cleared, oldest first."""
    return [
        {
            "check": c,
            "room": r,
            "sensor_id": s or None,
            "severity": sev,
            "state": st,
            "since": since,
            "seq": seq,
        }
        for c, r, s, sev, st, since, seq in conn.execute(
            "SELECT check_name, room, sensor_id, severity, state, since, seq FROM alert_state"
            " WHERE state != 'cleared' ORDER BY seq"
        )
    ]


def read_status(conn: sqlite3.Connection, path: Path, quota_bytes: int | None) -> StoreStatus:
    """Status of a buffer from any connection, so `hearth status` can read it read-only."""
    depth = {p.name.lower(): 0 for p in sorted(Priority, reverse=True)}
    for priority, count in conn.execute(
        "SELECT priority, count(*) FROM events WHERE synced = 0 GROUP BY priority"
    ):
        depth[Priority(priority).name.lower()] = count
    held = held_clock_reports(conn)
    depth[Priority.SYSTEM.name.lower()] -= held
    oldest = conn.execute(
        "SELECT seq, kind, wall_time, clock_synced FROM events WHERE synced = 0"
        + (f" AND NOT {_IS_CLOCK_REPORT}" if held else "")
        + " ORDER BY seq LIMIT 1"
    ).fetchone()
    meta = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)",
            (
                "last_sync_at",
                META_LAST_SYNC_ERROR,
                META_LAST_SYNC_ERROR_AT,
                diskfull.META_FULL_SINCE,
            ),
        ).fetchall()
    )
    last_sync_at = float(meta["last_sync_at"]) if "last_sync_at" in meta else None
    error_at = float(meta.get(META_LAST_SYNC_ERROR_AT, "nan"))
    sync_problem = (
        {"message": meta.get(META_LAST_SYNC_ERROR, ""), "at": error_at}
        if error_at == error_at and (last_sync_at is None or error_at > last_sync_at)
        else None
    )
    total, last_seq = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
    rejected = conn.execute("SELECT count(*) FROM events WHERE synced = 2").fetchone()[0]
    open_alerts = read_open_alerts(conn)
    files = [path, path.with_name(path.name + "-wal")]
    return StoreStatus(
        path=str(path),
        queue_depth=depth,
        oldest_unsynced=(
            {
                "seq": oldest[0],
                "kind": oldest[1],
                "wall_time": oldest[2],
                "clock_synced": oldest[3] == CLOCK_SYNCED,
            }
            if oldest
            else None
        ),
        last_sync_at=last_sync_at,
        file_bytes=sum(f.stat().st_size for f in files if f.exists()),
        used_bytes=quota.used_bytes(conn),
        quota_bytes=quota_bytes,
        total_events=total,
        last_seq=last_seq,
        open_alerts=open_alerts,
        sync_problem=sync_problem,
        rejected=rejected,
        # A garbage value (hand-edited, a future format) reads as "not known", not a crash.
        storage_full_since=diskfull.float_or_none(meta.get(diskfull.META_FULL_SINCE)),
    )


def inspect(path: Path) -> StoreStatus:
    """Status of a buffer on disk without changing it (no migration, no recovery)."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}: has the hub run yet?")
    conn = _connect(path, readonly=True)
    try:
        return read_status(conn, path, None)
    finally:
        conn.close()


def _describe_moves(mapping: Mapping[int, int], shown: int = 5) -> str:
    moves = [f"{old}->{new}" for old, new in list(mapping.items())[:shown]]
    more = len(mapping) - shown
    return ", ".join(moves) + (f" and {more} more" if more > 0 else "")


def inspect_meta(path: Path) -> dict[str, str]:
    """The buffer's meta table (last sync, last sync error, sequence floor) read-only, for
    `hearth status` beside a running hub."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}: has the hub run yet?")
    conn = _connect(path, readonly=True)
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()
