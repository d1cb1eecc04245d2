"""A really full disk (a small tmpfs and a filler file, like another program's runaway log):
the buffer degrades in DESIGN.md's order (synced events first, then the oldest unsynced
readings with a gap event, never an alert), the committer keeps running with bounded
memory, and everything resumes when the space comes back. See hub.store.diskfull."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.events import Alert, Reading, SystemEvent, SystemKind
from hub.store import GroupCommitter, Store, StoreLimits, inspect
from hub.store.diskfull import (
    LOW_BYTES,
    RESERVE_BYTES,
    checkpoint,
    disk_free,
    is_disk_full_error,
    reserve_path,
)
from tests.factories import alert, reading
from tests.smallfs import fill, small_filesystem

SMALLFS = pytest.mark.ci_required  # a skipped disk-full test proves nothing
MIB = 1024 * 1024
FS_BYTES = 64 * MIB  # the real 8 MiB reserve, 16 MiB kept free, a 4 MiB WAL, a few MiB of buffer
WAIT_S = 30.0
KEEP = 36_500  # retention days: the factories' events are dated 2025


@pytest.fixture
def disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path | None]:
    """The tmpfs, mounted here, or None: the test ran (and passed) in a user namespace.
    Parametrised indirectly with "namespaced", it takes the non-root way even as root."""
    namespace = getattr(request, "param", "mounted") == "namespaced"
    with small_filesystem(tmp_path, FS_BYTES, request, namespace=namespace) as path:
        yield path


def open_store(disk: Path, reserve: int = RESERVE_BYTES) -> Store:
    return Store.open(
        disk / "hub.db", limits=StoreLimits(reserve_bytes=reserve, retention_days=KEEP)
    )


def past(store: Store, readings: int, alert_every: int) -> list[int]:
    """A hub's history: readings with an alert now and then; returns the alerts' seqs."""
    alerts = []
    for k in range(readings // alert_every):
        t = k * alert_every
        batch = [reading(t + i) for i in range(alert_every)]
        alerts.append(store.commit([*batch, alert(t, check=f"past{k}")])[-1])
    return alerts


def everything(store: Store) -> list[tuple[int, object, bool]]:
    return [(e.seq, e.event, e.synced) for e in store.events(limit=10**7)]


def system(store: Store, kind: SystemKind) -> list[tuple[int, SystemEvent]]:
    return [
        (seq, ev)
        for seq, ev, _ in everything(store)
        if isinstance(ev, SystemEvent) and ev.kind is kind
    ]


def gap_seqs(store: Store, reason: str) -> set[int]:
    seqs: set[int] = set()
    for _, gap in system(store, SystemKind.GAP):
        if gap.details["reason"] == reason:
            for first, last in gap.details["seq_ranges"]:
                seqs.update(range(first, last + 1))
    return seqs


def integrity(path: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def truncate_wal(store: Store) -> None:
    """Leave no WAL space to reuse: the next transaction must grow the WAL file."""
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


@SMALLFS
@pytest.mark.parametrize("disk", ["mounted", "namespaced"], indirect=True)
def test_a_full_disk_prunes_synced_then_the_oldest_readings_and_never_an_alert(
    disk: Path | None,
) -> None:
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    assert store.storage.reserve.present
    past_alerts = past(store, 20_000, 1000)
    synced_upto = store.last_seq // 2  # the first half reached the council
    store.mark_synced(range(1, synced_upto + 1))
    unsynced_past = {
        seq for seq, ev, synced in everything(store) if isinstance(ev, Reading) and not synced
    }
    filler = fill(disk)
    assert (disk_free(disk) or 0) < MIB

    committed: list[int] = []
    committer = GroupCommitter(
        store, max_latency_s=3600, max_batch=1000, on_commit=committed.extend
    )
    t = 100_000
    for round_ in range(120):
        for _ in range(500):
            committer.add(reading(t))
            t += 1
        if round_ % 10 == 0:
            committer.add(alert(t, check=f"new{round_}"))  # committed before add returns
        committer.flush()
        fill(disk)  # the other program's log takes what the released reserve gave back

    # The disk stayed full throughout, and no commit was refused: room was made each time.
    assert (disk_free(disk) or 0) < MIB and filler.exists()
    assert committer.stats.failures == 0 and committer.pending == 0
    assert store.storage.full and store.storage.reserve.present is False
    (_, full), *more = system(store, SystemKind.STORAGE_FULL)
    assert not more
    assert full.details["reserve_released_bytes"] == RESERVE_BYTES // 2  # the first half
    assert full.details["free_bytes"] < MIB

    events = everything(store)
    alerts = {ev.check: (seq, synced) for seq, ev, synced in events if isinstance(ev, Alert)}
    # Synced events went first: none is left, although dropping readings sufficed for room.
    assert not [seq for seq, _, synced in events if synced]
    # Every alert not yet synced is kept, unsynced: the old ones and those raised while full.
    assert {f"past{k}" for k, seq in enumerate(past_alerts) if seq > synced_upto} <= set(alerts)
    assert {f"new{r}" for r in range(0, 120, 10)} <= set(alerts)
    assert not any(synced for _, synced in alerts.values())
    # Readings went oldest first, each one accounted for by a "disk full" gap event.
    new_readings = set(committed) - {seq for seq, _ in alerts.values()}
    all_readings = unsynced_past | new_readings
    present = {seq for seq, ev, _ in events if isinstance(ev, Reading)}
    gone = gap_seqs(store, "disk full")
    assert len(system(store, SystemKind.GAP)) >= 2  # pruned in bursts, more than once
    assert present | gone == all_readings and not present & gone
    oldest_kept = min(present)
    assert gone == {seq for seq in all_readings if seq < oldest_kept}
    health = store.storage_report()
    assert health["state"] == "full" and health["dropped_readings"] == len(gone)
    assert health["pruned_events"] == synced_upto
    assert inspect(store.path).storage_full_since == health["since"]

    # Space comes back: the state returns to ok (event), the reserve is made again, readings
    # go on being committed.
    filler.unlink()
    for i in range(200):
        committer.add(reading(t + i))
    committer.flush()
    (ok_seq, ok), *more = system(store, SystemKind.STORAGE_OK)
    assert not more
    assert ok.details["full_since"] == full.stamp.wall_time
    assert ok.details["dropped_readings"] == len(gone)
    assert not store.storage.full and store.storage.reserve.present
    for i in range(200, 400):
        committer.add(reading(t + i))
    committer.flush()
    assert [ev for seq, ev, _ in everything(store) if seq > ok_seq] == [
        reading(t + i) for i in range(200, 400)
    ]
    assert store.storage_report()["state"] == "ok"
    assert inspect(store.path).storage_full_since is None
    store.close()
    assert integrity(disk / "hub.db") == [("ok",)]


@SMALLFS
def test_with_nothing_to_prune_the_committer_waits_bounded_and_resumes_with_space(
    disk: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """No reserve and a buffer of alerts only: nothing can be written at all. The flusher
    keeps retrying once per interval (no busy loop), memory stays bounded (readings dropped
    oldest first, alerts never), and when the filler goes everything waiting is committed."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk, reserve=0)
    for k in range(200):
        store.commit([alert(k, check=f"past{k}")])
    truncate_wal(store)
    filler = fill(disk)
    interval = 0.05
    committer = GroupCommitter(store, max_latency_s=interval, max_batch=500, max_pending=2000)
    committer.start()
    with caplog.at_level(logging.ERROR, logger="hub.store.groupcommit"):
        for i in range(10_000):
            committer.add(reading(1000 + i))
            if i % 2000 == 0:
                committer.add(alert(1000 + i, check=f"while-full{i}"))
        assert committer.pending <= 2000 + 5  # the bound, plus the alerts it never drops
        # From here on only the flusher tries: it must go on, an interval between tries.
        before, records = committer.stats.failures, len(caplog.records)
        deadline = time.monotonic() + WAIT_S
        while committer.stats.failures < before + 4:
            assert time.monotonic() < deadline, "the flusher stopped retrying"
            time.sleep(interval)
        tries = [r.created for r in caplog.records[records:] if "group commit" in r.getMessage()]
    assert committer._thread is not None and committer._thread.is_alive()
    assert len(tries) >= 4  # it went on retrying; how often is for the benchmarks, not here
    assert store.storage.full and committer.stats.dropped_in_memory > 0

    filler.unlink()
    deadline = time.monotonic() + WAIT_S
    while committer.pending:
        assert time.monotonic() < deadline, "nothing was committed after space came back"
        time.sleep(interval)
    committer.close()
    events = everything(store)
    checks = {ev.check for _, ev, _ in events if isinstance(ev, Alert)}
    assert {f"while-full{i}" for i in range(0, 10_000, 2000)} <= checks
    assert {f"past{k}" for k in range(200)} <= checks
    memory_gaps = [
        g for _, g in system(store, SystemKind.GAP) if g.details["reason"] != "disk full"
    ]
    readings = [ev for _, ev, _ in events if isinstance(ev, Reading)]
    dropped = sum(int(g.details["dropped_readings"]) for g in memory_gaps)
    assert dropped > 0 and dropped + len(readings) == 10_000
    assert readings[-1] == reading(1000 + 9999)  # the newest were kept, the oldest dropped
    assert system(store, SystemKind.STORAGE_FULL) and system(store, SystemKind.STORAGE_OK)
    assert store.storage_report()["dropped_readings"] == dropped
    store.close()
    assert integrity(disk / "hub.db") == [("ok",)]


