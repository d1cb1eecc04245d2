"""Catch-up after a week offline: the real uploader drains one home's week of events from the
hub's buffer to the real council (SQLite, under uvicorn in a child process, on 127.0.0.1).

The backlog is what the hub itself would hold: a simulated home (hub.evaluation, the same
generator as `make eval`: 12 sensors, climate every few minutes, PIR, door and bed-mat
changes, batteries, the resident's routine) replayed through the whole hub pipeline with
`hub.replay`, so readings, alerts and system events are in the buffer as `hearth run` leaves
them. Then the uploader runs with the default batch settings until the buffer is drained:
once unlimited (real time over loopback), then once per bandwidth cap (64 KiB/s, a metered
mobile link; 8 KiB/s, a poor 2G one) with a virtual clock, so the cap's pacing is modelled
instead of waited for. The modelled time is pacing plus real processing; a real mobile link
adds its round trips (one per batch) on top.
Figures, not assertions; the run fails only if the council does not end up holding exactly
the hub's events.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hub.config import load_config
from hub.evaluation.simulator import HomeSpec, simulate_home, write_home
from hub.identity import HubIdentity
from hub.replay import replay
from hub.store import Store
from sync.client import make_http_client
from sync.council.store import CouncilStore
from sync.health import HealthReporter
from sync.uploader import DrainReport, Uploader, UploadSettings
from tests.benchmarks.bench_council import council_process

DAYS = 7
CAPS_KIB_S = (64.0, 8.0)  # a metered mobile link; a poor 2G one


class VirtualClock:
    """Real time, except that the uploader's waits (the bandwidth pacing) pass at once and
    are added to its monotonic clock: the drain's duration is then what the link would take
    at the cap, without the benchmark waiting for it."""

    def __init__(self) -> None:
        self.waited = 0.0

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic() + self.waited

    async def sleep(self, seconds: float) -> None:
        self.waited += max(0.0, seconds)
        await asyncio.sleep(0)


def build_backlog(directory: Path, days: int = DAYS) -> Path:
    """A hub buffer holding `days` of a simulated home, nothing synced yet."""
    home = simulate_home(HomeSpec(seed=1, index=0, days=days, warmup_days=0))
    written = write_home(home, directory / "home")
    db = directory / "hub" / "hearth.db"
    db.parent.mkdir(parents=True)
    asyncio.run(
        replay(
            [written.data],
            "jsonl",
            config=load_config(written.config),
            speed=None,
            db_path=db,
        )
    )
    return db


def _kinds(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    after = 0
    while batch := store.events(after_seq=after, limit=5000):
        for e in batch:
            kind = type(e.event).__name__
            counts[kind] = counts.get(kind, 0) + 1
        after = batch[-1].seq
    return counts


async def _drain(
    store: Store,
    identity: HubIdentity,
    hub_id: str,
    settings: UploadSettings,
    data_dir: Path,
    clock: VirtualClock | None,
) -> tuple[DrainReport, float]:
    """The uploader as `hearth sync now` runs it: default settings but the ones given."""
    http = make_http_client(ca_bundle=None, timeout_s=settings.timeout_s)
    try:
        uploader = Uploader(
            store,
            identity,
            hub_id,
            settings,
            http,
            health=HealthReporter(data_dir=data_dir, service=False),
            clock=clock,
        )
        start = time.perf_counter()
        report = await uploader.drain()
        return report, time.perf_counter() - start
    finally:
        await http.aclose()


def catch_up_week(days: int = DAYS, caps_kib_s: tuple[float, ...] = CAPS_KIB_S) -> dict[str, Any]:
    """Drain the week once without a cap (real time) and once per cap (modelled time)."""
    # The unlimited run last, on a council whose first requests have been served.
    runs: list[float | None] = [*caps_kib_s, None]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-catchup-") as d:
        work = Path(d)
        backlog = build_backlog(work, days)
        store = Store.open(backlog)
        kinds, events = _kinds(store), store.status().total_events
        store.close()  # checkpointed: the file alone is the whole backlog, to copy per run
        db_url = f"sqlite:///{work / 'council.db'}"
        hubs = _enroll_runs(db_url, work, backlog, len(runs))

        figures: dict[str, Any] = {"days": days, "events": events, "mix": kinds}
        modelled: dict[str, float] = {}
        with council_process(db_url) as council:
            for cap, (hub_id, identity, db) in zip(runs, hubs, strict=True):
                settings = UploadSettings(url=council.url, bandwidth_kib_s=cap)
                clock = None if cap is None else VirtualClock()
                store = Store.open(db)
                try:
                    report, seconds = asyncio.run(
                        _drain(store, identity, hub_id, settings, db.parent, clock)
                    )
                finally:
                    store.close()
                if not report.ok or report.events != events:
                    raise RuntimeError(f"the catch-up at cap {cap} did not drain: {report}")
                if cap is None:
                    figures.update(
                        {
                            "batches": report.batches,
                            "requests": report.requests,
                            "bytes": report.bytes,
                            "bytes_per_event": round(report.bytes / events, 2),
                            "seconds": round(seconds, 2),
                            "events_per_s": round(events / seconds),
                        }
                    )
                else:
                    modelled[f"modelled_seconds_at_{cap:g}_kib_s"] = round(report.duration_s, 1)
        _check_council_holds(db_url, [hub_id for hub_id, _, _ in hubs], events)
        return figures | modelled


def _enroll_runs(
    db_url: str, work: Path, backlog: Path, count: int
) -> list[tuple[str, HubIdentity, Path]]:
    """One enrolled hub per run, each with its own copy of the backlog."""
    council_store = CouncilStore.open(db_url)
    hubs = []
    try:
        for i in range(count):
            identity = HubIdentity.generate(work / f"run{i}" / "keys")
            code = council_store.create_code(3600.0, note=f"catch-up run {i}")
            hub = council_store.enroll_hub(code.code, identity.public_key_raw(), f"run{i}", None)
            db = work / f"run{i}" / "hearth.db"
            shutil.copyfile(backlog, db)
            hubs.append((hub.hub_id, identity, db))
    finally:
        council_store.close()
    return hubs


def _check_council_holds(db_url: str, hub_ids: list[str], events: int) -> None:
    """A figure for a lossy catch-up is no figure: every hub's whole week must be there
    (exactly: UNIQUE (hub_id, seq) rules out duplicates, the count rules out loss)."""
    council_store = CouncilStore.open(db_url)
    try:
        held = {hub_id: council_store.count_events(hub_id) for hub_id in hub_ids}
    finally:
        council_store.close()
    if set(held.values()) != {events}:
        raise RuntimeError(f"the council holds {held}, not {events} events per hub")


if __name__ == "__main__":
    print(json.dumps(catch_up_week(), indent=2))
