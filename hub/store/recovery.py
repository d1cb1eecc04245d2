"""Start-up health of the buffer file, and the sequence floor that survives losing it.

A hub that finds its buffer damaged must neither crash-loop nor reuse sequence numbers the
council has already seen (the council would drop new events as duplicates: silent loss).
So sequence numbers are reserved in blocks in a small sidecar file, written rarely (once per
block, not per commit, to spare the SD card), and a new buffer always starts above it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.fsutil import atomic_write_text

log = logging.getLogger(__name__)

SEQ_RESERVE_BLOCK = 100_000
# Moved-aside files kept for forensics; older ones are deleted. One: each can be as large as
# the quota, and a small SD card must not fill up with copies of broken buffers.
KEEP_DAMAGED_COPIES = 1
_SIDE_FILES = ("-wal", "-shm")


@dataclass(frozen=True)
class Recovery:
    """What happened when a damaged buffer was found at start-up."""

    moved_to: str
    problem: str


class SequenceReservation:
    """The highest sequence number this hub may have handed out, kept beside the buffer."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".seq")
        self.reserved_upto = self._read()

    def _read(self) -> int:
        try:
            return max(0, int(self.path.read_text().strip()))
        except (OSError, ValueError):
            return 0

    def ensure(self, upto: int) -> None:
        """Make sure `upto` is covered by the reservation on disk before it is used.

        The file is read again before it is written: another process on the same buffer
        (`hearth sync now` beside `hearth run`) may have reserved further, and a reservation
        must never go down. Callers hold the buffer's write lock (BEGIN IMMEDIATE) or the
        store's lock, and writes are rare (once per SEQ_RESERVE_BLOCK numbers)."""
        if upto <= self.reserved_upto:
            return
        self.reserved_upto = max(self.reserved_upto, self._read())
        if upto <= self.reserved_upto:
            return
        new_upto = upto + SEQ_RESERVE_BLOCK
        atomic_write_text(self.path, f"{new_upto}\n")
        self.reserved_upto = new_upto


class StoreOpenError(Exception):
    """The buffer could not be opened for a reason that is not damage (locked, unreadable,
    I/O error). The file is left alone: moving a sound buffer aside would lose its backlog."""


# Only these say the file itself is bad; anything else (busy, locked, cannot open, I/O) may
# pass, and the hub should fail and be restarted rather than throw the buffer away.
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
OPEN_TIMEOUT_S = 5.0


def find_problem(db_path: Path) -> str | None:
    """Why the buffer file is damaged, or None if it looks sound (or does not exist).
    Raises StoreOpenError when it cannot be checked at all."""
    if not db_path.exists():
        return None
    try:
        conn = sqlite3.connect(db_path, timeout=OPEN_TIMEOUT_S)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _DAMAGE_CODES:
            return f"{getattr(exc, 'sqlite_errorname', type(exc).__name__)}: {exc}"
        raise StoreOpenError(f"cannot check the buffer {db_path}: {exc}") from exc
    result = [str(r[0]) for r in rows]
    if result != ["ok"]:
        return ("quick_check: " + "; ".join(result[:3]))[:300]
    return None


@dataclass
class SalvageStats:
    max_seq: int | None = None
    rows_seen: int = 0
    stopped_by_damage: int = 0  # scans (forward, backward) that ran into a bad page


def salvage_unsynced(db_path: Path, select: str, stats: SalvageStats) -> Iterator[tuple[Any, ...]]:
    """Unsynced rows still readable in a damaged file, oldest first.

    A table scan forward up to the first bad page, then backward from the end down to it:
    everything but the damaged stretch, streamed (a full buffer does not fit in memory).
    `select` is the events SELECT ending in "FROM events"; column 0 is seq, column 2 synced.
    """
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        forward_max = 0
        for row in _scan_until_damage(conn, f"{select} NOT INDEXED ORDER BY seq", stats):
            forward_max = int(row[0])
            if row[2] == 0:
                yield row
        backward = []
        for row in _scan_until_damage(conn, f"{select} NOT INDEXED ORDER BY seq DESC", stats):
            if int(row[0]) <= forward_max:
                break
            if row[2] == 0:
                backward.append(row)
        yield from reversed(backward)  # past the damage: usually the short recent end
    finally:
        conn.close()


def _scan_until_damage(
    conn: sqlite3.Connection, query: str, stats: SalvageStats
) -> Iterator[tuple[Any, ...]]:
    try:
        for row in conn.execute(query):
            stats.rows_seen += 1
            stats.max_seq = max(stats.max_seq or 0, int(row[0]))
            yield row
    except sqlite3.DatabaseError:
        stats.stopped_by_damage += 1


def move_aside(db_path: Path, problem: str) -> Recovery:
    """Move the damaged file (and its WAL) out of the way, keeping the latest for forensics."""
    # Numbered, not only dated: the clock of a Pi without RTC cannot be trusted to sort them.
    number = max((n for n, _ in _damaged_copies(db_path)), default=0) + 1
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = db_path.with_name(f"{db_path.name}.damaged-{number:04d}-{stamp}")
    db_path.replace(target)
    for suffix in _SIDE_FILES:
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    _delete_old_copies(db_path)
    log.error("buffer %s was damaged (%s); moved to %s", db_path, problem, target)
    return Recovery(moved_to=str(target), problem=problem)


def _damaged_copies(db_path: Path) -> list[tuple[int, Path]]:
    copies = []
    for path in db_path.parent.glob(db_path.name + ".damaged-*"):
        number = path.name.removeprefix(db_path.name + ".damaged-").split("-", 1)[0]
        if number.isdigit() and not path.name.endswith(_SIDE_FILES):
            copies.append((int(number), path))
    return sorted(copies)


def _delete_old_copies(db_path: Path) -> None:
    for _, old in _damaged_copies(db_path)[:-KEEP_DAMAGED_COPIES]:
        for path in (old, *(old.with_name(old.name + s) for s in _SIDE_FILES)):
            path.unlink(missing_ok=True)
