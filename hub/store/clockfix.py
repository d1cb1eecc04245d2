"""Correcting wall times stamped before the clock was synchronised.

A Pi has no real-time clock: until NTP (or the council) says what time it is, its wall
clock may read 1970, or the time of the last shutdown. Each stamp also holds the boot's
monotonic time, which is right all along, but only within that boot. So once the wall time
at which this boot's monotonic clock read 0 (its *origin*) becomes known, every event this
boot stamped unsynchronised gets `wall_time = origin + monotonic`, marked corrected
(`clock_synced` column = 2; the stamp keeps `clock_synced` False, `clock_corrected` True).

Where origins come from, best first:
- NTP: the kernel says the wall clock is synchronised (SystemClock.synced_origin).
- the council: its answer's X-Hearth-Time, taken against the monotonic clock at receipt
  (sync.client.CouncilClient.council_origin); off by about one network latency.
The first origin of a boot is kept; only a better source replaces it (and re-corrects).

Why per boot, and only "where possible": monotonic time restarts at every boot, so an origin
fits one boot's events and no other. Events of a boot that ended before any sync keep their
flag and their wall time for ever. The boot of an event is the boots-table row whose seq
range holds it (schema m004); a row renumbered into another boot's range is detached
(`detach_moved`) rather than corrected with the wrong origin.

The formula is absolute, so applying a correction twice, or replaying it at the council,
never shifts a time twice. Events already uploaded, or handed out for upload and perhaps
in flight uncorrected, cannot be taken back; for them a CLOCK_CORRECTED system event tells
the council which sequence numbers to correct, with the same formula
(sync.council.clockfix). A council that has not announced the clock_corrected feature gets
no such event until it does (sync.uploader). The bulk is corrected in chunks by seq, one
transaction each (Store.correct_clock); an outbox read corrects only the rows it returns.
"""

from __future__ import annotations

import bisect
import logging
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hub.clock import BootClock
from hub.events import Stamp, SystemEvent, SystemKind
from hub.store.rows import (
    CLOCK_CORRECTED,
    CLOCK_CORRECTED_DETACHED,
    CLOCK_UNSYNCED,
    CLOCK_UNSYNCED_DETACHED,
    in_chunks,
)

log = logging.getLogger(__name__)

# Runs of sequence numbers per CLOCK_CORRECTED event: a correction that touched more (rows
# uploaded while others waited, e.g. alerts first) is reported in several events.
MAX_RANGES_PER_EVENT = 1000


class OriginSource(StrEnum):
    COUNCIL = "council"
    NTP = "ntp"


_RANK = {OriginSource.COUNCIL: 1, OriginSource.NTP: 2}


@dataclass(frozen=True, slots=True)
class Origin:
    """The wall time at which boot `boot_id`'s monotonic clock read 0, and how we know."""

    boot_id: str
    wall_at_zero: float
    source: OriginSource

    def usable(self) -> bool:
        return bool(self.boot_id) and math.isfinite(self.wall_at_zero) and self.wall_at_zero > 0


@dataclass
class Correction:
    """What one pass changed: `corrected` rows, of which those the council may hold or be
    about to hold are `uploaded_ranges` (inclusive [first, last] runs), for it to correct too.

    "May hold": acknowledged (synced), or handed out for upload by this process (seq up to
    `Store`'s sent mark) and so perhaps in flight, uncorrected, while this pass runs. The
    report is ingested after such a batch: uploads are sequential and it is a new event,
    read from the outbox only by a later round. A row the council does not hold yet is
    left alone there, and arrives corrected."""

    boot_id: str
    origin: float
    source: OriginSource
    corrected: int = 0
    uploaded_ranges: list[list[int]] = field(default_factory=list)
    new_origin: bool = False  # this pass learned the boot's origin (or a better one)

    def reports(self, stamp: Stamp) -> list[SystemEvent]:
        """The CLOCK_CORRECTED events telling the council (none when nothing was uploaded)."""
        runs = self.uploaded_ranges
        return [
            SystemEvent(
                SystemKind.CLOCK_CORRECTED,
                {
                    "boot_id": self.boot_id,
                    "origin": self.origin,
                    "source": self.source.value,
                    "seq_ranges": runs[i : i + MAX_RANGES_PER_EVENT],
                },
                stamp,
            )
            for i in range(0, len(runs), MAX_RANGES_PER_EVENT)
        ]

    def add(self, more: Correction) -> None:
        """Fold a later chunk of the same pass into this summary (for the log)."""
        self.origin, self.source = more.origin, more.source
        self.corrected += more.corrected
        self.uploaded_ranges += more.uploaded_ranges
        self.new_origin = self.new_origin or more.new_origin


