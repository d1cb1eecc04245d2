"""Clock correction in the buffer, the hard cases: a batch in flight while the correction
runs (it must be reported too), a big backlog corrected in chunks (the lock and the WAL stay
small, a kill mid-way resumes), a recovery, and a power cut between recording a boot's
origin and correcting its rows. Real SQLite buffers; the clock is faked at the edge."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.events import SystemEvent, SystemKind
from hub.store import Store, StoreWriteError, buffer, clockfix
from hub.store.clockfix import Origin, OriginSource
from tests.test_clock_correction import TRUE_ORIGIN, EdgeClock, open_store, readings, stamps

COUNCIL = Origin("boot-a", TRUE_ORIGIN + 0.75, OriginSource.COUNCIL)


def clock_reports(store: Store) -> list[SystemEvent]:
    found = [e.event for e in store.events(limit=100_000) if isinstance(e.event, SystemEvent)]
    return [e for e in found if e.kind is SystemKind.CLOCK_CORRECTED]


def reported_seqs(store: Store) -> set[int]:
    return {
        s
        for report in clock_reports(store)
        for first, last in report.details["seq_ranges"]
        for s in range(first, last + 1)
    }


def test_a_batch_in_flight_when_the_clock_syncs_is_reported(tmp_path: Path) -> None:
    """Read uncorrected and posted; NTP syncs and the clock watch corrects the rows (still
    unsynced) while the POST is out; then the ack marks them synced. The council holds the
    uncorrected times, so the correction must be reported to it."""
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 5))
    batch = store.next_batch()
    assert not any(e.event.stamp.clock_corrected for e in batch)
    clock.ntp_syncs()
    fix = store.correct_clock()  # hub.clockwatch, while the batch is on the wire
    assert fix is not None and fix.corrected == 5
    assert fix.uploaded_ranges == [[seqs[0], seqs[-1]]]
    store.mark_synced(e.seq for e in batch)
    assert reported_seqs(store) == set(seqs)
    (report,) = [e for e in store.next_batch() if isinstance(e.event, SystemEvent)]
    assert report.seq > seqs[-1]  # a new event: read by a later round, after the batch
    store.close()


def test_rows_never_handed_out_are_corrected_without_a_report(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    sent = store.commit(readings(clock, 3))
    store.next_batch(limit=3)
    waiting = store.commit(readings(clock, 4))  # committed after the last outbox read
    fix = store.correct_clock(COUNCIL)
    assert fix is not None and fix.corrected == 7
    assert reported_seqs(store) == set(sent)
    assert all(stamps(store)[s].clock_corrected for s in waiting)
    store.close()


def test_a_backlog_is_corrected_in_chunks_each_its_own_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer, "CORRECT_CHUNK_ROWS", 10)
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 35))
    store.mark_synced(seqs)  # uploaded before any origin: every row is reported
    commits: list[str] = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    fix = store.correct_clock(COUNCIL)
    store._conn.set_trace_callback(None)
    assert fix is not None and fix.corrected == 35
    assert len(commits) == 4  # 10 + 10 + 10 + 5: the lock is free between them
    assert reported_seqs(store) == set(seqs)
    assert all(
        stamps(store)[s].wall_time == COUNCIL.wall_at_zero + stamps(store)[s].monotonic
        for s in seqs
    )
    store.close()


def test_an_outbox_read_corrects_only_the_rows_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer, "CORRECT_CHUNK_ROWS", 10)
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 40))
    clock.ntp_syncs()
    batch = store.next_batch(limit=5)
    assert [e.seq for e in batch] == seqs[:5]
    assert all(e.event.stamp.clock_corrected for e in batch)  # nothing leaves uncorrected
    after = stamps(store)
    assert not any(after[s].clock_corrected for s in seqs[5:])  # the bulk: not here
    assert store.correct_clock() is not None
    assert all(st.clock_corrected for st in stamps(store).values())
    store.close()


def interrupt_after_chunks(monkeypatch: pytest.MonkeyPatch, allowed: int) -> None:
    """The power goes after `allowed` chunks: the next one fails before it commits."""
    real = clockfix.apply_chunk
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> clockfix.Correction:
        calls["n"] += 1
        if calls["n"] > allowed:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(clockfix, "apply_chunk", failing)


def test_a_better_origin_interrupted_mid_way_is_finished_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer, "CORRECT_CHUNK_ROWS", 10)
    clock = EdgeClock()
    path = tmp_path / "hub.db"
    store = open_store(path, clock)
    seqs = store.commit(readings(clock, 35))
    assert store.correct_clock(COUNCIL) is not None  # all 35 on the council's estimate
    clock.ntp_syncs()
    with monkeypatch.context() as m:
        interrupt_after_chunks(m, 1)
        with pytest.raises(StoreWriteError):
            store.correct_clock()  # NTP's origin recorded, 10 rows redone, then the cut
    store.close()
    store = open_store(path, clock)
    store.correct_clock()
    for s in seqs:
        st = stamps(store)[s]
        assert st.wall_time == TRUE_ORIGIN + st.monotonic, s  # NTP's, none left on 0.75 s
    store.close()


def test_an_earlier_boots_unfinished_correction_is_finished_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer, "CORRECT_CHUNK_ROWS", 10)
    path = tmp_path / "hub.db"
    clock = EdgeClock("boot-a")
    store = open_store(path, clock)
    seqs = store.commit(readings(clock, 25))
    with monkeypatch.context() as m:
        interrupt_after_chunks(m, 1)
        with pytest.raises(StoreWriteError):
            store.correct_clock(COUNCIL)  # the origin and 10 rows, then the power goes
    store.close()
    store = open_store(path, EdgeClock("boot-b"))  # a new boot: boot-a's origin is stored
    for s in seqs:
        st = stamps(store)[s]
        assert st.clock_corrected and st.wall_time == COUNCIL.wall_at_zero + st.monotonic
    store.close()


def test_rows_salvaged_by_a_recovery_are_not_taken_for_this_boots(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    old = EdgeClock("boot-old")
    store = open_store(path, old)
    seqs = store.commit(readings(old, 5000))
    store.close()
    with path.open("r+b") as f:  # damage a stretch of pages in the middle of the table
        f.seek(path.stat().st_size // 2)
        f.write(b"\xa5" * 4096 * 3)
    path.with_name(path.name + ".seq").unlink()  # and the sequence reservation was lost
    new = EdgeClock("boot-new")
    store = open_store(path, new)
    assert store.recovery is not None
    held = stamps(store)
    salvaged = [s for s in seqs if s in held]
    assert salvaged, "the recovery carried nothing over: the test proves nothing"
    new.ntp_syncs()
    store.correct_clock()
    after = stamps(store)
    assert not any(after[s].clock_corrected for s in salvaged)  # another boot's monotonic
    assert all(st.clock_corrected or st.clock_synced for s, st in after.items() if s > seqs[-1])
    store.close()
