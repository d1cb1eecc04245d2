"""The whole hub on a really full disk: it keeps running, the alert reaches the council, the
council's fleet view flags the hub and the event stream carries STORAGE_FULL, then
STORAGE_OK when space returns. And kill -9 on a full disk: nothing committed is lost
except what a gap event accounts for, and the buffer reopens sound."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.base import Emit
from hub.clock import SystemClock
from hub.config import CouncilSection, HubConfig, HubSection, SensorConfig
from hub.events import Quantity, Reading, SystemKind
from hub.runtime import Hub
from hub.store import Store, StoreLimits
from hub.store.diskfull import LOW_BYTES, reserve_path
from tests.council_server import CouncilServer, running_council
from tests.smallfs import ROOT, fill, small_filesystem

pytestmark = pytest.mark.ci_required  # a skipped disk-full test proves nothing

MIB = 1024 * 1024
FS_BYTES = 64 * MIB
WAIT_S = 60.0


@pytest.fixture
def disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path | None]:
    with small_filesystem(tmp_path, FS_BYTES, request) as path:
        yield path


class Flood:
    """A driver that emits climate readings as fast as the hub takes them (a year of them
    in seconds), and a pull cord the test can press."""

    name = "flood"

    def __init__(self, clock: SystemClock) -> None:
        self.clock = clock
        self.pressed = asyncio.Event()
        self.emitted = 0

    async def run(self, emit: Emit) -> None:
        while True:
            if self.pressed.is_set():
                self.pressed.clear()
                emit(Reading("pull-cord", Quantity.BUTTON, 1.0, self.clock.stamp()))
            for _ in range(250):
                self.emitted += 1
                value = 19.0 + (self.emitted % 40) / 10
                emit(Reading("lounge-climate", Quantity.TEMPERATURE, value, self.clock.stamp()))
            await asyncio.sleep(0.005)


def _config(council: CouncilServer, data_dir: Path) -> HubConfig:
    hub_id, _identity = council.enroll(data_dir, name="Flat 12")
    sensors = tuple(
        SensorConfig.model_validate(s)
        for s in (
            {"id": "pull-cord", "kind": "button", "room": "Bathroom", "source": "simulated"},
            {"id": "lounge-climate", "kind": "climate", "room": "Lounge", "source": "simulated"},
        )
    )
    return HubConfig(
        hub=HubSection(name="Flat 12", id=hub_id, data_dir=data_dir),
        council=CouncilSection(url=council.url, sync_interval_s=1.0, retry_max_s=2.0),
        sensors=sensors,
    )


async def _until(condition: Callable[[], bool], what: str, disk: Path | None = None) -> None:
    """Wait for `condition`; meanwhile the other program's log takes any space freed."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if disk is not None:
            await asyncio.to_thread(fill, disk)
        await asyncio.sleep(0.05)


def _system_kinds(council: CouncilServer, hub_id: str) -> list[str]:
    return [e.body["system"] for e in council.store.iter_events(hub_id=hub_id, kind="system")]


