"""The council store on both engines: idempotent ingest, ingest-order cursor, migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.events import (
    Alert,
    AlertState,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from sync.council.store import CouncilStore, StoreError, metadata

REVISIONS = ("0001", "0002", "0003", "0004")  # every revision, oldest first
HEAD = REVISIONS[-1]


@pytest.fixture
def db_url(council_db_on_each_engine: str) -> str:
    """A fresh, empty database per test: a SQLite file, or a new database on the server."""
    return council_db_on_each_engine


@pytest.fixture
def store(db_url: str) -> Iterator[CouncilStore]:
    s = CouncilStore.open(db_url)
    s.add_hub("hub-a", b"a" * 32, enrolled_at=1.0)
    s.add_hub("hub-b", b"b" * 32, enrolled_at=2.0)
    yield s
    s.close()


def reading(seq: int, value: float = 20.0) -> dict[str, Any]:
    stamp = Stamp(wall_time=1_700_000_000.0 + seq, clock_synced=True, monotonic=float(seq))
    return StoredEvent(seq, Reading("t1", Quantity.TEMPERATURE, value, stamp)).to_record()


def batch(seqs: range | list[int]) -> list[dict[str, Any]]:
    return [reading(s) for s in seqs]


def all_events(store: CouncilStore, limit: int = 1000, hub_id: str | None = None) -> list[Any]:
    out: list[Any] = []
    cursor = 0
    while page := store.events_after(cursor, limit, hub_id=hub_id):
        out.extend(page)
        cursor = page[-1].id
    return out


def test_same_batch_twice_and_overlapping_batch_store_each_event_once(
    store: CouncilStore,
) -> None:
    first = store.ingest("hub-a", batch(range(1, 11)))
    assert (first.new, first.held) == (10, tuple(range(1, 11)))
    again = store.ingest("hub-a", batch(range(1, 11)))
    assert (again.new, again.duplicates, again.held) == (0, 10, tuple(range(1, 11)))
    overlap = store.ingest("hub-a", batch(range(6, 16)))
    assert (overlap.new, overlap.duplicates) == (5, 5)
    assert [e.seq for e in all_events(store)] == list(range(1, 16))
    assert store.count_events() == 15


def test_a_duplicate_inside_one_batch_is_stored_once(store: CouncilStore) -> None:
    result = store.ingest("hub-a", batch([3, 3, 1]))
    assert (result.new, result.held) == (2, (1, 3))
    assert store.count_events() == 2


def test_the_first_copy_wins_on_a_conflicting_resend(store: CouncilStore) -> None:
    store.ingest("hub-a", [reading(1, value=20.0)])
    store.ingest("hub-a", [reading(1, value=99.0)])
    (event,) = all_events(store)
    assert event.value == 20.0 and event.body["value"] == 20.0


def test_records_from_every_event_kind_round_trip(store: CouncilStore) -> None:
    stamp = Stamp(wall_time=1_700_000_000.5, clock_synced=False, monotonic=12.25)
    records = [
        StoredEvent(1, Reading("m1", Quantity.MOTION, 1.0, stamp)).to_record(),
        StoredEvent(
            2,
            Alert(
                "no_motion",
                Severity.URGENT,
                AlertState.RAISED,
                "kitchen",
                None,
                10.0,
                None,
                {"hours": 14, "rooms": ["kitchen"]},
                stamp,
            ),
        ).to_record(),
        StoredEvent(3, SystemEvent(SystemKind.GAP, {"dropped": 7}, stamp)).to_record(),
    ]
    store.ingest("hub-a", records, received_at=5.0, software_version="0.3.1")
    got = all_events(store)
    assert [e.body for e in got] == records
    assert [(e.kind, e.sensor_id, e.quantity, e.value) for e in got] == [
        ("reading", "m1", "motion", 1.0),
        ("alert", None, None, None),
        ("system", None, None, None),
    ]
    assert got[0].clock_synced is False and got[0].monotonic == 12.25
    hub = store.get_hub("hub-a")
    assert hub is not None and (hub.last_contact, hub.software_version) == (5.0, "0.3.1")


def test_concurrent_ingests_of_the_same_hub_from_two_connections(db_url: str) -> None:
    CouncilStore.open(db_url).add_hub("hub-a", b"k")
    stores = [CouncilStore.open(db_url), CouncilStore.open(db_url)]
    rounds, size = 30, 40
    news = [0, 0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        try:
            for r in range(rounds):
                # Both send the same batch, offset by half a batch: full and partial overlaps.
                start = r * size + (size // 2) * i + 1
                barrier.wait(timeout=60)
                news[i] += stores[i].ingest("hub-a", batch(range(start, start + size))).new
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = set(range(1, rounds * size + size // 2 + 1))
    seqs = [e.seq for e in all_events(stores[0])]
    assert len(seqs) == len(set(seqs)) and set(seqs) == expected
    assert sum(news) == len(expected)
    for s in stores:
        s.close()


def test_cursor_paging_returns_every_event_once_in_ingest_order(store: CouncilStore) -> None:
    order: list[tuple[str, int]] = []
    for i in range(6):  # interleave two hubs, seqs out of order within a batch
        hub = "hub-a" if i % 2 == 0 else "hub-b"
        seqs = [i * 10 + k for k in (3, 1, 2, 5, 4)]
        store.ingest(hub, batch(seqs))
        order.extend((hub, s) for s in seqs)
    for limit in (1, 7, 30, 1000):
        got = all_events(store, limit=limit)
        assert [(e.hub_id, e.seq) for e in got] == order
        ids = [e.id for e in got]
        assert ids == sorted(set(ids))
    # A cursor taken in the middle resumes exactly after it, also for later arrivals.
    middle = all_events(store)[11].id
    store.ingest("hub-a", batch([999]))
    rest = all_events_after(store, middle)
    assert [(e.hub_id, e.seq) for e in rest] == [*order[12:], ("hub-a", 999)]


def all_events_after(store: CouncilStore, cursor: int) -> list[Any]:
    out: list[Any] = []
    while page := store.events_after(cursor, 5):
        out.extend(page)
        cursor = page[-1].id
    return out


def test_hubs_are_kept_apart(store: CouncilStore) -> None:
    assert store.ingest("hub-a", batch(range(1, 6))).new == 5
    assert store.ingest("hub-b", batch(range(1, 6))).new == 5  # same seqs, other hub: new
    assert [e.seq for e in all_events(store, limit=2, hub_id="hub-b")] == [1, 2, 3, 4, 5]
    assert {e.hub_id for e in all_events(store, hub_id="hub-a")} == {"hub-a"}
    assert store.count_events("hub-a") == store.count_events("hub-b") == 5


def test_unknown_hub_and_malformed_batches_store_nothing(store: CouncilStore) -> None:
    with pytest.raises(StoreError, match="unknown hub"):
        store.ingest("hub-x", batch([1]))
    broken = batch([1, 2])
    del broken[1]["wall_time"]
    with pytest.raises(StoreError, match="malformed"):
        store.ingest("hub-a", broken)
    with pytest.raises(StoreError):
        store.ingest("hub-a", [{**reading(3), "seq": "3"}])
    for bad in (
        {"wall_time": float("nan")},
        {"value": float("inf")},
        {"seq": 2**63},
        {"seq": -1},
        {"sensor_id": "s" * 129},
        {"kind": "gossip"},
    ):
        with pytest.raises(StoreError):
            store.ingest("hub-a", [reading(4), {**reading(5), **bad}])
    assert store.count_events() == 0
    hub = store.get_hub("hub-a")
    assert hub is not None and hub.last_contact is None


def test_reopen_keeps_everything_and_applies_no_migration(db_url: str) -> None:
    first = CouncilStore.open(db_url)
    assert first.applied_migrations == REVISIONS
    first.add_hub("hub-a", b"k", enrolled_at=1.0)
    first.ingest("hub-a", batch(range(1, 21)))
    before = all_events(first)
    first.close()
    second = CouncilStore.open(db_url)
    assert second.applied_migrations == ()
    assert second.current_revision() == HEAD
    assert all_events(second) == before
    assert second.ingest("hub-a", batch(range(15, 25))).new == 4  # idempotency survives
    second.close()


def test_migrations_create_exactly_the_schema_the_code_uses(db_url: str) -> None:
    store = CouncilStore.open(db_url)
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert names == {"alembic_version", "hubs", "events", "enrollment_codes", "tokens", "settings"}
    assert diff == []


def test_urls_refused_or_normalised() -> None:
    with pytest.raises(ValueError, match="SQLite file"):
        CouncilStore.open("sqlite://")
    with pytest.raises(ValueError, match="unsupported"):
        CouncilStore.open("mysql://x@localhost/db")


@pytest.mark.ci_required
def test_plain_postgresql_url_means_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    store = CouncilStore.open(plain)
    assert store.engine.dialect.driver == "psycopg"
    store.close()
