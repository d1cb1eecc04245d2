"""Group commit: routine readings wait in memory for at most one interval, then go to the SD
card together in one transaction, one fsync. Alerts and system events do not wait.

This is the whole trade-off in one place. A commit per reading would cost an fsync and
several page writes each time (SD wear); an unbounded buffer would cost unbounded loss on a
power cut. The bound is `max_latency_s` (about 1 s by default): a power cut costs at most the
routine readings of the last interval, never an alert.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hub.events import Event, Priority, Reading, SystemEvent, SystemKind
from hub.store.buffer import Store, StoreWriteError

log = logging.getLogger(__name__)

CommitListener = Callable[[Sequence[int]], None]


@dataclass
class CommitStats:
    commits: int = 0
    events: int = 0
    failures: int = 0
    dropped_in_memory: int = 0  # routine readings dropped while the disk refused writes
    last_error: str | None = None


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        *,
        max_latency_s: float = 1.0,
        max_batch: int = 5000,
        max_pending: int = 100_000,
        on_commit: CommitListener | None = None,
        beat: Callable[[], object] | None = None,
        beat_every_s: float = 15.0,
    ) -> None:
        self.store = store
        self.max_latency_s = max_latency_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.on_commit = on_commit
        # The service watchdog's heartbeat: called from the flusher thread on every turn of
        # its loop, idle or not, so a flush hung on the disk stops the beats (hub.service).
        self.beat = beat
        self.beat_every_s = beat_every_s
        self.stats = CommitStats()
        self._pending: list[Event] = []
        self._first_pending_at: float | None = None
        self._cond = threading.Condition()
        self._commit_lock = threading.Lock()  # one flush at a time, in queue order
        self._closing = False
        self._failing = False  # the last commit was refused: readings wait for the retry
        self._flush_requested = False
        self._thread: threading.Thread | None = None

    # -- producers -----------------------------------------------------------------------

    def add(self, event: Event) -> None:
        """Queue an event; never raises, so no driver or check is stopped by a bad disk.

        Routine readings wait for the group commit (a full batch wakes the flusher at once).
        Anything more important is committed before this returns, with everything queued
        before it; if that commit fails the event stays queued for the flusher's retries.
        """
        with self._cond:
            if not self._pending:
                self._first_pending_at = time.monotonic()
                self._cond.notify()
            self._pending.append(event)
            if len(self._pending) > self.max_pending:
                # In bulk (a tenth of the bound), so a stalled disk costs O(1) per add.
                self._drop_oldest_readings(
                    max(len(self._pending) - self.max_pending, self.max_pending // 10)
                )
            if event.priority == Priority.ROUTINE:
                backlog = len(self._pending)
                if backlog < self.max_batch or self._failing:
                    return
                if backlog < 2 * self.max_batch:
                    self._flush_requested = True  # the flusher takes it from here
                    self._cond.notify()
                    return
                # The flusher is behind a healthy disk: the producer helps (backpressure)
                # rather than let the queue grow into the memory bound and drop readings.
        # A refusal is logged in flush; the event stays queued and the flusher retries.
        with contextlib.suppress(StoreWriteError):
            self.flush()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    # -- committing ----------------------------------------------------------------------

    def flush(self) -> list[int]:
        """Commit everything queued now, in transactions of at most `max_batch` events (a
        backlog from a refusing disk goes in steps a full disk can make room for); returns
        the sequence numbers committed. What the store refuses stays queued, alerts and
        system events tried alone first; raises StoreWriteError if nothing went in."""
        with self._commit_lock:
            with self._cond:
                batch, self._pending = self._pending, []
                self._first_pending_at = None
                self._flush_requested = False
            if not batch and not self.stats.dropped_in_memory:
                return []
            gap = self._memory_gap_event()
            urgent_first = self._failing
            chunks = self._chunks([gap, *batch] if gap else batch, urgent_first)
            events = [e for chunk in chunks for e in chunk]
            seqs: list[int] = []
            done = 0
            try:
                for chunk in chunks:
                    seqs += self.store.commit(chunk)
                    done += len(chunk)
            except StoreWriteError as exc:
                if done and gap is not None:
                    self._gap_committed(gap)  # it went in with the first chunk
                    gap = None
                if urgent_first:  # the alerts were tried first, by themselves
                    self._requeue([e for e in events[done:] if e is not gap], exc)
                else:
                    seqs += self._commit_urgent_alone(gap, events[done:], exc)
                if not seqs:
                    raise
            else:
                self._failing = False
                self.stats.last_error = None
                self._gap_committed(gap)
            self.stats.commits += 1
            self.stats.events += len(seqs)
            try:
                self.store.enforce_limits()
            except (OSError, sqlite3.Error) as exc:  # a full disk: expected, no traceback
                log.warning("pruning the buffer failed (%s); tried again after next commit", exc)
            except Exception:
                log.exception("pruning the buffer failed; will try again after the next commit")
        if self.on_commit is not None:
            try:
                self.on_commit(seqs)
            except Exception:
                log.exception("a commit listener failed; the events are committed all the same")
        return seqs

    def _chunks(self, events: list[Event], urgent_first: bool) -> list[list[Event]]:
        """Transactions of at most `max_batch` events, in queue order. `urgent_first` (the
        disk has been refusing): alerts and system events (the memory gap event first) go
        in transactions of their own ahead of the readings: on a full disk each chunk of a
        backlog may cost a refusal and a pruning, and an alert must not wait for them all."""
        groups = [events]
        if urgent_first:
            groups = [
                [e for e in events if e.priority != Priority.ROUTINE],
                [e for e in events if e.priority == Priority.ROUTINE],
            ]
        size = self.max_batch
        return [g[i : i + size] for g in groups for i in range(0, len(g), size)]

    def _commit_urgent_alone(
        self, gap: SystemEvent | None, rest: list[Event], exc: StoreWriteError
    ) -> list[int]:
        """`rest` was refused: commit its alerts and system events by themselves (a full
        disk may have room for a few rows, not for a backlog of readings) and keep the
        readings for the retry. Returns [] with everything kept if that is refused too.
        The memory gap event (`gap`, in `rest`) is never kept: it is made anew from the
        count at the next attempt."""
        kept = [e for e in rest if e is not gap]
        urgent = [e for e in rest if e.priority != Priority.ROUTINE]
        readings = [e for e in rest if e.priority == Priority.ROUTINE]
        seqs: list[int] = []
        if urgent and readings:
            try:
                seqs = self.store.commit(urgent)
            except StoreWriteError:
                pass
            else:
                self._gap_committed(gap)
                kept = readings
        self._requeue(kept, exc)
        return seqs

    def _gap_committed(self, gap: SystemEvent | None) -> None:
        """Readings dropped since the gap event was made are for the next one."""
        if gap is not None:
            with self._cond:
                self.stats.dropped_in_memory -= int(gap.details["dropped_readings"])

    def _memory_gap_event(self) -> SystemEvent | None:
        if not self.stats.dropped_in_memory:
            return None
        details = {
            "reason": "buffer could not be written",
            "dropped_readings": self.stats.dropped_in_memory,
            "last_error": self.stats.last_error,
        }
        return SystemEvent(SystemKind.GAP, details, self.store.clock.stamp())

    def _requeue(self, batch: list[Event], exc: Exception) -> None:
        """Keep what failed for the next attempt, in front of what arrived meanwhile."""
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        log.error("group commit of %d events failed, will retry: %s", len(batch), exc)
        with self._cond:
            self._failing = True
            self._pending = batch + self._pending
            if len(self._pending) > self.max_pending:
                self._drop_oldest_readings(len(self._pending) - self.max_pending)
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
                # The flusher may have gone to sleep while this flush held the queue empty:
                # without a wake-up nobody would retry until the next alert.
                self._cond.notify()

    def _drop_oldest_readings(self, count: int) -> None:
        """The memory bound while the disk refuses: oldest routine readings go, never an
        alert or system event; the count goes into a gap event at the next commit."""
        kept: list[Event] = []
        dropped = 0
        for event in self._pending:
            if dropped < count and isinstance(event, Reading):
                dropped += 1
            else:
                kept.append(event)
        self._pending = kept
        self.stats.dropped_in_memory += dropped
        self.store.storage.readings_dropped(dropped)  # the health report's count

    # -- the background flusher ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            if self.beat is not None:
                self.beat()
            with self._cond:
                if self._closing:
                    return
                if self._first_pending_at is None:
                    self._cond.wait(self.beat_every_s if self.beat is not None else None)
                    continue
                delay = self._first_pending_at + self.max_latency_s - time.monotonic()
                if delay > 0 and not self._flush_requested:
                    self._cond.wait(delay)
                    continue
            try:
                self.flush()
            except Exception as exc:  # the flusher must outlive any failure
                if not isinstance(exc, StoreWriteError):
                    log.exception("unexpected failure in group commit; will retry")
                with self._cond:  # back off one interval before retrying a refusing disk
                    self._first_pending_at = time.monotonic()
                    self._cond.wait_for(lambda: self._closing, timeout=self.max_latency_s)

    def close(self) -> None:
        """Stop the flusher and commit what is queued: a clean stop loses nothing, unless
        the disk refuses even now (then the loss is logged with its size)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except StoreWriteError as exc:
            log.error("stopping with %d events that could not be written: %s", self.pending, exc)