@SMALLFS
def test_an_alert_gets_the_reserve_when_the_disk_is_full_and_nothing_can_be_pruned(
    disk: Path | None,
) -> None:
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    for k in range(50):
        store.commit([alert(k, check=f"past{k}")])
    truncate_wal(store)
    fill(disk)
    committer = GroupCommitter(store, max_latency_s=3600)
    committer.add(alert(99, check="pull_cord"))  # committed before add returns...
    after = [e.event for e in store.events(after_seq=50)]  # ...on a disk with 0 bytes free
    assert after[0] == alert(99, check="pull_cord")
    assert [e.kind for e in after[1:] if isinstance(e, SystemEvent)] == [SystemKind.STORAGE_FULL]
    assert committer.pending == 0 and not store.storage.reserve.present
    # The file grew for it, was checkpointed at once, and is capped again at its new size.
    assert store.storage.capped
    assert store._conn.execute("PRAGMA max_page_count").fetchone()[0] * 4096 == (
        (disk / "hub.db").stat().st_size
    )
    store.close()


@SMALLFS
def test_the_buffer_stops_growing_when_the_disk_runs_low_not_when_it_is_full(
    disk: Path | None,
) -> None:
    """Below LOW_BYTES free the buffer keeps to its file: new readings take the place of
    the oldest, and the last megabytes stay for the rest of the system (and for the WAL to
    be copied back: a disk filled to the last byte by the buffer itself could jam it)."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    past(store, 10_000, 1000)
    fill(disk, leave=LOW_BYTES - 4 * MIB)
    free_before = disk_free(disk) or 0
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=1000)
    for k in range(60):
        for i in range(1000):
            committer.add(reading(100_000 + k * 1000 + i))
        committer.flush()
    assert committer.stats.failures == 0 and committer.pending == 0
    assert store.storage.full and gap_seqs(store, "disk full")
    # The buffer took almost nothing of what was left (the WAL's pages at most).
    assert (disk_free(disk) or 0) >= free_before - 5 * MIB > 0
    store.close()


@SMALLFS
def test_the_sequence_sidecar_is_extended_on_a_full_disk(disk: Path | None) -> None:
    """The sidecar is rewritten (a new file, renamed) once per block of numbers: on a full
    disk that needs the reserve's room too."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    store.commit([reading(i) for i in range(10)])
    store.close()
    (disk / "hub.db.seq").write_text("12\n")  # the block ends just ahead of the counter
    store = open_store(disk)
    truncate_wal(store)
    fill(disk)
    seqs = store.commit([reading(100 + i) for i in range(10)])
    assert len(seqs) == 10 and seqs[0] > 10  # (after the gap event of the pruning)
    assert int((disk / "hub.db.seq").read_text()) >= seqs[-1]
    store.close()


