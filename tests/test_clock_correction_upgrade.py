"""Clock correction against the real council over loopback: a batch in flight when NTP syncs
ends corrected there, and a hub newer than its council (one that does not announce the
clock_corrected feature) loses nothing, then catches up once the council is upgraded.
The hub's clock is faked at the edge (tests.test_clock_correction.EdgeClock)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.events import Quantity, Reading, SystemEvent, SystemKind
from hub.identity import HubIdentity
from hub.store import Store, inspect
from hub.store.buffer import META_COUNCIL_FEATURES
from sync.client import make_http_client
from sync.protocol import FEATURE_CLOCK_CORRECTED, UPLOAD_PATH
from tests.council_server import running_council
from tests.test_clock_correction import DAY, EdgeClock, readings, stamped_alert
from tests.test_clock_correction_council import council_rows
from tests.test_uploader_council import uploader_for

BAD = -40 * DAY


@pytest.fixture
def db_url(council_db_on_each_engine: str) -> str:
    return council_db_on_each_engine


def drain(
    url: str,
    store: Store,
    hub_id: str,
    identity: HubIdentity,
    clock: EdgeClock,
    on_request: Any = None,
) -> None:
    async def run() -> None:
        async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
            if on_request is not None:
                http.event_hooks["request"].append(on_request)
            uploader = uploader_for(url, store, hub_id, identity, http, clock)  # type: ignore[arg-type]
            report = await uploader.drain()
            assert report.ok, report.error

    asyncio.run(run())


def set_aside(store: Store) -> int:
    conn = sqlite3.connect(store.path)
    try:
        return int(conn.execute("SELECT count(*) FROM events WHERE synced = 2").fetchone()[0])
    finally:
        conn.close()


def near(a: float, b: float) -> bool:
    return abs(a - b) < 1.0  # the hub's errors here are 40 days; loopback latency is ms


def test_a_batch_in_flight_when_ntp_syncs_ends_corrected_at_the_council(
    db_url: str, tmp_path: Path
) -> None:
    with running_council(db_url) as council:
        hub_id, identity = council.enroll(tmp_path / "key")
        clock = EdgeClock("boot-real", error=BAD, real=True)
        store = Store.open(tmp_path / "hub.db", clock=clock)
        first = store.commit([*readings(clock, 4), stamped_alert(clock), *readings(clock, 3)])
        synced_during_post = []

        async def ntp_syncs_while_posting(request: httpx.Request) -> None:
            if request.url.path == UPLOAD_PATH and not synced_during_post:
                clock.ntp_syncs()  # the clock watch runs while the batch is on the wire
                synced_during_post.append(store.correct_clock())

        drain(council.url, store, hub_id, identity, clock, ntp_syncs_while_posting)
        assert synced_during_post and synced_during_post[0] is not None
        held = council_rows(council.store, hub_id)
        for seq in first:  # posted uncorrected, corrected at the council by the report
            row = held[seq]
            assert row.clock_corrected and near(row.wall_time, clock.origin + row.monotonic), seq
        assert set_aside(store) == 0 and store.queue_depth() == 0
        store.close()


def test_parts_of_a_refused_batch_sent_after_the_correction_end_corrected_at_the_council(
    db_url: str, tmp_path: Path
) -> None:
    """A 422 makes the uploader send the batch again in parts (alerts first, then halves);
    the first accepted part's answer corrects the whole boot while the later parts wait in
    memory, uncorrected. They reach the council uncorrected, and the report follows them."""
    with running_council(db_url) as council:
        hub_id, identity = council.enroll(tmp_path / "key")
        clock = EdgeClock("boot-real", error=BAD, real=True)  # NTP never syncs
        store = Store.open(tmp_path / "hub.db", clock=clock)
        clock.step(1.0)
        poison = Reading("lounge", Quantity.TEMPERATURE, math.inf, clock.stamp())  # a 422
        store.commit([poison, *readings(clock, 12), stamped_alert(clock)])
        drain(council.url, store, hub_id, identity, clock)
        held = council_rows(council.store, hub_id)
        sent = [row for row in held.values() if row.kind != "system"]
        assert len(sent) == 13 and set_aside(store) == 1  # all but the poison
        for row in sent:
            assert row.clock_corrected and near(row.wall_time, clock.origin + row.monotonic)
        store.close()


def test_a_hub_newer_than_its_council_loses_nothing_and_catches_up_after_the_upgrade(
    db_url: str, tmp_path: Path
) -> None:
    clock = EdgeClock("boot-real", error=BAD, real=True)  # NTP never syncs
    store = Store.open(tmp_path / "hub.db", clock=clock)
    with running_council(db_url, features=()) as old:  # a council from before 0004
        hub_id, identity = old.enroll(tmp_path / "key")
        first = store.commit([*readings(clock, 4), stamped_alert(clock)])
        as_stamped = {e.seq: e.event.stamp.wall_time for e in store.events()}
        drain(old.url, store, hub_id, identity, clock)  # its answer dates the boot
        second = store.commit(readings(clock, 3))  # stamped after: corrected before sending
        drain(old.url, store, hub_id, identity, clock)
        held = council_rows(old.store, hub_id)
        assert set(first + second) <= set(held)  # everything arrived...
        assert set_aside(store) == 0  # ...nothing was refused or set aside
        # Nothing it does not understand was sent: no corrected flag, no clock_corrected.
        assert not any(row.clock_corrected for row in held.values())
        assert not [r for r in held.values() if r.body.get("system") == "clock_corrected"]
        for seq in first:
            assert held[seq].wall_time == as_stamped[seq]  # sent before the origin was known
        for seq in second:  # the corrected time, flagged unsynchronised
            row = held[seq]
            assert not row.clock_synced and near(row.wall_time, clock.origin + row.monotonic)
        # The report for the first batch waits in the outbox, not set aside.
        (waiting,) = store.next_batch()
        assert isinstance(waiting.event, SystemEvent)
        assert waiting.event.kind is SystemKind.CLOCK_CORRECTED
        assert store.get_meta(META_COUNCIL_FEATURES) == ""
        # Held, not backlog: status, the health report's queue and doctor do not count it.
        assert store.queue_depth() == 0
        status = inspect(store.path)
        assert status.queue_depth["system"] == 0 and status.oldest_unsynced is None
        assert SystemKind.CLOCK_CORRECTED.value == FEATURE_CLOCK_CORRECTED  # one name

    with running_council(db_url) as upgraded:  # the same database, now announcing
        store.commit(readings(clock, 1))  # a restarted hub only learns it from an answer
        drain(upgraded.url, store, hub_id, identity, clock)
        held = council_rows(upgraded.store, hub_id)
        for seq in first:
            row = held[seq]
            assert row.clock_corrected and near(row.wall_time, clock.origin + row.monotonic), seq
        assert store.queue_depth() == 0 and set_aside(store) == 0
        assert store.get_meta(META_COUNCIL_FEATURES) == "clock_corrected"
    store.close()
