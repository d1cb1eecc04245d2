"""The buffer as an outbox: ordering, priorities, acknowledgement, reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.events import AlertState, Priority, Quantity
from hub.store import Store
from tests.factories import T0, alert, reading, system


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "hub.db")
    yield s
    s.close()


def test_sequence_numbers_are_contiguous_and_survive_reopen(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "hub.db")
    assert s.commit([reading(i) for i in range(3)]) == [1, 2, 3]
    s.close()
    s = Store.open(tmp_path / "hub.db")
    assert s.commit([reading(9)]) == [4]
    assert [e.seq for e in s.events()] == [1, 2, 3, 4]
    s.close()


def test_events_round_trip_through_the_buffer(store: Store) -> None:
    events = [reading(1, quantity=Quantity.HUMIDITY, value=71.5), alert(2), system(3)]
    store.commit(events)
    assert [e.event for e in store.events()] == events


def test_next_batch_puts_alerts_first_then_system_then_readings(store: Store) -> None:
    store.commit([reading(i) for i in range(5)])
    store.commit([system(6)])
    store.commit([reading(7), alert(8)])
    batch = store.next_batch(limit=4)
    assert [e.event.priority for e in batch] == [
        Priority.ALERT,
        Priority.SYSTEM,
        Priority.ROUTINE,
        Priority.ROUTINE,
    ]
    assert [e.seq for e in batch] == [8, 6, 1, 2]


def test_acknowledged_events_are_never_offered_again(store: Store) -> None:
    store.commit([reading(i) for i in range(10)])
    first = store.next_batch(limit=4)
    assert store.mark_synced(e.seq for e in first) == 4
    assert store.mark_synced(e.seq for e in first) == 0  # a replayed acknowledgement
    second = store.next_batch(limit=100)
    assert [e.seq for e in second] == [5, 6, 7, 8, 9, 10]


def test_unacknowledged_batch_is_offered_again(store: Store) -> None:
    store.commit([reading(i) for i in range(3)])
    assert [e.seq for e in store.next_batch()] == [e.seq for e in store.next_batch()]


def test_status_reports_queue_oldest_last_sync_and_open_alerts(store: Store) -> None:
    store.commit([reading(0), reading(1), alert(2), alert(3, check="leak", room="kitchen")])
    store.commit([alert(4, state=AlertState.CLEARED)])
    store.mark_synced([1])
    st = store.status()
    assert st.queue_depth == {"alert": 3, "system": 0, "routine": 1}
    assert st.oldest_unsynced is not None and st.oldest_unsynced["seq"] == 2
    assert st.oldest_unsynced["wall_time"] == T0 + 1
    assert st.last_sync_at is not None
    assert [(a["check"], a["room"]) for a in st.open_alerts] == [("leak", "kitchen")]
    assert st.total_events == 5 and st.last_seq == 5


def test_a_new_buffer_never_reuses_sequence_numbers_of_a_lost_one(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "hub.db")
    s.commit([reading(i) for i in range(5)])
    s.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"hub.db{suffix}").unlink(missing_ok=True)
    s = Store.open(tmp_path / "hub.db")
    assert s.commit([reading(9)])[0] > 5
    s.close()


def test_the_buffer_runs_in_wal_mode_with_full_fsync(store: Store) -> None:
    """kill -9 cannot tell synchronous=FULL from OFF; a power cut can. So check it here."""
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_a_sequence_counter_behind_the_file_recovers_instead_of_jamming(store: Store) -> None:
    store.commit([reading(0)])
    store._conn.execute(  # a row the counter does not know about
        "INSERT INTO events (seq, kind, priority, wall_time, clock_synced, monotonic)"
        " VALUES (2, 'system', 1, 0, 0, 0)"
    )
    assert store.commit([reading(1)]) == [3]
