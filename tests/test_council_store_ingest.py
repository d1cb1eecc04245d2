"""The council store's data side on both engines: conflicts and high water on ingest, health
reports, the filtered pull cursor, export iteration and the fleet view."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from hub.events import (
    Alert,
    AlertState,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from sync.council.records import MAX_JSON_DEPTH
from sync.council.store import CouncilStore, LowBattery, SilentSensor, StoreError
from sync.council.tables import hubs
from tests.council_server import postgres_database
from tests.test_council_store import batch, db_url, reading  # noqa: F401  (db_url: fixture)

T0 = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(db_url: str) -> Iterator[CouncilStore]:  # noqa: F811
    s = CouncilStore.open(db_url)
    s.add_hub("hub-a", b"a" * 32, enrolled_at=1.0, name="flat 1")
    s.add_hub("hub-b", b"b" * 32, enrolled_at=2.0)
    yield s
    s.close()


def system(seq: int, details: dict[str, Any], wall_time: float = T0) -> dict[str, Any]:
    stamp = Stamp(wall_time=wall_time, clock_synced=True, monotonic=float(seq))
    return StoredEvent(seq, SystemEvent(SystemKind.GAP, details, stamp)).to_record()


def sensor(last_seen: float | None, battery: float | None = 80.0, silent: bool = False) -> Any:
    return {"room": "kitchen", "kind": "temperature", "last_seen": last_seen,
            "battery": battery, "silent": silent}  # fmt: skip


def stored_health(store: CouncilStore, hub_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(hubs.c.health).where(hubs.c.hub_id == hub_id))


# -- ingest: conflicts, high water, counts ---------------------------------------------------


def test_different_content_under_a_held_seq_is_a_conflict_never_overwritten(
    store: CouncilStore,
) -> None:
    first = store.ingest("hub-a", batch(range(1, 6)))
    assert (first.new, first.held, first.conflicts, first.high_water) == (5, (1, 2, 3, 4, 5), (), 5)
    resend = [reading(3, value=99.0), reading(4), reading(6), reading(2, value=-1.0)]
    result = store.ingest("hub-a", resend)
    assert (result.new, result.held, result.conflicts) == (1, (4, 6), (2, 3))
    assert (result.duplicates, result.high_water, result.config_version) == (1, 6, 1)
    kept = {e.seq: e.value for e in store.iter_events()}
    assert kept == {1: 20.0, 2: 20.0, 3: 20.0, 4: 20.0, 5: 20.0, 6: 20.0}
    again = store.ingest("hub-a", resend)  # still conflicts, still nothing stored
    assert (again.new, again.held, again.conflicts) == (0, (4, 6), (2, 3))


def test_numbers_that_the_database_rewrites_are_not_conflicts(store: CouncilStore) -> None:
    # PostgreSQL's JSONB gives 1e23 back as an integer and -0.0 as 0.0: same values.
    details = {"big": 1e23, "tiny": 1e-300, "zero": -0.0, "n": 7, "ok": True, "list": [1.5, None]}
    store.ingest("hub-a", [system(1, details)])
    again = store.ingest("hub-a", [system(1, details)])
    assert (again.new, again.held, again.conflicts) == (0, (1,), ())
    changed = store.ingest("hub-a", [system(1, {**details, "ok": 1})])  # true is not 1
    assert changed.conflicts == (1,)
    assert store.ingest("hub-a", [system(1, {**details, "n": 7.5})]).conflicts == (1,)


def test_high_water_and_events_held_are_kept_per_hub(store: CouncilStore) -> None:
    assert store.ingest("hub-a", batch([10, 11])).high_water == 11
    assert store.ingest("hub-a", batch([1, 2, 3])).high_water == 11  # late, lower seqs
    assert store.ingest("hub-a", batch([11, 12])).high_water == 12
    assert store.ingest("hub-a", []).high_water == 12
    assert store.ingest("hub-b", batch([4])).high_water == 4
    a, b = store.fleet_entry("hub-a"), store.fleet_entry("hub-b")
    assert a is not None and b is not None
    assert (a.high_water, a.events_held) == (12, store.count_events("hub-a")) == (12, 6)
    assert (b.high_water, b.events_held) == (4, 1)


def test_nan_anywhere_in_a_record_refuses_the_batch(store: CouncilStore) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(StoreError, match="malformed"):
            store.ingest("hub-a", [reading(1), system(2, {"x": [bad]})])
    assert store.count_events() == 0
    assert store.fleet_entry("hub-a").high_water == 0  # type: ignore[union-attr]


def test_a_record_or_config_nested_too_deeply_is_refused(store: CouncilStore) -> None:
    """Stored, it would break every reader (json.dumps recursion, pydantic's depth limit)."""
    deep: dict[str, Any] = {}
    for _ in range(MAX_JSON_DEPTH):
        deep = {"a": deep}
    for details in (deep, {"x": [[deep]]}):
        for _ in range(2):  # a retry gets the same answer, not a RecursionError
            with pytest.raises(StoreError, match="nested deeper than 32"):
                store.ingest("hub-a", [reading(1), system(2, details)])
    assert store.count_events() == 0
    very_deep: list[Any] = []
    for _ in range(5000):  # past Python's recursion limit: json.dumps alone would blow up
        very_deep = [very_deep]
    with pytest.raises(StoreError, match="nested deeper"):
        store.set_hub_config("hub-a", {"s": {"x": very_deep}})
    assert store.get_hub("hub-a").config_version == 1  # type: ignore[union-attr]


def alert(seq: int, evidence: dict[str, Any]) -> dict[str, Any]:
    stamp = Stamp(wall_time=T0, clock_synced=True, monotonic=float(seq))
    event = Alert("no_motion", Severity.URGENT, AlertState.RAISED, "hall", "pir\x001", T0,
                  None, evidence, stamp)  # fmt: skip
    return StoredEvent(seq, event).to_record()


def test_unstorable_text_in_a_record_is_stored_replaced_and_a_resend_is_a_duplicate(
    store: CouncilStore,
) -> None:
    """A refused batch would block the hub's outbox for good (alerts go first and a refusal
    is retried for ever): NUL and lone surrogates become U+FFFD instead, before storing and
    before the same-content comparison."""
    sent = [
        alert(1, {"note": "door\x00open", "k\x00": ["\ud800", {"deep": "\udfff!"}]}),
        system(2, {"error": "read failed: \x00\x00", "ok": "caf\u00e9 \U0001f600"}),
        reading(3),
    ]
    first = store.ingest("hub-a", sent)
    assert (first.new, first.held, first.conflicts) == (3, (1, 2, 3), ())
    bodies = {e.seq: e for e in store.iter_events()}
    assert bodies[1].sensor_id == "pir\ufffd1" and bodies[1].body["sensor_id"] == "pir\ufffd1"
    assert bodies[1].body["evidence"] == {
        "note": "door\ufffdopen",
        "k\ufffd": ["\ufffd", {"deep": "\ufffd!"}],
    }
    # Valid non-ASCII text (an astral character too) is kept as it was.
    assert bodies[2].body["details"] == {"error": "read failed: \ufffd\ufffd",
                                         "ok": "caf\u00e9 \U0001f600"}  # fmt: skip
    assert bodies[3].body == reading(3)
    again = store.ingest("hub-a", sent)
    assert (again.new, again.held, again.conflicts, again.duplicates) == (0, (1, 2, 3), (), 3)
    # Different text that only looks the same once replaced is still different content.
    other = store.ingest("hub-a", [alert(1, {"note": "door?open"})])
    assert other.conflicts == (1,)
    assert store.count_events() == 3


def test_a_held_row_the_fast_path_missed_falls_back_to_the_careful_path(
    store: CouncilStore,
) -> None:
    """Fresh rows go in without a conflict clause (PostgreSQL: COPY), trusting the ingest
    lock and the hub's high water. If that trust is ever wrong (here: high water reset by
    hand), the unique constraint refuses the insert, the transaction rolls back whole and
    the batch is redone with ON CONFLICT DO NOTHING: the hub still gets the right answer."""
    store.ingest("hub-a", batch(range(1, 6)))
    with store.engine.begin() as conn:
        conn.execute(hubs.update().where(hubs.c.hub_id == "hub-a").values(high_water=0))
    rollbacks: list[object] = []
    sa.event.listen(store.engine, "rollback", rollbacks.append)
    result = store.ingest("hub-a", [reading(4, value=99.0), reading(5), reading(6)])
    assert rollbacks, "the fast path did not fail: the fallback was not exercised"
    assert (result.new, result.held, result.conflicts, result.high_water) == (1, (5, 6), (4,), 6)
    assert [(e.seq, e.value) for e in store.iter_events()][-3:] == [(4, 20.0), (5, 20.0), (6, 20.0)]
    entry = store.fleet_entry("hub-a")
    assert entry is not None and entry.events_held == store.count_events("hub-a") == 6


def test_a_lookup_is_skipped_only_above_high_water(store: CouncilStore) -> None:
    """A late batch below the high water (a catch-up after the alerts went first) is looked
    up like any other: its re-send is a duplicate, its changed content a conflict."""
    store.ingest("hub-a", [alert(100, {"n": 1})])
    assert store.ingest("hub-a", batch([1, 2])).new == 2
    again = store.ingest("hub-a", [reading(1), reading(2, value=5.0), reading(3)])
    assert (again.new, again.held, again.conflicts, again.high_water) == (1, (1, 3), (2,), 100)


# -- health reports --------------------------------------------------------------------------


def test_the_latest_health_report_is_kept_with_known_keys_only(store: CouncilStore) -> None:
    report = {
        "software_version": "0.5.1",
        "uptime_s": 3600,
        "queue_depth": 12,
        "disk_free_bytes": 2_000_000_000,
        "clock_synced": True,
        "config_version": 1,
        "sensors": {"t1": {**sensor(T0), "firmware": "x"}},
        "future_field": {"anything": 1},
    }
    store.ingest("hub-a", batch([1]), received_at=T0 + 5, health=report, clock_offset_s=0.25)
    health = stored_health(store, "hub-a")
    assert "future_field" not in health and "firmware" not in health["sensors"]["t1"]
    assert health["sensors"]["t1"] == sensor(T0)
    entry = store.fleet_entry("hub-a")
    assert entry is not None
    assert (entry.software_version, entry.uptime_s, entry.queue_depth) == ("0.5.1", 3600.0, 12)
    assert (entry.disk_free_bytes, entry.clock_synced, entry.clock_offset_s) == (2e9, True, 0.25)
    assert (entry.last_contact, entry.name, entry.enrolled_at) == (T0 + 5, "flat 1", 1.0)
    # No report in a batch keeps the last one; the version argument wins over the report's.
    store.ingest("hub-a", batch([2]), received_at=T0 + 9, software_version="0.6.0")
    entry = store.fleet_entry("hub-a")
    assert entry is not None and (entry.queue_depth, entry.software_version) == (12, "0.6.0")
    assert (entry.last_contact, entry.clock_offset_s) == (T0 + 9, 0.25)


def test_a_report_replaces_the_keys_it_carries_and_keeps_the_others(
    store: CouncilStore,
) -> None:
    """`hearth sync now` reports no sensors and no uptime: the running service's detail stays."""
    full = {"uptime_s": 100.0, "queue_depth": 5, "clock_synced": True,
            "sensors": {"t1": sensor(T0, battery=10.0), "t2": sensor(T0)}}  # fmt: skip
    store.ingest("hub-a", batch([1]), received_at=T0 + 1, health=full, signed_at=T0)
    store.ingest("hub-a", batch([2]), received_at=T0 + 2, health={"queue_depth": 0})
    assert stored_health(store, "hub-a") == {**full, "queue_depth": 0}
    entry = store.fleet_entry("hub-a")
    assert entry is not None and (entry.uptime_s, entry.queue_depth) == (100.0, 0)
    assert [b.sensor_id for b in entry.low_batteries] == ["t1"]
    # A report that carries `sensors` replaces the whole set: a removed sensor goes.
    store.ingest("hub-a", [], received_at=T0 + 3, health={"sensors": {"t2": sensor(T0)}})
    assert stored_health(store, "hub-a")["sensors"] == {"t2": sensor(T0)}


def test_an_older_signed_upload_stores_its_events_but_not_its_fleet_figures(
    store: CouncilStore,
) -> None:
    """A replay, or a retry that arrives after a newer upload, must not put old figures over
    new ones; the signed time decides (equal counts as newer: it is whole seconds)."""
    store.ingest("hub-a", batch([1]), received_at=T0 + 10, signed_at=T0 + 9,
                 health={"queue_depth": 1, "software_version": "2.0"},
                 clock_offset_s=1.0)  # fmt: skip
    late = store.ingest("hub-a", batch([2]), received_at=T0 + 20, signed_at=T0 + 5,
                        health={"queue_depth": 40, "software_version": "1.0"},
                        clock_offset_s=15.0)  # fmt: skip
    assert (late.new, late.high_water) == (1, 2)
    entry = store.fleet_entry("hub-a")
    assert entry is not None
    assert (entry.last_contact, entry.queue_depth, entry.clock_offset_s) == (T0 + 10, 1, 1.0)
    assert (entry.software_version, entry.events_held, entry.high_water) == ("2.0", 2, 2)
    store.ingest("hub-a", [], received_at=T0 + 30, signed_at=T0 + 9, health={"queue_depth": 2})
    entry = store.fleet_entry("hub-a")
    assert entry is not None and (entry.last_contact, entry.queue_depth) == (T0 + 30, 2)


MALFORMED_HEALTH: list[tuple[Any, str]] = [
    ("not an object", "health"),
    ({"uptime_s": "long"}, "health.uptime_s"),
    ({"uptime_s": float("nan")}, "health.uptime_s"),
    ({"queue_depth": 1.5}, "health.queue_depth"),
    ({"queue_depth": -1}, "health.queue_depth"),
    ({"disk_free_bytes": True}, "health.disk_free_bytes"),
    ({"clock_synced": 1}, "health.clock_synced"),
    ({"config_version": None}, "health.config_version"),
    ({"software_version": 5}, "health.software_version"),
    ({"software_version": "v" * 65}, "health.software_version"),
    ({"sensors": ["t1"]}, "health.sensors"),
    ({"sensors": {"t1": "ok"}}, "health.sensors['t1']"),
    ({"sensors": {"t1": {"battery": "low"}}}, "health.sensors['t1'].battery"),
    ({"sensors": {"t1": {"last_seen": [1]}}}, "health.sensors['t1'].last_seen"),
    ({"sensors": {"t1": {"silent": "no"}}}, "health.sensors['t1'].silent"),
    ({"sensors": {"t1": {"room": 3}}}, "health.sensors['t1'].room"),
]


def test_a_malformed_health_report_refuses_the_batch_naming_the_field(
    store: CouncilStore,
) -> None:
    for health, field in MALFORMED_HEALTH:
        with pytest.raises(StoreError) as info:
            store.ingest("hub-a", batch([1]), health=health)
        assert str(info.value).startswith(field + ":"), (health, str(info.value))
    assert store.count_events() == 0
    hub = store.get_hub("hub-a")
    assert hub is not None and hub.last_contact is None


def test_a_bad_clock_offset_or_version_refuses_the_batch(store: CouncilStore) -> None:
    with pytest.raises(StoreError):
        store.ingest("hub-a", batch([1]), clock_offset_s=float("inf"))
    with pytest.raises(StoreError):
        store.ingest("hub-a", batch([1]), software_version="v" * 65)
    assert store.count_events() == 0


# -- fleet -----------------------------------------------------------------------------------


def test_fleet_before_any_contact(store: CouncilStore) -> None:
    entries = store.fleet()
    assert [e.hub_id for e in entries] == ["hub-a", "hub-b"]
    b = entries[1]
    assert (b.last_contact, b.queue_depth, b.uptime_s, b.clock_synced, b.clock_offset_s) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert (b.config_version, b.high_water, b.events_held) == (1, 0, 0)
    assert (b.silent_sensors, b.low_batteries) == ((), ())
    assert store.fleet_entry("hub-nope") is None


def test_silent_sensors_and_low_batteries(store: CouncilStore) -> None:
    at = T0 + 10 * HOUR
    report = {
        "clock_synced": True,
        "sensors": {
            "fresh": sensor(at - 5.9 * HOUR, battery=15.0),
            "stale": sensor(at - 6.1 * HOUR, battery=14.9),
            "flagged": sensor(at, silent=True, battery=None),
            "never": sensor(None, battery=3.0),
        },
    }
    store.ingest("hub-a", [], received_at=at, health=report)
    entry = store.fleet_entry("hub-a")
    assert entry is not None
    assert entry.silent_sensors == (
        SilentSensor("flagged", "kitchen", at),
        SilentSensor("stale", "kitchen", at - 6.1 * HOUR),
    )
    assert entry.low_batteries == (
        LowBattery("never", "kitchen", 3.0),
        LowBattery("stale", "kitchen", 14.9),
    )
    assert store.fleet() == [entry, store.fleet_entry("hub-b")]


@pytest.mark.parametrize(
    ("offset_h", "clock_synced", "silent"),
    [(0.0, True, True), (2.0, True, False), (-2.0, True, True), (0.0, False, False)],
)
def test_silence_is_judged_on_the_hubs_clock(
    store: CouncilStore, offset_h: float, clock_synced: bool, silent: bool
) -> None:
    # last_seen is hub time. A hub whose clock is 2 h behind the council (offset +2 h) saw
    # the sensor 5 h before its own "now", not 7 h; an unsynced clock can't judge at all.
    at = T0 + 10 * HOUR
    report = {"clock_synced": clock_synced, "sensors": {"t1": sensor(at - 7 * HOUR)}}
    store.ingest("hub-a", [], received_at=at, health=report, clock_offset_s=offset_h * HOUR)
    entry = store.fleet_entry("hub-a")
    assert entry is not None and bool(entry.silent_sensors) is silent


# -- the pull cursor -------------------------------------------------------------------------


def mixed_history(store: CouncilStore) -> list[tuple[str, int, str]]:
    """Readings and system events on two hubs, interleaved; returns (hub, seq, kind) in order."""
    order: list[tuple[str, int, str]] = []
    for i in range(8):
        hub = "hub-a" if i % 3 else "hub-b"
        seqs = [i * 10 + k for k in range(4)]
        records = [
            reading(s) if s % 2 else system(s, {"i": i}, wall_time=1_700_000_000.0 + s)
            for s in seqs
        ]
        store.ingest(hub, records)
        order += [(hub, r["seq"], r["kind"]) for r in records]
    return order


def pages(store: CouncilStore, limit: int, after: int = 0, **filters: Any) -> list[Any]:
    """Every page from `after` until `more` is false."""
    out = []
    while True:
        page = store.events_page(after, limit, **filters)
        out.append(page)
        assert page.next_cursor >= after  # never backwards
        after = page.next_cursor
        if not page.more:
            return out


def test_filtered_pages_return_each_match_once_and_the_cursor_passes_the_rest(
    store: CouncilStore,
) -> None:
    order = mixed_history(store)
    top = max(e.id for e in store.iter_events())
    cases: list[dict[str, Any]] = [
        {},
        {"hub_id": "hub-b"},
        {"kind": "system"},
        {"hub_id": "hub-a", "kind": "reading"},
        {"since": 1_700_000_000.0 + 21, "until": 1_700_000_000.0 + 62},
        {"hub_id": "hub-nope"},
    ]
    for limit, filters in itertools.product((1, 3, 7, 100), cases):
        got = pages(store, limit, **filters)
        events = [e for p in got for e in p.events]
        expected = [o for o in order if _matches(o, filters)]
        assert [(e.hub_id, e.seq, e.kind) for e in events] == expected, (limit, filters)
        assert all(len(p.events) == limit for p in got[:-1])
        assert got[-1].next_cursor == top  # past every row scanned, matching or not
        assert [e.id for e in events] == sorted({e.id for e in events})


def _matches(event: tuple[str, int, str], filters: dict[str, Any]) -> bool:
    hub, seq, kind = event
    wall = 1_700_000_000.0 + seq
    since: float = filters.get("since", wall)
    until: float = filters.get("until", wall + 1)
    return (
        filters.get("hub_id", hub) == hub
        and filters.get("kind", kind) == kind
        and (since <= wall < until)
    )


def test_page_cursor_details(store: CouncilStore) -> None:
    empty = store.events_page(0, 10)
    assert (empty.events, empty.next_cursor, empty.more) == ([], 0, False)
    store.ingest("hub-a", batch(range(1, 5)))
    ids = [e.id for e in store.iter_events()]
    exact = store.events_page(0, 4)  # exactly a page left: no needless extra round
    assert ([e.id for e in exact.events], exact.next_cursor, exact.more) == (ids, ids[-1], False)
    part = store.events_page(0, 3)
    assert (part.next_cursor, part.more) == (ids[2], True)
    # Non-matching rows arriving later still move a filtered cursor on, matching ones show.
    store.ingest("hub-b", batch([1, 2]))
    idle = store.events_page(exact.next_cursor, 10, hub_id="hub-a")
    assert idle.events == [] and idle.next_cursor == ids[-1] + 2 and not idle.more
    store.ingest("hub-a", batch([9]))
    (late,) = store.events_page(idle.next_cursor, 10, hub_id="hub-a").events
    assert late.seq == 9
    beyond = store.events_page(10**12, 10)  # a cursor from the future is kept, not reset
    assert (beyond.events, beyond.next_cursor) == ([], 10**12)
    with pytest.raises(StoreError, match="kind"):
        store.events_page(0, 10, kind="gossip")
    with pytest.raises(ValueError):
        store.events_page(0, 0)


def test_iter_events_pages_through_everything_with_filters(store: CouncilStore) -> None:
    order = mixed_history(store)
    assert [(e.hub_id, e.seq) for e in store.iter_events(page=5)] == [(h, s) for h, s, _ in order]
    systems = list(store.iter_events(hub_id="hub-a", kind="system", page=2))
    assert [(e.hub_id, e.seq) for e in systems] == [
        (h, s) for h, s, k in order if h == "hub-a" and k == "system"
    ]
    middle = list(store.iter_events())[10].id
    assert [e.id for e in store.iter_events(after=middle, page=3)] == [
        e.id for e in store.iter_events() if e.id > middle
    ]


def test_a_filtered_reader_during_ingests_sees_every_match_once(db_url: str) -> None:  # noqa: F811
    writer, reader = CouncilStore.open(db_url), CouncilStore.open(db_url)
    writer.add_hub("hub-a", b"a" * 32)
    writer.add_hub("hub-b", b"b" * 32)
    rounds = 120
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for r in range(rounds):
                writer.ingest("hub-a" if r % 2 else "hub-b", batch(range(r * 5, r * 5 + 5)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen: list[int] = []
    cursor = 0
    while True:
        finished = done.is_set()  # read before the page: the last page then sees everything
        page = reader.events_page(cursor, 7, hub_id="hub-a")
        seen += [e.seq for e in page.events]
        cursor = page.next_cursor
        if finished and not page.more:
            break
    thread.join(timeout=60)
    assert errors == []
    assert seen == [s for r in range(1, rounds, 2) for s in range(r * 5, r * 5 + 5)]
    writer.close()
    reader.close()


@pytest.mark.ci_required
def test_concurrent_writers_never_let_a_reader_skip_an_event(postgres_url: str) -> None:
    """PostgreSQL hands out ids when rows are inserted, not when they commit: without the
    ingest lock a writer can commit ids 21-40 while another still holds 1-20 uncommitted, a
    reader sees 40 and its cursor passes 1-20 for ever. With the lock ids commit in order.

    Each writer commit is delayed a little (0-10 ms, before COMMIT is sent), which widens the
    window between taking ids and committing them: without the lock, this fails nearly every
    run; without the delay, only rarely (the window is then a fraction of a millisecond)."""
    writers, rounds, size = 4, 40, 20
    with postgres_database(postgres_url) as url:
        writer, reader = CouncilStore.open(url), CouncilStore.open(url)
        chance = random.Random(5)

        @sa.event.listens_for(writer.engine, "commit")
        def slow_commit(_conn: Any) -> None:
            time.sleep(chance.uniform(0.0, 0.01))

        try:
            for w in range(writers):
                writer.add_hub(f"hub-{w}", bytes([w]) * 32)
            start = threading.Barrier(writers + 1)
            finished = [threading.Event() for _ in range(writers)]
            errors: list[BaseException] = []

            def write(w: int) -> None:
                try:
                    start.wait(timeout=30)
                    for r in range(rounds):
                        writer.ingest(f"hub-{w}", batch(range(r * size, (r + 1) * size)))
                except BaseException as exc:
                    errors.append(exc)
                finally:
                    finished[w].set()

            threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
            for t in threads:
                t.start()
            start.wait(timeout=30)
            seen: list[tuple[str, int]] = []
            cursor = 0
            while True:
                all_done = all(f.is_set() for f in finished)  # before the page: it sees all
                page = reader.events_page(cursor, 7)
                seen += [(e.hub_id, e.seq) for e in page.events]
                cursor = page.next_cursor
                if all_done and not page.more:
                    break
            for t in threads:
                t.join(timeout=60)
            assert errors == []
            expected = {(f"hub-{w}", s) for w in range(writers) for s in range(rounds * size)}
            assert len(seen) == len(set(seen)), "an event was read twice"
            assert set(seen) == expected, f"{len(expected - set(seen))} events skipped"
        finally:
            writer.close()
            reader.close()
