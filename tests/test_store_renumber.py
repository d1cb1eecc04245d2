"""Store additions for sync: renumbering events the council holds with other content, the
sequence floor from the council's high water, and the meta the uploader keeps."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.events import Alert, Reading, SystemEvent, SystemKind
from hub.store import Store, StoreWriteError
from hub.store.buffer import inspect_meta
from hub.store.recovery import SequenceReservation
from tests.factories import alert, reading

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db")
    yield s
    s.close()


def values_by_seq(store: Store) -> dict[int, float]:
    out = {}
    for e in store.events(limit=100_000):
        assert isinstance(e.event, Reading | Alert)
        out[e.seq] = e.event.value if isinstance(e.event, Reading) else e.event.start
    return out


def test_renumber_moves_unsynced_events_above_everything_in_order(store: Store) -> None:
    store.commit([reading(i, value=float(i)) for i in range(10)])  # seqs 1..10
    store.mark_synced([1, 2])
    moved = store.renumber([7, 3, 99, 1], floor=0)  # 99 unknown, 1 synced: both left alone
    assert moved == {3: 11, 7: 12}
    by_seq = values_by_seq(store)
    assert by_seq[11] == 2.0 and by_seq[12] == 6.0  # the same events, in their old order
    assert 3 not in by_seq and 7 not in by_seq
    assert store.last_seq == 12
    assert store.commit([reading(50)]) == [13]  # new events continue above the moved ones


def test_renumber_goes_above_the_councils_high_water(store: Store) -> None:
    store.commit([reading(i, value=float(i)) for i in range(5)])
    assert store.renumber([4, 5], floor=1000) == {4: 1001, 5: 1002}
    assert store.commit([reading(9)]) == [1003]
    assert [e.seq for e in store.next_batch(10)] == [1, 2, 3, 1001, 1002, 1003]


def test_renumber_moves_alert_state_references_with_the_alert(store: Store) -> None:
    store.commit([reading(0), alert(1, check="leak", room="kitchen")])  # alert is seq 2
    assert store.open_alerts()[0]["seq"] == 2
    assert store.renumber([2]) == {2: 3}
    assert store.open_alerts()[0]["seq"] == 3
    assert [e.seq for e in store.next_batch(1)] == [3]  # still first: it is an alert


def test_renumbered_numbers_survive_reopen_and_stay_covered_by_the_reservation(
    tmp_path: Path,
) -> None:
    db = tmp_path / "hub.db"
    s = Store.open(db)
    s.commit([reading(i) for i in range(3)])
    s.renumber([2], floor=250_000)  # far beyond the first reserved block
    s.close()
    assert SequenceReservation(db).reserved_upto >= 250_001
    s = Store.open(db)
    assert [e.seq for e in s.events()] == [1, 3, 250_001]
    assert s.commit([reading(9)]) == [250_002]
    s.close()


def test_a_failed_renumber_changes_nothing(store: Store) -> None:
    store.commit([reading(i, value=float(i)) for i in range(6)])
    before = values_by_seq(store)
    # Make the third move fail inside the transaction: the first two must be rolled back.
    store._conn.execute(
        "CREATE TEMP TRIGGER refuse AFTER UPDATE ON events WHEN new.seq = 9"
        " BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
    )
    with pytest.raises(StoreWriteError, match="simulated I/O error"):
        store.renumber([1, 2, 3], floor=6)
    assert values_by_seq(store) == before
    assert store.last_seq == 6
    store._conn.execute("DROP TRIGGER refuse")
    assert store.renumber([1, 2, 3], floor=6) == {1: 7, 2: 8, 3: 9}


def test_raise_seq_floor_only_writes_when_the_council_is_ahead(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    s = Store.open(db)
    s.commit([reading(i) for i in range(5)])
    assert s.raise_seq_floor(3) is False  # the normal case: nothing to do, no write
    assert s.raise_seq_floor(5) is False
    assert "seq_floor" not in inspect_meta(db)
    assert s.raise_seq_floor(400_000) is True  # this hub lost commits the council holds
    assert s.commit([reading(9)]) == [400_001]
    s.close()
    assert int(inspect_meta(db)["seq_floor"]) == 400_000
    assert SequenceReservation(db).reserved_upto >= 400_001
    # A brand-new buffer after this one (moved aside as damaged) starts above it too.
    db.unlink()
    for side in ("-wal", "-shm"):
        db.with_name(db.name + side).unlink(missing_ok=True)
    s = Store.open(db)
    assert s.commit([reading(10)])[0] > 400_001
    s.close()


def test_floor_survives_reopen_even_when_the_events_above_it_are_gone(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    s = Store.open(db)
    s.commit([reading(1)])
    s.raise_seq_floor(77)
    s.close()
    s = Store.open(db)
    assert s.commit([reading(2)]) == [78]
    s.close()


def test_a_floor_from_another_process_is_respected_by_renumber(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    a = Store.open(db)
    b = Store.open(db)  # `hearth sync now` beside `hearth run`
    a.commit([reading(i) for i in range(3)])
    b.commit([reading(i) for i in range(3, 5)])  # b re-reads its counter: seqs 4, 5
    assert a.renumber([1]) == {1: 6}  # a's counter says 3; the file says 5
    a.close()
    b.close()


def test_meta_set_get_delete_and_queue_depth(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    s = Store.open(db)
    s.commit([reading(i) for i in range(4)])
    s.mark_synced([1])
    assert s.queue_depth() == 3
    s.set_meta({"last_sync_error": "council said 422", "last_sync_error_at": "12.5"})
    assert s.get_meta("last_sync_error") == "council said 422"
    s.set_meta({"last_sync_error": None})
    assert s.get_meta("last_sync_error") is None
    s.close()
    meta = inspect_meta(db)
    assert meta["last_sync_error_at"] == "12.5" and "last_sync_at" in meta


# -- kill -9 during renumbering ------------------------------------------------------------

_RENUMBERER = """
import os, sys
from pathlib import Path
from hub.store import Store
from tests.factories import alert, reading
s = Store.open(Path(sys.argv[1]))
if s.last_seq == 0:
    s.commit([reading(i, value=float(i)) for i in range(1500)] + [alert(2000.0, check="c")])
