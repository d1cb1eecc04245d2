"""Issue 6 item 7, the hub's side: stamps made before the clock is synchronised are flagged,
corrected once a sync reveals the boot's origin (where that is possible), and a wall clock
that jumps never reorders the store. Real SQLite buffers; the clock is faked at the edge."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hub.clock import BootClock, SimulatedClock, SystemClock, read_boot_id
from hub.clockwatch import watch_clock
from hub.events import Alert, Quantity, Reading, Stamp, StoredEvent, SystemEvent, SystemKind
from hub.store import Store, StoreLimits, clockfix
from hub.store.clockfix import Origin, OriginSource
from sync.codec import decode_batch, encode_batch
from tests.factories import alert
from tests.test_migrations import make_first_schema_buffer

TRUE_ORIGIN = 1_764_316_000.0  # the wall time at which the test boot's monotonic clock read 0
DAY = 86400.0


class EdgeClock:
    """The machine's clock as a Pi without a real-time clock sees it, driven by the test:
    monotonic time since boot, and a wall clock off by `error` seconds until NTP syncs.

    `real`: monotonic and the true origin follow this machine's clocks, for tests where the
    council's own clock (the same machine's) must agree with the hub's true time."""

    def __init__(self, boot_id: str = "boot-a", *, error: float = -40 * DAY, real: bool = False):
        self.boot_id = boot_id
        self.error = error
        self.synced = False
        self.real = real
        self.t = 100.0
        self.origin = time.time() - time.monotonic() if real else TRUE_ORIGIN

    def monotonic(self) -> float:
        return time.monotonic() if self.real else self.t

    def wall(self) -> float:
        return self.origin + self.monotonic() + (0.0 if self.synced else self.error)

    def stamp(self) -> Stamp:
        mono = self.monotonic()
        return Stamp(self.origin + mono + (0.0 if self.synced else self.error), self.synced, mono)

    def synced_origin(self) -> float | None:
        return self.wall() - self.monotonic() if self.synced else None

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)

    def step(self, seconds: float = 1.0) -> None:
        self.t += seconds

    def ntp_syncs(self) -> None:
        self.synced = True


def readings(clock: EdgeClock, n: int, sensor: str = "lounge") -> list[Reading]:
    out = []
    for i in range(n):
        clock.step(10.0)
        out.append(Reading(sensor, Quantity.TEMPERATURE, 20.0 + i / 10, clock.stamp()))
    return out


def stamps(store: Store) -> dict[int, Stamp]:
    return {e.seq: e.event.stamp for e in store.events(limit=100_000)}


def open_store(path: Path, clock: EdgeClock, limits: StoreLimits | None = None) -> Store:
    return Store.open(path, clock=clock, limits=limits)


def stamped_alert(clock: EdgeClock) -> Alert:
    return replace(alert(0.0), stamp=clock.stamp())


def test_the_edge_clock_is_a_boot_clock_and_so_is_the_real_one() -> None:
    assert isinstance(EdgeClock(), BootClock)
    real = SystemClock()
    assert isinstance(real, BootClock) and real.boot_id == read_boot_id()
    assert clockfix.boot_of(real) == read_boot_id()


def test_stamps_before_sync_are_flagged_and_left_alone_while_no_origin_is_known(
    tmp_path: Path,
) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 3))
    batch = store.next_batch()  # reading the outbox corrects what it can: nothing yet
    assert [e.seq for e in batch] == seqs
    for e in batch:
        st = e.event.stamp
        assert (st.clock_synced, st.clock_corrected) == (False, False)
        assert st.wall_time == TRUE_ORIGIN + st.monotonic - 40 * DAY  # as stamped
    oldest = store.status().oldest_unsynced
    assert oldest is not None and oldest["clock_synced"] is False
    assert store.correct_clock() is None  # the boot is known, its origin is not
    store.close()