@SMALLFS
def test_with_the_reserve_gone_the_sidecar_gets_room_from_the_buffers_free_pages(
    disk: Path | None,
) -> None:
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk, reserve=0)
    store.commit([reading(i) for i in range(5000)])
    store.mark_synced(range(1, 4001))
    store._conn.execute("DELETE FROM events WHERE synced = 1")  # a pruning that kept its pages
    # The sidecar's block ends just ahead of the counter: the next commit needs a new one.
    (disk / "hub.db.seq").write_text(f"{store.last_seq + 2}\n")
    store._reservation.reserved_upto = store.last_seq + 2
    checkpoint(store._conn)  # the WAL copied back, as a running hub's is every 4 MiB
    fill(disk)
    seqs = store.commit([reading(100_000 + i) for i in range(10)])
    assert len(seqs) == 10 and int((disk / "hub.db.seq").read_text()) >= seqs[-1]
    store.close()
    assert integrity(disk / "hub.db") == [("ok",)]


def test_a_disk_full_error_is_told_from_other_failures() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    with pytest.raises(sqlite3.OperationalError) as other:
        conn.execute("SELECT nothing FROM nowhere")
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("could not commit") from exc
    except RuntimeError as wrapped:
        assert is_disk_full_error(wrapped)
    assert is_disk_full_error(full.value)
    assert not is_disk_full_error(other.value)
    assert not is_disk_full_error(OSError(5, "Input/output error"))


