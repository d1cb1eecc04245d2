"""The uploader against the real council service over loopback (uvicorn, real HTTP, real
signature checks), on SQLite and PostgreSQL, and through the fault-injecting proxy."""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import __version__
from hub.config import starter_config, with_council_config
from hub.identity import HubIdentity
from hub.store import Store
from sync.client import make_http_client
from sync.council.store import CouncilStore
from sync.health import HealthReporter
from sync.uploader import Outcome, Uploader, UploadSettings
from tests.council_server import CouncilServer, running_council
from tests.factories import alert, reading
from tests.faultproxy import Fault, FaultProxy


class InstantClock:
    """Real wall time (the council checks signatures against it), with sleeps cut to at
    most 10 ms: backoff and idle waits cost nothing, yet the loop never spins hot."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return time.time() + self.skew

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(min(max(seconds, 0.0), 0.01))


@pytest.fixture
def db_url(council_db_on_each_engine: str) -> str:
    """A fresh council database per test: a SQLite file, or a new database on the server."""
    return council_db_on_each_engine


def held_by_council(store: CouncilStore, hub_id: str) -> dict[int, dict[str, Any]]:
    held: dict[int, dict[str, Any]] = {}
    for event in store.iter_events(hub_id=hub_id):
        assert event.seq not in held, f"seq {event.seq} held twice"
        held[event.seq] = event.body
    return held


def records(store: Store) -> dict[int, dict[str, Any]]:
    return {e.seq: e.to_record() for e in store.events(limit=1_000_000)}


def uploader_for(
    council_url: str,
    store: Store,
    hub_id: str,
    identity: HubIdentity,
    http: httpx.AsyncClient,
    clock: InstantClock,
    **kw: Any,
) -> Uploader:
    health = kw.pop("health", None)
    on_config = kw.pop("on_config_version", None)
    return Uploader(
        store,
        identity,
        hub_id,
        UploadSettings(url=council_url, **kw),
        http,
        health=health,
        clock=clock,
        rng=random.Random(1),
        config_version=1,
        on_config_version=on_config,
    )


def enrolled(council: CouncilServer, tmp_path: Path) -> tuple[str, HubIdentity, Store]:
    hub_id, identity = council.enroll(tmp_path / "key", name="Flat 3")
    return hub_id, identity, Store.open(tmp_path / "hub.db")


def test_drains_the_outbox_into_the_real_council(db_url: str, tmp_path: Path) -> None:
    with running_council(db_url) as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        store.commit(
            [reading(float(i), sensor=f"s{i % 4}", value=15 + i % 70 / 7) for i in range(2200)]
        )
        store.commit([alert(3000.0, check="leak"), alert(3001.0, check="pull_cord")])
        clock = InstantClock()
        health = HealthReporter(tmp_path, sensors=lambda: {}, clock_synced=lambda: True)

        async def scenario() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                uploader = uploader_for(
                    council.url, store, hub_id, identity, http, clock, health=health
                )
                report = await uploader.drain()
                assert report.ok and report.events == 2202 and report.batches == 5
                assert uploader.status().clock_offset_s is not None

        asyncio.run(scenario())
        assert held_by_council(council.store, hub_id) == records(store)
        first = next(iter(council.store.iter_events(hub_id=hub_id)))
        assert first.kind == "alert"  # ingest order starts with the alerts
        entry = council.store.fleet_entry(hub_id)
        assert entry is not None and entry.software_version == __version__
        assert entry.high_water == store.last_seq and entry.events_held == 2202
        assert entry.clock_synced is True
        assert entry.queue_depth == 0  # reported as what waits once the batch is held
        store.close()


def test_a_hub_that_lost_its_newest_commits_loses_nothing(db_url: str, tmp_path: Path) -> None:
    """The SD card lied: the buffer is back at an older state and the hub hands out seqs the
    council already holds, for other events. They are renumbered, not dropped as duplicates."""
    with running_council(db_url) as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        store.commit([reading(float(i), value=20.0) for i in range(30)])
        clock = InstantClock()

        async def upload(s: Store) -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                assert (
                    await uploader_for(council.url, s, hub_id, identity, http, clock).drain()
                ).ok

        asyncio.run(upload(store))
        before = held_by_council(council.store, hub_id)
        store.close()
        # A buffer that forgot everything, sequence reservation included.
        lost = Store.open(tmp_path / "lost" / "hub.db")
        lost.commit([reading(float(i), value=30.0) for i in range(12)])
        asyncio.run(upload(lost))
        after = held_by_council(council.store, hub_id)
        assert {s: after[s] for s in before} == before  # nothing overwritten
        assert sorted(after) == list(range(1, 43))
        assert [after[s]["value"] for s in range(31, 43)] == [30.0] * 12
        assert lost.commit([reading(99.0)]) == [43]
        lost.close()


def test_a_hub_clock_an_hour_out_still_uploads(tmp_path: Path) -> None:
    with running_council(f"sqlite:///{tmp_path / 'c.db'}") as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        store.commit([reading(float(i)) for i in range(10)])
        clock = InstantClock(skew=-3600.0)  # a Pi after a power cut, before NTP

        async def scenario() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                uploader = uploader_for(council.url, store, hub_id, identity, http, clock)
                result = await uploader.upload_once()
                assert result.outcome is Outcome.SENT and result.requests == 2
                offset = uploader.status().clock_offset_s
                assert offset is not None and abs(offset - 3600.0) < 30

        asyncio.run(scenario())
        assert council.store.count_events(hub_id) == 10
        entry = council.store.fleet_entry(hub_id)
        assert entry is not None and entry.clock_offset_s is not None
        assert abs(entry.clock_offset_s) < 30  # the signed time was corrected
        store.close()


def test_a_new_config_version_is_noticed_and_fetched(tmp_path: Path) -> None:
    with running_council(f"sqlite:///{tmp_path / 'c.db'}") as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        council.store.set_hub_config(hub_id, {"report": {"heartbeat_min": 30.0}})
        store.commit([reading(1.0)])
        seen: list[int] = []

        async def scenario() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                uploader = uploader_for(
                    council.url,
                    store,
                    hub_id,
                    identity,
                    http,
                    InstantClock(),
                    on_config_version=seen.append,
                )
                assert (await uploader.drain()).ok
                assert seen == [2]
                fetched = await uploader.fetch_config()
                assert fetched.config_version == 2
                applied = with_council_config(
                    starter_config("Flat 3", tmp_path, simulated=False),
                    fetched.config,
                    fetched.config_version,
                )
                assert applied.report.heartbeat_min == 30.0
                assert applied.council.config_version == 2

        asyncio.run(scenario())
        store.close()


FAULT_ATTEMPTS = int(os.environ.get("HEARTH_UPLOADER_FAULT_ATTEMPTS", "250"))
WEIGHTS = {
    Fault.NONE: 45,
    Fault.REFUSE: 8,
    Fault.RESET: 8,
    Fault.STALL: 2,
    Fault.STALL_RESPONSE: 2,
    Fault.HTTP_500: 8,
    Fault.HTTP_503: 8,
    Fault.HTTP_429: 8,
    Fault.DROP_RESPONSE: 11,
}


def test_through_the_fault_proxy_the_council_ends_with_exactly_the_hubs_events(
    tmp_path: Path,
) -> None:
    """`hearth run`'s loop (Uploader.run) while events keep arriving, against every fault
    the proxy has; at the end the council holds each event once, none missing."""
    with running_council(f"sqlite:///{tmp_path / 'c.db'}") as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        host, port = council.url.removeprefix("http://").split(":")
        with FaultProxy((host, int(port)), weights=WEIGHTS, seed=5, stall_max_s=5.0) as proxy:
            stop_writing = threading.Event()

            def writer() -> None:  # the group committer of a live hub
                i = 0
                while not stop_writing.is_set():
                    i += 1
                    store.commit([reading(float(i), sensor=f"s{i % 3}", value=i / 10)])
                    if i % 97 == 0:
                        store.commit([alert(float(i), check=f"c{i}")])
                    stop_writing.wait(0.005)

            async def scenario() -> None:
                thread = threading.Thread(target=writer, daemon=True)
                thread.start()
                async with make_http_client(ca_bundle=None, timeout_s=0.4) as http:
                    uploader = uploader_for(
                        proxy.url,
                        store,
                        hub_id,
                        identity,
                        http,
                        InstantClock(),
                        batch_max_events=20,
                        sync_interval_s=0.05,
                        retry_max_s=0.2,
                    )
                    task = asyncio.create_task(uploader.run())
                    deadline = time.monotonic() + 120
                    while proxy.stats().attempts("POST /v1/upload") < FAULT_ATTEMPTS:
                        assert time.monotonic() < deadline, proxy.stats()
                        await asyncio.sleep(0.05)
                    stop_writing.set()
                    await asyncio.to_thread(thread.join, 10)
                    proxy.set_weights({Fault.NONE: 1})  # the link heals
                    while store.queue_depth() > 0:
                        assert time.monotonic() < deadline + 60, uploader.status()
                        await asyncio.sleep(0.05)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task

            asyncio.run(scenario())
            stats = proxy.stats()
        assert held_by_council(council.store, hub_id) == records(store)
        assert all(stats.faults[f] > 0 for f in Fault), stats.faults
        assert stats.attempts("POST /v1/upload") >= FAULT_ATTEMPTS
        store.close()


UPLOADER_KILLS = int(os.environ.get("HEARTH_UPLOADER_KILLS", "6"))
_KILLED_UPLOADER = """
import asyncio, os, random, sys
from pathlib import Path
from hub.identity import HubIdentity
from hub.store import Store
from sync.client import make_http_client
from sync.uploader import Uploader, UploadSettings
url, hub_id, key_dir, db = sys.argv[1:]
store = Store.open(Path(db))
identity = HubIdentity.load(Path(key_dir))

