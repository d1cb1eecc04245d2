"""Storage stays within its quota, pruning in the promised order, never an unsynced alert."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.events import Reading, SystemEvent, SystemKind
from hub.store import Store, StoreLimits
from tests.factories import alert, reading

QUOTA = 160 * 1024


def open_store(path: Path, quota: int = QUOTA, retention_days: float = 3650) -> Store:
    return Store.open(path, limits=StoreLimits(quota_bytes=quota, retention_days=retention_days))


def seqs_of(path: Path, where: str = "1") -> set[int]:
    conn = sqlite3.connect(path)
    rows = {r[0] for r in conn.execute(f"SELECT seq FROM events WHERE {where}")}
    conn.close()
    return rows


def gaps(store: Store) -> list[dict[str, object]]:
    return [
        dict(e.event.details)
        for e in store.events(limit=10**9)
        if isinstance(e.event, SystemEvent) and e.event.kind is SystemKind.GAP
    ]


def test_synced_data_goes_first_and_unsynced_stays_when_that_is_enough(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.db")
    synced = store.commit([reading(i) for i in range(2000)])
    store.mark_synced(synced)
    unsynced = store.commit([reading(i) for i in range(2000, 2600)])
    report = store.enforce_limits()
    assert report.synced_pruned > 0 and report.gap.count == 0
    assert set(unsynced) <= seqs_of(tmp_path / "hub.db")
    assert store.used_bytes() <= QUOTA
    # what was pruned is the oldest synced data
    remaining_synced = sorted(seqs_of(tmp_path / "hub.db", "synced = 1"))
    assert remaining_synced == synced[len(synced) - len(remaining_synced) :]


def test_oldest_unsynced_readings_dropped_with_an_exact_gap_event(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path)
    alerts = store.commit([alert(0)])
    readings = store.commit([reading(i, sensor=f"s{i % 3}") for i in range(5000)])
    alerts += store.commit([alert(6000, check="leak")])
    report = store.enforce_limits()
    assert store.used_bytes() <= QUOTA and not report.over_quota_after
    present = seqs_of(path)
    dropped = [s for s in readings if s not in present]
    assert dropped == readings[: len(dropped)], "the oldest readings go first"
    assert set(alerts) <= present
    [gap] = gaps(store)
    assert gap["dropped_readings"] == len(dropped) == report.gap.count
    assert (gap["first_seq"], gap["last_seq"]) == (dropped[0], dropped[-1])
    in_ranges = [s for first, last in gap["seq_ranges"] for s in range(first, last + 1)]
    assert in_ranges == dropped
    per_sensor = {f"s{k}": sum(1 for s in dropped if (s - readings[0]) % 3 == k) for k in range(3)}
    assert gap["per_sensor"] == per_sensor
    assert report.gap_seq == store.last_seq  # the gap event follows everything it describes


def test_unsynced_alerts_survive_a_quota_they_alone_exceed(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path, quota=48 * 1024)
    alerts = store.commit([alert(i, check=f"c{i}") for i in range(1500)])
    store.commit([reading(i) for i in range(100)])
    report = store.enforce_limits()
    assert report.over_quota_after
    assert set(alerts) <= seqs_of(path)
    assert seqs_of(path, "kind = 'reading'") == set()


def test_retention_prunes_only_synced_data_older_than_it(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path, retention_days=1)
    old = store.commit([reading(-3 * 86400.0 + i) for i in range(10)])
    old_unsynced = store.commit([reading(-3 * 86400.0 + 100)])
    store.mark_synced(old)
    recent = store.commit([reading(0.0)])
    store.mark_synced(recent)
    store.enforce_limits()  # the store's clock is real time; T0 lies in the past
    present = seqs_of(path)
    assert not set(old) & present and set(old_unsynced) <= present


def test_pruned_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path, quota=1)  # prune every synced row, the newest included
    seqs = store.commit([reading(i) for i in range(3000)])
    store.mark_synced(seqs)
    store.enforce_limits()
    assert seqs_of(path) == set()
    store.close()
    (tmp_path / "hub.db.seq").unlink()  # and without the reservation file's help
    store = open_store(path)
    assert store.commit([reading(0)])[0] > seqs[-1]


def test_pruning_gives_the_space_back_to_the_filesystem(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path, quota=10 * 1024**2)
    store.mark_synced(store.commit([reading(i) for i in range(40_000)]))
    store.close()
    big = path.stat().st_size
    store = open_store(path, quota=200 * 1024)
    store.enforce_limits()
    store.close()
    assert path.stat().st_size < big / 4


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 600), st.integers(0, 3), st.floats(0, 1)), min_size=1, max_size=8
    )
)
def test_quota_invariants_hold_for_any_history(
    tmp_path_factory: object, steps: list[tuple[int, int, float]]
) -> None:
    path = Path(tmp_path_factory.mktemp("q")) / "hub.db"  # type: ignore[attr-defined]
    store = open_store(path, quota=96 * 1024)
    t = 0.0
    unsynced_alerts: set[int] = set()
    routine_written = 0
    routine_acked = 0
    dropped = 0
    for n_readings, n_alerts, ack_fraction in steps:
        seqs = store.commit([reading(t + i) for i in range(n_readings)])
        routine_written += len(seqs)
        unsynced_alerts |= set(store.commit([alert(t, check=f"a{t}-{i}") for i in range(n_alerts)]))
        batch = store.next_batch(limit=int(len(store.next_batch(limit=10**6)) * ack_fraction))
        store.mark_synced(e.seq for e in batch)
        unsynced_alerts -= {e.seq for e in batch}
        routine_acked += sum(1 for e in batch if isinstance(e.event, Reading))
        synced_before = seqs_of(path, "synced = 1")
        report = store.enforce_limits()
        dropped += report.gap.count
        if report.gap.count:
            assert not synced_before & seqs_of(path, "synced = 1"), "synced data goes first"
        t += 1000
    present = seqs_of(path)
    assert unsynced_alerts <= present
    # every routine reading written is still queued, was acknowledged, or was counted in a gap
    unsynced_routine = len(seqs_of(path, "kind = 'reading' AND synced = 0"))
    assert routine_written == unsynced_routine + routine_acked + dropped
    store.close()


def test_rejected_events_go_after_synced_ones_and_before_unsynced_readings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path)
    rejected = store.commit([reading(i) for i in range(1500)])
    store.reject(rejected, "refused by the council")
    synced = store.commit([reading(i) for i in range(1500, 2300)])
    store.mark_synced(synced)
    unsynced = store.commit([reading(i) for i in range(2300, 2900)])
    report = store.enforce_limits()
    present = seqs_of(path)
    assert not set(synced) & present  # all synced went first, then rejected ones
    assert not set(rejected) & present
    assert set(unsynced) <= present and report.gap.count == 0  # no unsynced reading lost
    assert store.used_bytes() <= QUOTA


def test_rejected_events_stay_while_pruning_synced_ones_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = open_store(path)
    rejected = store.commit([reading(i) for i in range(50)])
    store.reject(rejected, "refused by the council")
    synced = store.commit([reading(i) for i in range(50, 2600)])
    store.mark_synced(synced)
    assert store.enforce_limits().synced_pruned > 0
    assert set(rejected) <= seqs_of(path, "synced = 2")