def test_a_roomy_disk_is_not_taken_for_a_full_one(tmp_path: Path) -> None:
    """SQLITE_FULL from SQLite's own page limit, with gigabytes free: no pruning, no state
    change; the caller keeps its events and retries (tests/test_group_commit.py)."""
    from tests.test_group_commit import refuse_writes

    store = Store.open(tmp_path / "hub.db", limits=StoreLimits(retention_days=KEEP))
    store.commit([reading(i) for i in range(100)])
    store.mark_synced(range(1, 51))
    refuse_writes(store, True)
    with pytest.raises(Exception, match="full"):
        store.commit([reading(i) for i in range(1000)])
    assert not store.storage.full and len(everything(store)) == 100
    assert store.storage_report()["failed_commits"] == 1
    store.close()


def test_readings_dropped_by_the_memory_bound_count_in_the_health_report(
    tmp_path: Path,
) -> None:
    from tests.test_group_commit import refuse_writes

    store = Store.open(tmp_path / "hub.db")
    store.commit([reading(0)])
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=10**6, max_pending=100)
    refuse_writes(store, True)
    for i in range(300):
        committer.add(reading(i))
    assert store.storage_report()["dropped_readings"] == committer.stats.dropped_in_memory > 0
    refuse_writes(store, False)
    store.close()


def test_the_report_is_safe_to_read_while_commits_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "hub.db")
    stop = threading.Event()
    reports: list[dict[str, object]] = []

    def read() -> None:
        while not stop.is_set():
            reports.append(store.storage_report())

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(50):
        store.commit([reading(i)])
    stop.set()
    reader.join()
    assert reports and all(r["state"] == "ok" for r in reports)
    store.close()


def readings_in(store: Store) -> list[Reading]:
    return [ev for _, ev, _ in everything(store) if isinstance(ev, Reading)]


@SMALLFS
def test_a_brief_dip_below_low_then_room_again_drops_nothing(disk: Path | None) -> None:
    """Capped while the disk was low, then another program freed its space: the next
    commit that needs new pages grows the file. It must not be taken for a full disk (that
    pruned every unsynced reading of an offline hub with a roomy disk)."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    past(store, 20_000, 1000)  # an offline hub: nothing synced
    filler = fill(disk, leave=LOW_BYTES - 4 * MIB)
    store.commit([reading(10**6)])
    assert store.storage.capped and not store.storage.full
    filler.unlink()
    store.commit([reading(2 * 10**6 + i) for i in range(5000)])
    assert len(readings_in(store)) == 20_000 + 1 + 5000
    assert not system(store, SystemKind.GAP) and not system(store, SystemKind.STORAGE_FULL)
    assert not store.storage.capped and not store.storage.full
    assert store.storage_report()["dropped_readings"] == 0
    store.close()


@SMALLFS
def test_a_restart_during_a_full_episode_keeps_the_buffer_capped(disk: Path | None) -> None:
    """Restarted while full with less room than the recovery line: the buffer stays at
    its size and prunes, instead of taking the disk's last megabytes and then jamming
    (every commit refused, an alert waiting in memory)."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    past(store, 20_000, 1000)
    filler = fill(disk)
    store.commit([reading(10**6 + i) for i in range(1000)])
    assert store.storage.full
    store.close()
    # Another program frees 20 MiB: below the 24 MiB (reserve and LOW_BYTES) to recover.
    filler_size = filler.stat().st_size
    with filler.open("r+b") as f:
        f.truncate(filler_size - 20 * MIB)
    store = open_store(disk)
    assert store.storage.full and store.storage.capped
    free_before = disk_free(disk) or 0
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=5000)
    t = 2 * 10**6
    for _ in range(30):
        for _ in range(5000):
            committer.add(reading(t))
            t += 1
        committer.flush()
    committer.add(alert(t, check="pull_cord"))
    assert committer.stats.failures == 0 and committer.pending == 0
    assert any(isinstance(ev, Alert) and ev.check == "pull_cord" for _, ev, _ in everything(store))
    # The buffer pruned to keep writing and took almost nothing of the disk (its WAL).
    assert gap_seqs(store, "disk full") and (disk_free(disk) or 0) >= free_before - 5 * MIB
    store.close()


