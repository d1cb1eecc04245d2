"""Group commit: bounded waiting for readings, none for alerts, nothing lost on failure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.events import Alert, Reading, SystemEvent, SystemKind
from hub.store import GroupCommitter, Store
from tests.factories import alert, reading

WAIT_S = 10.0  # generous: these wait on a condition, never on the clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db")
    yield s
    s.close()


def test_readings_are_committed_by_the_flusher_without_being_asked(store: Store) -> None:
    committed = threading.Event()
    committer = GroupCommitter(store, max_latency_s=0.05, on_commit=lambda _: committed.set())
    committer.start()
    for i in range(10):
        committer.add(reading(i))
    assert committed.wait(WAIT_S)
    assert store.last_seq == 10 and committer.stats.commits == 1  # one transaction for all ten
    committer.close()


def test_an_alert_is_committed_before_add_returns_with_the_readings_before_it(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600)  # the flusher would never get to it
    committer.start()
    committer.add(reading(1))
    committer.add(reading(2))
    committer.add(alert(3))
    assert [e.seq for e in store.events()] == [1, 2, 3]
    assert [e.event for e in store.events()][2] == alert(3)
    committer.close()


def test_close_commits_everything_still_queued(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600)
    committer.start()
    for i in range(25):
        committer.add(reading(i))
    committer.close()
    assert store.last_seq == 25


def test_a_full_batch_wakes_the_flusher_at_once(store: Store) -> None:
    committed = threading.Event()
    committer = GroupCommitter(
        store, max_latency_s=3600, max_batch=100, on_commit=lambda _: committed.set()
    )
    committer.start()
    for i in range(100):
        committer.add(reading(i))
    assert committed.wait(WAIT_S)
    assert store.last_seq == 100
    committer.close()


def refuse_writes(store: Store, refuse: bool) -> None:
    """Make SQLite itself report a full database: the real SQLITE_FULL code path."""
    conn = store._conn  # the test reaches into the one connection on purpose
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages if refuse else 1_000_000_000}")


def test_a_refused_commit_keeps_its_events_for_the_next_attempt(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600)
    store.commit([reading(0)])
    refuse_writes(store, True)
    for i in range(1, 2000):
        committer.add(reading(i))
    committer.add(alert(5000))  # never raises into a check or driver...
    # ...the refused batch wrote nothing, but its alert went in by itself (one row fits)
    assert store.last_seq == 2 and store.events(after_seq=1)[0].event == alert(5000)
    assert committer.stats.failures == 1 and "full" in str(committer.stats.last_error)
    assert committer.pending == 1999  # the readings wait for the retry
    refuse_writes(store, False)
    committer.flush()
    assert store.last_seq == 2001 and len(store.events(limit=10_000)) == 2001
    assert [e.event for e in store.events(after_seq=2, limit=10_000)] == [
        reading(i) for i in range(1, 2000)
    ]


def test_memory_stays_bounded_while_the_disk_refuses_and_alerts_are_kept(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=10**6, max_pending=100)
    store.commit([reading(0)])
    refuse_writes(store, True)
    for round_ in range(3):
        for i in range(300):
            committer.add(reading(i))
        committer.add(alert(round_, check=f"c{round_}"))
        assert committer.pending <= 100
    refuse_writes(store, False)
    committer.flush()
    events = [e.event for e in store.events(after_seq=1, limit=1000)]
    assert [e.check for e in events if isinstance(e, Alert)] == ["c0", "c1", "c2"]
    gaps = [e for e in events if isinstance(e, SystemEvent) and e.kind is SystemKind.GAP]
    kept_readings = sum(1 for e in events if isinstance(e, Reading))
    # Each alert went in alone, with a gap event for the readings dropped before it.
    assert len(gaps) == 3
    assert sum(g.details["dropped_readings"] for g in gaps) + kept_readings == 900


def test_the_flusher_outlives_a_failing_commit_listener(store: Store) -> None:
    calls: list[int] = []

    def listener(seqs: object) -> None:
        calls.append(1)
        raise RuntimeError("a listener bug")

    committer = GroupCommitter(store, max_latency_s=0.01, on_commit=listener)
    committer.start()
    committer.add(reading(1))
    committer.add(alert(2))  # committed inline, listener raises: add still returns
    committer.add(reading(3))
    committer.close()
    assert store.last_seq == 3 and len(calls) >= 2


def test_an_unwritable_sequence_reservation_refuses_the_commit_and_loses_nothing(
    store: Store,
) -> None:
    committer = GroupCommitter(store, max_latency_s=3600)
    store.commit([reading(0)])
    store._reservation.reserved_upto = store.last_seq  # the next commit must extend it
    store._reservation.path.unlink()
    store._reservation.path.mkdir()  # an OSError, not an SQLite error, when it is written
    committer.add(reading(1))
    committer.add(alert(2))
    assert store.last_seq == 1 and committer.stats.failures == 1 and committer.pending == 2
    store._reservation.path.rmdir()
    committer.flush()
    # After a refusal the alert goes in ahead of the readings queued before it.
    assert [e.event for e in store.events(after_seq=1)] == [alert(2), reading(1)]


def test_evidence_json_cannot_hold_is_kept_as_text(store: Store) -> None:
    committer = GroupCommitter(store)
    odd = alert(1)
    odd = Alert(
        odd.check,
        odd.severity,
        odd.state,
        odd.room,
        odd.sensor_id,
        odd.start,
        None,
        {"path": Path("/dev/ttyS0"), "n": 3},
        odd.stamp,
    )
    committer.add(odd)
    [stored] = store.events()
    assert isinstance(stored.event, Alert)
    assert stored.event.evidence == {"path": "/dev/ttyS0", "n": 3}


def test_readings_never_raise_while_the_disk_refuses(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=100, max_pending=500)
    committer.start()
    store.commit([reading(0)])
    refuse_writes(store, True)
    for i in range(3000):
        committer.add(reading(i))  # a driver's emit: must never see the disk's trouble
    assert committer.pending <= 500
    refuse_writes(store, False)
    committer.close()
    assert store.last_seq > 1


def test_a_fast_producer_on_a_healthy_disk_loses_nothing(store: Store) -> None:
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=100, max_pending=300)
    committer.start()
    for i in range(5000):  # far faster than one flusher thread commits 100 at a time
        committer.add(reading(i))
    committer.close()
    assert store.last_seq == 5000 and committer.stats.dropped_in_memory == 0


def test_after_a_refusal_queued_alerts_go_in_ahead_of_the_backlog(store: Store) -> None:
    """While the disk refuses, a backlog of readings builds up; when writes resume, each of
    its chunks may cost a refusal and a pruning on a full disk: the alerts queued behind it
    go in first, in a transaction of their own."""
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=100)
    store.commit([reading(0)])
    store._conn.execute("PRAGMA query_only = ON")  # every write refused
    for i in range(1, 351):
        committer.add(reading(i))
    committer.add(alert(1000))
    assert committer.pending == 351 and committer.stats.failures >= 1
    store._conn.execute("PRAGMA query_only = OFF")
    committer.flush()
    events = [e.event for e in store.events(after_seq=1, limit=1000)]
    assert events == [alert(1000), *(reading(i) for i in range(1, 351))]