def test_the_hub_on_a_full_disk_keeps_running_and_the_council_sees_it(
    disk: Path | None, council_db_url: str
) -> None:
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    with running_council(council_db_url) as council:
        config = _config(council, disk / "hub")
        hub_id = config.hub.id
        assert hub_id is not None
        clock = SystemClock()
        flood = Flood(clock)
        hub = Hub(config, clock, [flood])
        reader = council.client(council.store.create_token("reader", "r").token)

        def held() -> int:
            entry = council.store.fleet_entry(hub_id)
            return 0 if entry is None else entry.events_held

        def fleet_storage() -> str | None:
            (entry,) = reader.get("/v1/fleet").json()["hubs"]
            storage: str | None = entry["storage"]
            return storage

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            await _until(lambda: "hub_started" in _system_kinds(council, hub_id), "hub_started")
            assert reserve_path(config.store_path).exists()  # the service keeps a reserve
            await _until(lambda: held() > 20_000, "a history of synced readings")
            filler = await asyncio.to_thread(fill, disk)
            await _until(
                lambda: "storage_full" in _system_kinds(council, hub_id), "storage_full", disk
            )
            await _until(lambda: fleet_storage() == "full", "the fleet view's flag", disk)
            flood.pressed.set()  # the pull cord, on a disk with no space left
            await _until(
                lambda: any(True for _ in council.store.iter_events(hub_id=hub_id, kind="alert")),
                "the alert",
                disk,
            )
            assert not running.done()  # the hub is still running
            filler.unlink()
            await _until(lambda: "storage_ok" in _system_kinds(council, hub_id), "storage_ok")
            await _until(lambda: fleet_storage() != "full", "the flag cleared")
            hub.stop()
            await running

        asyncio.run(scenario())
        (entry,) = reader.get("/v1/fleet").json()["hubs"]
        assert entry["storage"] == "low"  # 64 MiB is a small disk: not full, but low
        assert entry["storage_since"] is None and entry["dropped_readings"] >= 0
        full = next(
            e.body["details"]
            for e in council.store.iter_events(hub_id=hub_id, kind="system")
            if e.body["system"] == "storage_full"
        )
        # The episode starts when the capped buffer is refused, below LOW_BYTES free: the
        # filler may still be writing then, so the figure is anywhere under that line.
        assert full["reserve_released_bytes"] == 4 * MIB and full["free_bytes"] < LOW_BYTES
        alerts = [e.body for e in council.store.iter_events(hub_id=hub_id, kind="alert")]
        assert alerts[0]["check"] == "pull_cord"
    conn = sqlite3.connect(config.store_path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


# -- kill -9 on a full disk --------------------------------------------------------------------

KILLS = 6


def _start_writer(db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.diskfull_writer", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _reported(lines: list[bytes]) -> tuple[set[int], bool]:
    """Sequence numbers the writer reported committed, and whether it said "full"."""
    seqs: set[int] = set()
    full = False
    for line in lines:
        word, *rest = line.split()
        if word == b"committed":
            seqs.update(range(int(rest[0]), int(rest[1]) + 1))
            full = full or rest[2] == b"full"
    return seqs, full


def _accounted(db: Path) -> tuple[set[int], set[int]]:
    """(sequence numbers present, those a gap event says were dropped)."""
    store = Store.open(db, limits=StoreLimits(retention_days=36_500))
    try:
        present: set[int] = set()
        gone: set[int] = set()
        for stored in store.events(limit=10**7):
            present.add(stored.seq)
            event = stored.event
            if getattr(event, "kind", None) is SystemKind.GAP:
                for first, last in event.details["seq_ranges"]:  # type: ignore[union-attr]
                    gone.update(range(first, last + 1))
        return present, gone
    finally:
        store.close()


def test_sigkill_on_a_full_disk_loses_nothing_unaccounted_and_reopens(
    disk: Path | None,
) -> None:
    if disk is None:
        return  # it ran in a user namespace (tests/smallfs.py)
    rng = random.Random(20261128)
    db = disk / "hub.db"
    filler: Path | None = None
    reported: set[int] = set()
    saw_full = False
    for kill in range(KILLS):
        proc = _start_writer(db)
        assert proc.stdout is not None
        watchdog = threading.Timer(WAIT_S, proc.kill)  # a stuck writer fails, not hangs
        watchdog.start()
        try:
            assert proc.stdout.readline().split()[:1] == [b"ready"], f"no start (kill {kill})"
            lines = [proc.stdout.readline() for _ in range(rng.randint(5, 40))]
            if filler is None:
                filler = fill(disk)  # the first run fills up mid-way; later ones start full
            while not _reported(lines)[1]:  # until it commits on the full disk
                line = proc.stdout.readline()
                assert line, f"the writer stopped committing on the full disk (kill {kill})"
                lines.append(line)
            lines += [proc.stdout.readline() for _ in range(rng.randint(1, 30))]
            time.sleep(rng.uniform(0, 0.004))  # a random point of a commit or a pruning
            proc.send_signal(signal.SIGKILL)
            lines += proc.stdout.read().splitlines()
            proc.wait(timeout=WAIT_S)
        finally:
            watchdog.cancel()
            proc.stdout.close()
        seqs, full = _reported(lines)
        reported |= seqs
        saw_full = saw_full or full
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"kill {kill}"
        conn.close()
        present, gone = _accounted(db)  # reopened on the full disk
        missing = reported - present
        assert missing <= gone, f"kill {kill}: {sorted(missing - gone)[:10]} lost unaccounted"
    assert saw_full
    assert filler is not None
    filler.unlink()
    present, gone = _accounted(db)
    assert reported - present <= gone