@SMALLFS
def test_a_pruning_the_full_disk_refuses_gets_the_reserve(disk: Path | None) -> None:
    """Full (an episode carried over a restart, the reserve made again) and the WAL has no
    room left: the pruning itself cannot be written. Half the reserve is released for it,
    instead of every commit being refused with the reserve unused."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    past(store, 10_000, 1000)
    store.set_meta({"storage_full_since": "1764000000.0"})
    store.close()
    store = open_store(disk)
    assert store.storage.full and store.storage.reserve.present
    truncate_wal(store)
    fill(disk)
    seqs = store.commit([reading(10**6 + i) for i in range(1000)])
    assert len(seqs) == 1000 and gap_seqs(store, "disk full")
    assert not store.storage.reserve.present and reserve_path(store.path).exists()
    store.close()


@SMALLFS
def test_a_clean_restart_on_a_full_disk_opens_and_takes_an_alert(disk: Path | None) -> None:
    """A clean stop deletes the WAL and its index; a disk filled meanwhile left no room
    to make them again. The reserve gives way before the buffer is opened."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    past(store, 20_000, 1000)
    fill(disk)
    store.commit([reading(10**6 + i) for i in range(500)])  # half the reserve goes here
    store.close()
    assert not (disk / "hub.db-wal").exists()
    fill(disk)  # the other program's log takes what the stop gave back
    store = open_store(disk)
    committer = GroupCommitter(store, max_latency_s=3600)
    committer.add(alert(10**7, check="pull_cord"))
    assert committer.pending == 0 and committer.stats.failures == 0
    assert alert(10**7, check="pull_cord") in [ev for _, ev, _ in everything(store)]
    store.close()
    assert integrity(disk / "hub.db") == [("ok",)]


@SMALLFS
def test_acknowledgements_and_meta_are_written_on_a_managed_full_disk(disk: Path | None) -> None:
    """The uploader marks what the council acknowledged while the disk stays full (a write
    refused for want of WAL room is tried once more after a checkpoint), so a successful
    upload is not counted as failed and sent again."""
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    store = open_store(disk)
    for k in range(30):
        store.commit([*(reading(k * 1000 + i) for i in range(999)), alert(k, check=f"a{k}")])
    fill(disk)
    committer = GroupCommitter(store, max_latency_s=3600, max_batch=1000)
    t = 10**6
    marked = 0
    for _ in range(100):
        for _ in range(500):
            committer.add(reading(t))
            t += 1
        committer.flush()
        fill(disk)
        marked += store.mark_synced([e.seq for e in store.next_batch(500)])
    store.set_meta({"last_sync_error": None})
    store.save_check_state({"fall": "{}"}, float(t))
    assert marked == 100 * 500 and committer.stats.failures == 0
    store.close()


def test_a_garbage_full_since_reads_as_unknown(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "hub.db")
    for garbage in ("yesterday", "nan", ""):
        store.set_meta({"storage_full_since": garbage})
        assert store.status().storage_full_since is None
        assert inspect(store.path).storage_full_since is None
    store.close()
    reopened = Store.open(tmp_path / "hub.db")
    assert not reopened.storage.full
    reopened.close()