async def main():
    async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
        settings = UploadSettings(url=url, batch_max_events=37)
        uploader = Uploader(store, identity, hub_id, settings, http, rng=random.Random())
        while True:
            result = await uploader.upload_once()
            os.write(1, f"{result.outcome}\\n".encode())

asyncio.run(main())
"""


def test_kill_9_during_uploads_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """The uploader process is killed at random moments (mid-request, between the answer
    and mark_synced, mid-commit); after each restart it goes on from the store's flags."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    rng = random.Random(11)
    with running_council(f"sqlite:///{tmp_path / 'c.db'}") as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        store.commit([reading(float(i), sensor=f"s{i % 5}", value=i / 3) for i in range(3000)])
        store.close()
        argv = [sys.executable, "-c", _KILLED_UPLOADER, council.url, hub_id]
        argv += [str(tmp_path / "key"), str(tmp_path / "hub.db")]
        kills = 0
        for _ in range(UPLOADER_KILLS):
            proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            for _ in range(rng.randint(1, 5)):
                assert proc.stdout.readline().strip() == b"sent"
            time.sleep(rng.uniform(0.0, 0.03))  # land the kill anywhere in the next round
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
            kills += 1
        store = Store.open(tmp_path / "hub.db")
        left = store.queue_depth()

        async def finish() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                assert (
                    await uploader_for(
                        council.url, store, hub_id, identity, http, InstantClock()
                    ).drain()
                ).ok

        asyncio.run(finish())
        assert kills == UPLOADER_KILLS and 0 < left < 3000
        assert held_by_council(council.store, hub_id) == records(store)
        store.close()