os.write(1, b"ready\\n")
while True:
    unsynced = [e.seq for e in s.next_batch(5000)]
    moved = s.renumber(unsynced, floor=0)
    os.write(1, f"moved {len(moved)}\\n".encode())
"""


def test_kill_during_renumber_leaves_every_event_exactly_once(tmp_path: Path) -> None:
    """Each renumber is one transaction: whenever the process dies, every event is held
    exactly once, under its old or its new number, with alert_state following."""
    db = tmp_path / "hub.db"
    rng = random.Random(5)
    expected = {float(i) for i in range(1500)} | {2000.0}
    kills = int(os.environ.get("HEARTH_RENUMBER_KILLS", "6"))
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", _RENUMBERER, str(db)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        for _ in range(rng.randint(1, 4)):  # let a few renumbers finish, then kill mid-run
            assert proc.stdout.readline().startswith(b"moved ")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()

        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT seq, kind, value, body FROM events").fetchall()
        (state_seq,) = conn.execute("SELECT seq FROM alert_state").fetchone()
        conn.close()
        held = [r[2] for r in rows if r[1] == "reading"]
        assert len(held) == 1500 and set(held) | {2000.0} == expected
        alert_seqs = [r[0] for r in rows if r[1] == "alert"]
        assert alert_seqs == [state_seq]  # the reference moved with the alert, atomically
        assert SequenceReservation(db).reserved_upto >= max(r[0] for r in rows)
    s = Store.open(db)
    assert s.commit([reading(1e6)])[0] > max(r[0] for r in rows)
    s.close()


def test_raise_seq_floor_compares_with_the_file_not_a_stale_counter(tmp_path: Path) -> None:
    """`hearth sync now` (b) beside `hearth run` (a): a's commits moved the file past b's
    counter; b must not write a floor below them, nor hand out their numbers."""
    db = tmp_path / "hub.db"
    a = Store.open(db)
    b = Store.open(db)
    a.commit([reading(i) for i in range(10)])  # 1..10, b still thinks 1 is next
    assert b.raise_seq_floor(7) is False  # the file already has 10
    assert "seq_floor" not in inspect_meta(db)
    assert b.commit([reading(20)]) == [11]
    a.close()
    b.close()


def test_the_reservation_is_read_again_before_it_is_written(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    a = SequenceReservation(db)
    b = SequenceReservation(db)
    a.ensure(500_000)
    b.ensure(10)  # b's memory says 0: it must not write a lower reservation over a's
    assert SequenceReservation(db).reserved_upto >= 500_000


def test_rejected_events_leave_the_outbox_with_a_report(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "hub.db")
    s.commit([reading(i) for i in range(5)])
    report_seq = s.reject([2, 4, 99], "the council refused it (422): bad value")
    assert report_seq == 6
    assert [e.seq for e in s.next_batch()] == [6, 1, 3, 5]  # the report first (system)
    report = s.events(after_seq=5)[0].event
    assert isinstance(report, SystemEvent) and report.kind is SystemKind.UPLOAD_REJECTED
    assert dict(report.details) == {
        "seqs": [2, 4],
        "reason": "the council refused it (422): bad value",
    }
    status = s.status()
    assert status.rejected == 2 and sum(status.queue_depth.values()) == 4
    assert s.reject([2, 4], "again") is None  # no longer unsynced: nothing to do
    s.mark_synced([2])  # an ack cannot turn a rejected event into a synced one
    assert s.status().rejected == 2
    s.close()
