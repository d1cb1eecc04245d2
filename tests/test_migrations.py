"""An upgraded hub opens a buffer written by the first schema without losing a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hub.store import Store
from hub.store.schema import migrations

FIXTURE = Path(__file__).parent / "fixtures" / "schema1_buffer.sql"


def make_first_schema_buffer(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    rows = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    conn.close()
    return rows


def test_first_schema_buffer_migrates_with_every_row_intact(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    before = make_first_schema_buffer(path)
    unsynced_before = [r[0] for r in before if r[3] == 0]
    assert len(before) == 46 and unsynced_before

    store = Store.open(path)
    after = sqlite3.connect(path).execute("SELECT * FROM events ORDER BY seq").fetchall()
    assert after == before
    assert sorted(e.seq for e in store.next_batch(limit=1000)) == unsynced_before
    # m002 rebuilt the open-alert table from the alert history in the file
    assert [(a["check"], a["room"]) for a in store.status().open_alerts] == [
        ("pull_cord", "bathroom")
    ]
    assert store.last_seq == 46
    store.close()


def test_every_migration_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_first_schema_buffer(path)
    Store.open(path).close()
    Store.open(path).close()
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == [m.name for m in migrations._migrations]