def boot_of(clock: object) -> str | None:
    """The boot whose monotonic time `clock` reads, or None when its stamps never need (or
    cannot get) correcting: simulated and virtual clocks, a system without a boot id.

    Replayed stamps (hub.replay) are safe only because replay runs on those clocks: a
    recording's monotonic times are another boot's, and correcting them with this boot's
    origin would be wrong. A replay on a BootClock would need its own boot id."""
    return clock.boot_id if isinstance(clock, BootClock) else None


def ntp_origin(clock: object) -> Origin | None:
    """The origin `clock` vouches for now (its wall clock is synchronised), if any."""
    if not isinstance(clock, BootClock) or clock.boot_id is None:
        return None
    wall_at_zero = clock.synced_origin()
    if wall_at_zero is None:
        return None
    return Origin(clock.boot_id, wall_at_zero, OriginSource.NTP)


def record_boot(conn: sqlite3.Connection, boot_id: str, first_seq: int) -> None:
    """Note that `boot_id` numbers from `first_seq` on; a restart within the same boot keeps
    the row it has (its events started earlier)."""
    conn.execute(
        "INSERT OR IGNORE INTO boots (boot_id, first_seq) VALUES (?, ?)", (boot_id, first_seq)
    )


def renumber_boot(conn: sqlite3.Connection, boot_id: str, first_seq: int) -> None:
    """After a recovery (a fresh file) numbered on from `first_seq`: this boot starts there.
    The salvaged rows below it are earlier boots' (or this one's, unknowably): left alone."""
    conn.execute(
        "UPDATE boots SET first_seq = ? WHERE boot_id = ? AND first_seq < ?",
        (first_seq, boot_id, first_seq),
    )


