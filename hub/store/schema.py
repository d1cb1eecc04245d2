"""Schema versions of the hub buffer, applied with sqlite-utils' Migrations.

Rules for whoever adds the next one: never edit a released migration (hubs in the field
have already run it); a migration must keep every row, above all unsynced ones; each runs in
one transaction, so a power cut mid-upgrade leaves the previous version intact.
tests/fixtures/schema1_buffer.sql is a buffer made by the first release: keep it passing.
"""

from __future__ import annotations

import json

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATION_SET = "hearth-buffer"
migrations = Migrations(MIGRATION_SET)


@migrations()
def m001_events_outbox(db: Database) -> None:
    """Every event in one table, ordered by `seq`; `synced` + priority make it an outbox."""
    db.execute(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            priority INTEGER NOT NULL,
            synced INTEGER NOT NULL DEFAULT 0,
            wall_time REAL NOT NULL,
            clock_synced INTEGER NOT NULL,
            monotonic REAL NOT NULL,
            sensor_id TEXT,
            quantity TEXT,
            value REAL,
            body TEXT
        )
        """
    )
    # Only unsynced rows are indexed: the index stays as small as the backlog, and the
    # uploader's "next batch by priority" and the quota's "oldest routine" are both range scans.
    db.execute("CREATE INDEX events_outbox ON events (priority DESC, seq) WHERE synced = 0")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations()
def m002_open_alerts(db: Database) -> None:
    """Latest lifecycle step per alert condition, so status need not scan all history."""
    db.execute(
        """
        CREATE TABLE alert_state (
            check_name TEXT NOT NULL,
            room TEXT NOT NULL,
            sensor_id TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            since REAL NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (check_name, room, sensor_id)
        )
        """
    )
    rows = db.execute(
        "SELECT seq, sensor_id, body FROM events WHERE kind = 'alert' ORDER BY seq"
    ).fetchall()
    for seq, sensor_id, body in rows:
        alert = json.loads(body)
        db.execute(
            "INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                alert["check"],
                alert["room"],
                sensor_id or "",
                alert["severity"],
                alert["state"],
                alert["start"],
                seq,
            ),
        )


@migrations()
def m003_check_state(db: Database) -> None:
    """Saved state of the anomaly checks (hub.checks), one JSON row per check, so a restart
    forgets neither a running condition nor a learned routine. Not events: never synced."""
    db.execute(
        """
        CREATE TABLE check_state (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved_at REAL NOT NULL
        )
        """
    )


@migrations()
def m004_boots(db: Database) -> None:
    """The boots this buffer has seen, so stamps made before the clock was synchronised can be
    corrected once a sync reveals the boot's true origin (hub.store.clockfix).

    A boot's events are the sequence numbers from its `first_seq` up to the next boot's
    (rows are in boot order). `origin` is the wall time at which that boot's monotonic clock
    read 0, NULL until known; `origin_source` says how it was learned ('ntp', 'council').
    `recorrect_from`: a better origin replaced one already applied, and the rows from this
    seq on still carry the old one (corrected in chunks, so a restart resumes; NULL: none).
    Events stored before this migration belong to no recorded boot and stay uncorrected.
    The partial index holds only uncorrected unsynchronised stamps: finding them costs
    nothing once the clock is synchronised, and inserting synchronised rows never touches it.
    """
    db.execute(
        """
        CREATE TABLE boots (
            n INTEGER PRIMARY KEY,
            boot_id TEXT NOT NULL UNIQUE,
            first_seq INTEGER NOT NULL,
            origin REAL,
            origin_source TEXT,
            recorrect_from INTEGER
        )
        """
    )
    db.execute("CREATE INDEX events_clock_unsynced ON events (seq) WHERE clock_synced = 0")


def apply(db: Database) -> list[str]:
    """Bring the buffer to the current schema; returns the names of migrations applied."""
    pending = [m.name for m in migrations.pending(db)]
    migrations.apply(db)
    return pending
