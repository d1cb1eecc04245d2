"""A damaged buffer is moved aside, a fresh one begun, and the fact recorded; no crash loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.events import SystemEvent, SystemKind
from hub.store import Store, StoreOpenError
from hub.store.recovery import KEEP_DAMAGED_COPIES
from tests.factories import alert, reading


def damaged_copies(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if ".damaged-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def fill(path: Path, n: int) -> int:
    store = Store.open(path)
    last = store.commit([reading(i) for i in range(n)])[-1]
    store.close()
    return last


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"this is not an sqlite file, the SD card ate it" * 100)
    store = Store.open(path)
    [moved] = damaged_copies(tmp_path)
    assert moved.read_bytes().startswith(b"this is not an sqlite file")
    [first] = store.events()
    assert isinstance(first.event, SystemEvent) and first.event.kind is SystemKind.STORE_RECOVERED
    assert first.event.details["moved_to"] == str(moved)
    assert "not a database" in str(first.event.details["problem"])
    assert store.recovery is not None
    store.close()


def test_corrupt_pages_are_detected_and_sequence_numbers_resume_above_the_old_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    old_last = fill(path, 3000)
    with path.open("r+b") as f:  # scribble over b-tree pages past the schema page
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)
    store = Store.open(path)
    assert len(damaged_copies(tmp_path)) == 1
    [first] = store.events()
    assert first.event.kind is SystemKind.STORE_RECOVERED  # type: ignore[union-attr]
    assert first.seq > old_last
    assert store.commit([reading(0)])[0] == first.seq + 1
    store.close()


def test_the_next_start_after_a_recovery_is_normal(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"\x00garbage" * 512)
    Store.open(path).close()
    store = Store.open(path)
    assert store.recovery is None and len(damaged_copies(tmp_path)) == 1
    assert len(store.events()) == 1
    store.close()


def test_only_the_latest_damaged_copies_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    for i in range(KEEP_DAMAGED_COPIES + 2):
        path.write_bytes(f"garbage {i}".encode() * 512)
        Store.open(path).close()
    copies = damaged_copies(tmp_path)
    assert len(copies) == KEEP_DAMAGED_COPIES
    assert copies[-1].read_bytes().startswith(f"garbage {KEEP_DAMAGED_COPIES + 1}".encode())


def test_a_sound_buffer_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    fill(path, 10)
    store = Store.open(path)
    assert store.recovery is None and damaged_copies(tmp_path) == []
    assert len(store.events()) == 10
    store.close()


@pytest.mark.parametrize("damage", ["truncate", "zero_header"])
def test_other_damage_is_recovered_too(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "hub.db"
    fill(path, 2000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\0" * 100 + data[100:])
    store = Store.open(path)
    assert store.recovery is not None
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store.close()


def test_a_locked_buffer_is_not_mistaken_for_a_damaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.db"
    fill(path, 10)
    monkeypatch.setattr("hub.store.recovery.OPEN_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreOpenError, match="locked"):
        Store.open(path)
    holder.rollback()
    holder.close()
    assert damaged_copies(tmp_path) == []
    assert len(Store.open(path).events()) == 10


def test_unsynced_events_still_readable_are_carried_over_with_their_seqs(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = Store.open(path)
    early_alert = store.commit([alert(0)])[0]
    readings = store.commit([reading(i) for i in range(20_000)])
    store.mark_synced(readings[:5000])
    store.close()
    with path.open("r+b") as f:  # damage a stretch of pages in the middle of the table
        f.seek(path.stat().st_size // 2)
        f.write(b"\xa5" * 4096 * 3)
    store = Store.open(path)
    assert store.recovery is not None
    carried = {e.seq: e.event for e in store.events(limit=100_000)}
    recovered = max(carried)
    details = carried.pop(recovered).details  # type: ignore[union-attr]
    assert early_alert in carried and carried[early_alert] == alert(0)
    assert details["unsynced_carried_over"] == len(carried) > 5000
    assert not set(readings[:5000]) & set(carried)  # synced events are not carried over
    assert recovered > readings[-1]
    store.close()