def test_poison_events_are_set_aside_and_everything_else_arrives(
    council_db_url: str, tmp_path: Path
) -> None:
    """An infinite reading (the council refuses it, 422) and a NaN one (read back from SQLite
    as NULL: the hub cannot encode it) at the head of the outbox, readings and an alert
    behind them: the alert arrives in the first request that is accepted, the readings
    arrive, the two are set aside and reported, nothing else is lost."""
    with running_council(council_db_url) as council:
        hub_id, identity, store = enrolled(council, tmp_path)
        store.commit([reading(0.0, value=math.inf), reading(0.5, value=math.nan)])
        store.commit([reading(float(i), value=20.0 + i) for i in range(1, 30)])
        store.commit([alert(40.0)])
        clock = InstantClock()
        seen: list[list[int]] = []

        async def scenario() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                up = uploader_for(council.url, store, hub_id, identity, http, clock)
                first = await up.upload_once()
                seen.append(sorted(held_by_council(council.store, hub_id)))
                assert first.rejected == 2
                assert (await up.drain()).ok

        asyncio.run(scenario())
        assert 32 in seen[0]  # the alert (seq 32) was held after the very first round
        held = held_by_council(council.store, hub_id)
        ours = records(store)
        assert 1 not in held and 2 not in held
        reports = [b for b in held.values() if b.get("system") == "upload_rejected"]
        assert sorted(s for r in reports for s in r["details"]["seqs"]) == [1, 2]
        assert all(held[s] == ours[s] for s in range(3, 33))
        assert store.queue_depth() == 0 and store.status().rejected == 2