def test_ntp_sync_corrects_what_this_boot_stamped_before_it(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    before = store.commit(readings(clock, 4))
    clock.ntp_syncs()
    after = store.commit(readings(clock, 2))
    batch = store.next_batch()  # the outbox is read corrected: nothing leaves uncorrected
    got = {e.seq: e.event.stamp for e in batch}
    for seq in before:
        st = got[seq]
        assert st.wall_time == TRUE_ORIGIN + st.monotonic
        assert (st.clock_synced, st.clock_corrected) == (False, True)
    for seq in after:
        assert (got[seq].clock_synced, got[seq].clock_corrected) == (True, False)
    # The corrected stamp travels: the wire says corrected, not synchronised.
    decoded = decode_batch(encode_batch("hub-x", batch, {}))
    assert [e.event.stamp for e in decoded.events] == [e.event.stamp for e in batch]
    oldest = store.status().oldest_unsynced
    assert oldest is not None and oldest["clock_synced"] is False  # corrected is not synced
    # Nothing was uploaded yet, so nothing needs telling the council.
    assert not [e for e in store.events() if isinstance(e.event, SystemEvent)]
    store.close()


def test_the_council_origin_corrects_and_ntp_later_replaces_it(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 3))
    estimate = TRUE_ORIGIN + 0.75  # the council's answer, one network latency late
    fix = store.correct_clock(Origin("boot-a", estimate, OriginSource.COUNCIL))
    assert fix is not None and fix.corrected == 3 and fix.new_origin
    assert all(stamps(store)[s].wall_time == estimate + stamps(store)[s].monotonic for s in seqs)
    # A second estimate is no better than the first: kept, nothing moves.
    again = store.correct_clock(Origin("boot-a", estimate + 5.0, OriginSource.COUNCIL))
    assert again is not None and (again.corrected, again.origin) == (0, estimate)
    # An origin for another boot never applies here.
    other = store.correct_clock(Origin("boot-b", 5.0, OriginSource.NTP))
    assert other is not None and other.origin == estimate
    # NTP beats the estimate: every corrected stamp of the boot is corrected again.
    clock.ntp_syncs()
    ntp = store.correct_clock()
    assert ntp is not None and ntp.corrected == 3 and ntp.source is OriginSource.NTP
    for s in seqs:
        st = stamps(store)[s]
        assert st.wall_time == TRUE_ORIGIN + st.monotonic and st.clock_corrected
    store.close()