def earlier_boots_with_origin(conn: sqlite3.Connection, current: str | None) -> list[str]:
    """Boots other than `current` whose origin is recorded: the power may have gone between
    recording it and correcting the last chunk, so the store finishes them at open."""
    rows = conn.execute("SELECT boot_id FROM boots WHERE origin IS NOT NULL ORDER BY n")
    return [b for (b,) in rows if b != current]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a correction of one boot would do, decided by reading only."""

    n: int  # the boot's row
    first_seq: int
    origin: float
    source: OriginSource
    learned: bool  # the origin is new (or better): record it
    recorrect: bool  # rows corrected with an earlier origin are corrected again
    where: str  # the rows to correct
    bounds: tuple[int, ...]
    has_work: bool


def _known_source(name: str | None) -> OriginSource | None:
    """A source this version knows; one written by a newer version (then downgraded) counts
    as no origin, so the next one learnt replaces it, rather than stopping the store."""
    try:
        return None if name is None else OriginSource(name)
    except ValueError:
        return None


def plan(conn: sqlite3.Connection, boot_id: str, new: Origin | None) -> Plan | None:
    """Read-only: with which origin boot `boot_id` would be corrected (`new` if better than
    the recorded one, else the recorded one) and whether any row needs it. None when the
    boot is unknown or its origin is. Lets the caller skip the write lock when idle."""
    row = conn.execute(
        "SELECT n, first_seq, origin, origin_source, recorrect_from FROM boots WHERE boot_id = ?",
        (boot_id,),
    ).fetchone()
    if row is None:
        return None
    n, first_seq, origin, source_name, recorrect_from = row
    source = _known_source(source_name)
    learned = False
    if new is not None and _better(new, boot_id, source):
        learned = True
        if origin is not None and origin != new.wall_at_zero:
            recorrect_from = first_seq  # every row the old origin corrected, again
        origin, source = new.wall_at_zero, new.source
    if origin is None or source is None:
        return None
    after = conn.execute("SELECT first_seq FROM boots WHERE n > ? ORDER BY n LIMIT 1", (n,))
    end_row = after.fetchone()
    # `clock_synced = 0` spelled out lets SQLite use the partial index (schema m004); a
    # better origin re-corrects the rows an earlier one corrected: a range scan from the
    # recorded cursor, once a boot.
    recorrect = recorrect_from is not None
    which = (
        f"clock_synced IN ({CLOCK_UNSYNCED}, {CLOCK_CORRECTED})"
        if recorrect
        else f"clock_synced = {CLOCK_UNSYNCED}"
    )
    start = max(first_seq, recorrect_from) if recorrect else first_seq
    where = f"{which} AND seq >= ?" + ("" if end_row is None else " AND seq < ?")
    bounds = (start,) if end_row is None else (start, end_row[0])
    has_work = learned or (
        conn.execute(f"SELECT 1 FROM events WHERE {where} LIMIT 1", bounds).fetchone() is not None
    )
    return Plan(n, first_seq, origin, source, learned, recorrect, where, bounds, has_work)


def apply_chunk(
    conn: sqlite3.Connection, boot_id: str, todo: Plan, limit: int, sent_upto: int
) -> Correction:
    """Carry out the next `limit` rows of `todo` (planned inside the same write transaction,
    so nothing changed since): record a learned origin, correct the rows, say which the
    council may hold. Chunks keep each write transaction (and the WAL) small, and let an
    alert commit between them; the formula is absolute, so stopping anywhere is safe."""
    _learn(conn, todo)
    picked = conn.execute(
        f"SELECT seq, synced FROM events WHERE {todo.where} ORDER BY seq LIMIT ?",
        (*todo.bounds, limit),
    ).fetchall()
    if todo.recorrect:  # the cursor moves with the rows: a restart resumes, not restarts
        done = len(picked) < limit
        conn.execute(
            "UPDATE boots SET recorrect_from = ? WHERE n = ?",
            (None if done else picked[-1][0] + 1, todo.n),
        )
    return _correct(conn, boot_id, todo, picked, sent_upto)


def apply_seqs(
    conn: sqlite3.Connection, boot_id: str, todo: Plan, seqs: Iterable[int], sent_upto: int
) -> Correction:
    """Like `apply_chunk`, but only for these rows (an outbox batch about to be read)."""
    _learn(conn, todo)
    sql = f"SELECT seq, synced FROM events WHERE {todo.where} AND seq IN ({{marks}}) ORDER BY seq"
    wanted = sorted(set(seqs))
    picked = [(s, synced) for cur in in_chunks(conn, sql, wanted, todo.bounds) for s, synced in cur]
    return _correct(conn, boot_id, todo, picked, sent_upto)


def _learn(conn: sqlite3.Connection, todo: Plan) -> None:
    if todo.learned:
        conn.execute(
            "UPDATE boots SET origin = ?, origin_source = ?,"
            " recorrect_from = CASE WHEN ? THEN ? ELSE recorrect_from END WHERE n = ?",
            (todo.origin, todo.source.value, todo.recorrect, todo.bounds[0], todo.n),
        )


def _correct(
    conn: sqlite3.Connection,
    boot_id: str,
    todo: Plan,
    picked: list[tuple[int, int]],
    sent_upto: int,
) -> Correction:
    """Correct the picked rows (seq, synced), run by run: within a run of consecutive seqs
    every row matching `todo.where` is a picked one, so a range update is exact."""
    seqs = [s for s, _ in picked]
    conn.executemany(
        f"UPDATE events SET wall_time = ? + monotonic, clock_synced = {CLOCK_CORRECTED}"
        f" WHERE {todo.where} AND seq BETWEEN ? AND ?",
        [(todo.origin, *todo.bounds, first, last) for first, last in runs(seqs)],
    )
    told = [s for s, synced in picked if synced == 1 or s <= sent_upto]
    return Correction(boot_id, todo.origin, todo.source, len(seqs), runs(told), todo.learned)


def _better(new: Origin, boot_id: str, recorded: OriginSource | None) -> bool:
    """Whether `new` should replace the boot's recorded origin: the first one is kept
    (a second council estimate is no better than the first), only a better source wins."""
    if new.boot_id != boot_id or not new.usable():
        return False
    return recorded is None or _RANK[new.source] > _RANK[recorded]


def detach_moved(conn: sqlite3.Connection, moves: Mapping[int, int]) -> int:
    """Rows renumbered (old -> new seq) into another boot's range keep their times but are
    never corrected again: the origin of the boot they now sit in is not theirs. Runs inside
    the renumbering transaction; returns how many rows were detached."""
    firsts = [f for (f,) in conn.execute("SELECT first_seq FROM boots ORDER BY n")]

    def boot_index(seq: int) -> int:  # -1: before any recorded boot
        return bisect.bisect_right(firsts, seq) - 1

    away = [new for old, new in moves.items() if boot_index(old) != boot_index(new)]
    sql = (
        f"UPDATE events SET clock_synced = CASE clock_synced"
        f" WHEN {CLOCK_UNSYNCED} THEN {CLOCK_UNSYNCED_DETACHED}"
        f" ELSE {CLOCK_CORRECTED_DETACHED} END"
        f" WHERE clock_synced IN ({CLOCK_UNSYNCED}, {CLOCK_CORRECTED})"
        " AND seq IN ({marks})"
    )
    return sum(cur.rowcount for cur in in_chunks(conn, sql, away))


def runs(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted sequence numbers as inclusive [first, last] runs."""
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def corrected_stamp(stamp: Stamp, correction: Correction) -> Stamp:
    """`stamp` as the correction would leave it: the system event reporting a correction is
    itself stamped with the corrected time when the clock is still unsynchronised."""
    if stamp.clock_synced or stamp.clock_corrected:
        return stamp
    return Stamp(correction.origin + stamp.monotonic, False, stamp.monotonic, True)
