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
from dataclasses import dataclass
from pathlib import Path

from hub.fsutil import atomic_write_text

log = logging.getLogger(__name__)

SEQ_RESERVE_BLOCK = 100_000
KEEP_DAMAGED_COPIES = 2  # moved-aside files kept for forensics; older ones are deleted
_SIDE_FILES = ("-wal", "-shm")


@dataclass(frozen=True)
class Recovery:
    """What happened when a damaged buffer was found at start-up."""

    moved_to: str
    problem: str
    salvaged_max_seq: int | None


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
        """Make sure `upto` is covered by the reservation on disk before it is used."""
        if upto <= self.reserved_upto:
            return
        new_upto = upto + SEQ_RESERVE_BLOCK
        atomic_write_text(self.path, f"{new_upto}\n")
        self.reserved_upto = new_upto


def find_problem(db_path: Path) -> str | None:
    """Why the buffer file cannot be trusted, or None if it looks sound (or does not exist)."""
    if not db_path.exists():
        return None
    try:
        conn = sqlite3.connect(db_path)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"{type(exc).__name__}: {exc}"
    result = [str(r[0]) for r in rows]
    if result != ["ok"]:
        return "quick_check: " + "; ".join(result[:5])
    return None


def salvage_max_seq(db_path: Path) -> int | None:
    """Best effort: the highest sequence number still readable in a damaged file."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT max(seq) FROM events").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row and row[0] is not None else None


def move_aside(db_path: Path, problem: str) -> Recovery:
    """Move the damaged file (and its WAL) out of the way, keeping a few for forensics."""
    salvaged = salvage_max_seq(db_path)
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
    return Recovery(moved_to=str(target), problem=problem, salvaged_max_seq=salvaged)


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