def test_events_of_an_earlier_boot_that_never_synced_stay_flagged(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    first = EdgeClock("boot-a", error=-400 * DAY)
    store = open_store(path, first)
    old = store.commit(readings(first, 3))
    before = stamps(store)
    store.close()

    # Power cut; the next boot's monotonic clock starts again near 0, its origin is later.
    second = EdgeClock("boot-b", error=-400 * DAY)
    second.origin = TRUE_ORIGIN + 5 * DAY
    store = open_store(path, second)
    new = store.commit(readings(second, 3))
    second.ntp_syncs()
    fix = store.correct_clock()
    assert fix is not None and fix.corrected == 3
    now = stamps(store)
    assert {s: now[s] for s in old} == {s: before[s] for s in old}  # untouched, still flagged
    assert all(not now[s].clock_synced and not now[s].clock_corrected for s in old)
    assert all(now[s].wall_time == second.origin + now[s].monotonic for s in new)
    store.close()


def test_a_restart_within_the_same_boot_keeps_its_events_correctable(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    clock = EdgeClock("boot-a")
    store = open_store(path, clock)
    early = store.commit(readings(clock, 2))
    store.close()
    restarted = EdgeClock("boot-a")  # a new process: a new clock object, the same boot
    restarted.t = clock.t
    store = open_store(path, restarted)
    late = store.commit(readings(restarted, 2))
    restarted.ntp_syncs()
    fix = store.correct_clock()
    assert fix is not None and fix.corrected == 4
    assert all(stamps(store)[s].clock_corrected for s in early + late)
    store.close()


def test_uploaded_events_are_reported_once_in_a_clock_corrected_event(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 6))
    store.mark_synced([seqs[0], seqs[1], seqs[3]])  # uploaded before any origin was known
    fix = store.correct_clock(Origin("boot-a", TRUE_ORIGIN, OriginSource.COUNCIL))
    assert fix is not None and fix.corrected == 6
    assert fix.uploaded_ranges == [[seqs[0], seqs[1]], [seqs[3], seqs[3]]]
    (report,) = [e for e in store.next_batch() if isinstance(e.event, SystemEvent)]
    assert report.seq == seqs[-1] + 1 == store.last_seq
    assert isinstance(report.event, SystemEvent)
    assert report.event.kind is SystemKind.CLOCK_CORRECTED
    assert report.event.details == {
        "boot_id": "boot-a",
        "origin": TRUE_ORIGIN,
        "source": "council",
        "seq_ranges": [[seqs[0], seqs[1]], [seqs[3], seqs[3]]],
    }
    # Stamped on the unsynchronised clock, so stamped corrected too.
    st = report.event.stamp
    assert st.clock_corrected and st.wall_time == TRUE_ORIGIN + st.monotonic
    # Applying it again (every outbox read does) corrects and reports nothing more.
    for _ in range(3):
        again = store.correct_clock(Origin("boot-a", TRUE_ORIGIN, OriginSource.COUNCIL))
        assert again is not None and (again.corrected, again.uploaded_ranges) == (0, [])
    assert store.last_seq == report.seq
    store.close()


def test_an_alert_stamped_unsynced_is_corrected_like_a_reading(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    clock.step(30.0)
    (seq,) = store.commit([stamped_alert(clock)])
    clock.ntp_syncs()
    (out,) = [e for e in store.next_batch() if e.seq == seq]
    assert out.event.stamp == Stamp(TRUE_ORIGIN + 130.0, False, 130.0, True)
    store.close()


def test_events_renumbered_into_another_boots_range_are_never_corrected_with_its_origin(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    first = EdgeClock("boot-a")
    store = open_store(path, first)
    a_seqs = store.commit(readings(first, 2))
    store.close()
    second = EdgeClock("boot-b")
    second.origin = TRUE_ORIGIN + DAY
    store = open_store(path, second)
    b_seqs = store.commit(readings(second, 4))
    # The council holds other content under these numbers: they move above boot B's last,
    # boot A's two into boot B's range, boot B's two within it.
    moved = store.renumber(a_seqs + b_seqs[2:])
    assert len(moved) == 4 and min(moved.values()) > max(b_seqs)
    second.ntp_syncs()
    fix = store.correct_clock()
    assert fix is not None and fix.corrected == 4  # boot B's own four only
    now = stamps(store)
    for old in a_seqs:
        st = now[moved[old]]
        assert (st.clock_synced, st.clock_corrected) == (False, False)
        assert st.wall_time == TRUE_ORIGIN + st.monotonic - 40 * DAY  # as stamped in boot A
    for seq in b_seqs[:2] + [moved[s] for s in b_seqs[2:]]:
        assert now[seq].wall_time == second.origin + now[seq].monotonic
    store.close()


def test_the_boots_migration_keeps_every_row_of_an_existing_buffer(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    before = make_first_schema_buffer(path)
    clock = EdgeClock("boot-a")
    clock.ntp_syncs()
    store = open_store(path, clock)
    store.next_batch()  # corrects with NTP's origin: but no old row is of a recorded boot
    after = sqlite3.connect(path).execute("SELECT * FROM events ORDER BY seq").fetchall()
    assert after == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT boot_id, first_seq, origin_source FROM boots").fetchall() == [
        ("boot-a", 47, "ntp")
    ]
    store.close()


# -- a wall clock that jumps -------------------------------------------------------------------

JUMPS = [-40 * DAY, -1.0, -3 * 365 * DAY, +9 * 365 * DAY, -DAY, 0.0, -50 * 365 * DAY]


def jumping_stream(clock: EdgeClock, store: Store) -> list[int]:
    """Commit readings (and an alert) while the unsynchronised wall clock jumps back and
    forth; returns the seqs in commit order."""
    seqs: list[int] = []
    for i, error in enumerate(JUMPS):
        clock.error = error
        seqs += store.commit(readings(clock, 3, sensor=f"s{i % 2}"))
        if i == 3:
            clock.step(1.0)
            seqs += store.commit([stamped_alert(clock)])
    return seqs


def test_a_jumping_wall_clock_never_reorders_the_store_or_the_outbox(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = jumping_stream(clock, store)
    assert seqs == sorted(seqs) == list(range(seqs[0], seqs[0] + len(seqs)))
    stored = store.events(limit=1000)
    assert [e.seq for e in stored] == seqs
    walls = [e.event.stamp.wall_time for e in stored]
    assert walls != sorted(walls)  # the wall clock did jump about
    monos = [e.event.stamp.monotonic for e in stored]
    assert monos == sorted(monos)
    # The outbox: the alert first, then the readings strictly in seq order.
    batch = store.next_batch()
    kinds = [type(e.event).__name__ for e in batch]
    assert kinds[0] == "Alert" and "Alert" not in kinds[1:]
    assert [e.seq for e in batch[1:]] == sorted(e.seq for e in batch[1:])
    # In small batches, as the uploader takes them, the order is the same.
    taken: list[int] = []
    while rest := [e for e in store.next_batch(4) if e.seq not in taken]:
        taken += [e.seq for e in rest]
        store.mark_synced(e.seq for e in rest)
    assert taken == [e.seq for e in batch]
    store.close()


def test_after_correction_one_boots_wall_times_rise_with_seq(tmp_path: Path) -> None:
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = jumping_stream(clock, store)
    store.correct_clock(Origin("boot-a", TRUE_ORIGIN + 0.4, OriginSource.COUNCIL))
    walls = [stamps(store)[s].wall_time for s in seqs]
    assert walls == sorted(walls)
    assert all(stamps(store)[s].clock_corrected for s in seqs)
    store.close()


def test_retention_with_a_clock_jumped_far_ahead_drops_only_what_the_council_has(
    tmp_path: Path,
) -> None:
    clock = EdgeClock()
    limits = StoreLimits(retention_days=30, retention_sweep_every_s=0)
    store = open_store(tmp_path / "hub.db", clock, limits)
    seqs = jumping_stream(clock, store)
    uploaded = seqs[:5]
    store.mark_synced(uploaded)
    clock.error = 80 * 365 * DAY  # the wall clock leaps decades ahead: everything "expired"
    report = store.enforce_limits()
    assert report.expired == len(uploaded)
    assert [e.seq for e in store.events(limit=1000)] == seqs[5:]  # every unsynced one kept
    assert report.gap.count == 0
    clock.error = -80 * 365 * DAY  # and back before 1970: nothing more goes
    assert store.enforce_limits().expired == 0
    assert [e.seq for e in store.events(limit=1000)] == seqs[5:]
    store.close()


def test_quota_pruning_drops_the_oldest_by_seq_whatever_their_wall_times(tmp_path: Path) -> None:
    clock = EdgeClock()
    path = tmp_path / "hub.db"
    empty = open_store(path, clock)
    # Room for a few thousand readings: pruning goes 2000 at a time.
    quota = empty.used_bytes() + 256 * 1024
    empty.close()
    store = open_store(path, clock, StoreLimits(quota_bytes=quota))
    committed: list[int] = []
    pruned = 0
    for i in range(80):
        # Each batch stamped further in the past by the wall clock: newest look oldest.
        clock.error = -(i + 1) * 365 * DAY
        committed += store.commit(readings(clock, 100, sensor=f"s{i % 3}"))
        report = store.enforce_limits()
        if report.gap.count:
            dropped = [s for a, b in report.gap.seq_ranges for s in range(a, b + 1)]
            kept = [e.seq for e in store.events(limit=100_000) if e.seq in committed]
            # What went is the oldest by seq: every kept reading is newer than every dropped.
            assert max(dropped) < min(kept)
            assert set(dropped).isdisjoint(kept)
            pruned += 1
    assert pruned >= 2
    store.close()


@pytest.mark.parametrize("corrected", [False, True])
def test_the_corrected_flag_is_one_of_a_stamps_values(corrected: bool) -> None:
    st = Stamp(1.0, False, 2.0, corrected)
    record = StoredEvent(1, Reading("s", Quantity.TEMPERATURE, 1.0, st)).to_record()
    assert ("clock_corrected" in record) is corrected


def test_a_hub_that_is_not_uploading_still_corrects_once_ntp_syncs(tmp_path: Path) -> None:
    """hub.clockwatch, run by the hub service: no outbox reads, yet the origin is recorded
    during this boot and this boot's stamps corrected."""
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    seqs = store.commit(readings(clock, 3))

    async def scenario() -> None:
        watcher = asyncio.create_task(watch_clock(store, every_s=0.005))
        try:
            clock.ntp_syncs()
            async with asyncio.timeout(30):
                while not all(stamps(store)[s].clock_corrected for s in seqs):
                    await asyncio.sleep(0.005)
        finally:
            watcher.cancel()

    asyncio.run(scenario())
    store.close()


def test_the_clock_watch_ends_at_once_for_simulated_time(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "hub.db", clock=SimulatedClock(TRUE_ORIGIN))
    asyncio.run(asyncio.wait_for(watch_clock(store, every_s=3600.0), timeout=30))
    assert store.correct_clock() is None
    store.close()


def test_an_origin_source_this_version_does_not_know_never_stops_the_store(
    tmp_path: Path,
) -> None:
    """A newer version may record a source this one does not know (then a downgrade): the
    store still opens, the outbox still reads, and the next origin learnt replaces it."""
    clock = EdgeClock()
    store = open_store(tmp_path / "hub.db", clock)
    stamped = store.commit(readings(clock, 3))
    store.close()
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        conn.execute("UPDATE boots SET origin = 12345.0, origin_source = 'gps'")
    store = open_store(tmp_path / "hub.db", clock)
    assert [e.seq for e in store.next_batch()] == stamped  # read as they are: not corrected
    clock.ntp_syncs()
    got = {e.seq: e.event.stamp for e in store.next_batch()}
    assert all(
        got[s].clock_corrected and got[s].wall_time == TRUE_ORIGIN + got[s].monotonic
        for s in stamped
    )
    store.close()
