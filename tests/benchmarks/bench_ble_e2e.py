"""Adverts per second end to end: fake BlueZ -> dbus-daemon -> bleak (its real BlueZ
backend) -> BleSource -> decode pipeline -> reporting policy -> group commit -> SQLite.

The fake BlueZ runs in a process of its own, as bluetoothd does, so the figure is the hub
process's own capacity, not shared with the radio's. Half the adverts come from paired BTHome
thermometers whose temperature creeps up 0.05 °C per advert (stored every 0.2 °C with the
default deadband), half from phones nobody paired. The clock stops when a marker advert sent
after all the others comes out of the pipeline: D-Bus keeps one sender's messages in order.
A figure, not an assertion: `make bench` prints it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from drivers.ble.pipeline import PairedDevice
from drivers.ble.policy import ReportPolicy
from drivers.ble.scanner import BleSource
from hub.clock import SystemClock
from hub.config import ReportSection
from hub.events import Reading
from hub.store import GroupCommitter, Store, StoreLimits
from tests.fakebluez import Advert, FakeBlueZ, run_with_fresh_bleak

SENSORS = 10
PHONES = 10
BATCH = 1000
MARKER = "F0:0D:00:00:FF:FF"


def _bthome(celsius: float) -> dict[str, bytes]:
    # BTHome v2, unencrypted: device info byte, then temperature (object 0x02, sint16, 0.01 °C)
    return {"fcd2": b"\x40\x02" + round(celsius * 100).to_bytes(2, "little", signed=True)}


def _adverts(n: int) -> list[Advert]:
    adverts = []
    for i in range(n):
        device = i % (SENSORS + PHONES)
        if device < SENSORS:
            step = i // (SENSORS + PHONES)
            address = f"F0:0D:00:00:00:{device:02X}"
            adverts.append(Advert(address, "ATC", -60, {}, _bthome(15.0 + 0.05 * step)))
        else:
            address = f"7C:00:00:00:00:{device:02X}"
            apple = {0x004C: b"\x10\x05" + (i & 0xFFFF).to_bytes(2, "little")}
            adverts.append(Advert(address, None, -75, apple))
    return adverts


def _serve_fake(conn: Connection) -> None:
    """The child process: a fake BlueZ that sends adverts when told."""
    fake = FakeBlueZ().start()
    try:
        conn.send(fake.address)
        while True:
            command, argument = conn.recv()
            if command == "wait_listening":
                fake.wait_until(lambda: fake.listening, argument)
                conn.send(True)
            elif command == "send":
                conn.send(fake.advertise_many(argument))
            else:
                break
    finally:
        fake.close()


def adverts_per_second_end_to_end(n: int = 20_000) -> dict[str, Any]:
    """Adverts/s through the whole path, and how many readings the store got from them."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_fake, args=(theirs,), daemon=True)
    child.start()
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = ours.recv()
        with tempfile.TemporaryDirectory() as directory:
            return run_with_fresh_bleak(_measure(ours, n, Path(directory)))
    finally:
        ours.send(("close", None))
        child.join(30)
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous


async def _measure(fake: Connection, n: int, directory: Path) -> dict[str, Any]:
    store = Store.open(directory / "hub.db", limits=StoreLimits(quota_bytes=10 * 1024**3))
    committer = GroupCommitter(store)
    committer.start()
    devices = [
        PairedDevice(f"thermo-{d}", f"F0:0D:00:00:00:{d:02X}", "bthome", None)
        for d in range(SENSORS)
    ] + [PairedDevice("marker", MARKER, "bthome", None)]
    source = BleSource(
        devices, "active", 600.0, SystemClock(), ReportPolicy.from_config(ReportSection())
    )
    done = asyncio.Event()

    def emit(reading: Reading) -> None:
        committer.add(reading)
        if reading.sensor_id == "marker":
            done.set()

    adverts = _adverts(n)
    batches = [adverts[i : i + BATCH] for i in range(0, n, BATCH)]
    batches.append([Advert(MARKER, "marker", -60, {}, _bthome(99.0))])

    started: list[float] = []
    sent: list[float] = []

    def drive() -> int:
        fake.send(("wait_listening", 30.0))
        fake.recv()
        started.extend((time.perf_counter(), time.process_time()))
        heard = 0
        for batch in batches:
            fake.send(("send", batch))
            heard += fake.recv()
        sent.append(time.perf_counter())
        return heard

    task = asyncio.create_task(source.run(emit))
    try:
        sending = asyncio.create_task(asyncio.to_thread(drive))
        async with asyncio.timeout(300):
            await done.wait()
        elapsed = time.perf_counter() - started[0]
        cpu = time.process_time() - started[1]
        heard = await sending
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        committer.close()
    stats = source.pipeline.stats if source.pipeline else None
    stored = sum(isinstance(e.event, Reading) for e in store.events(limit=10 * n))
    store.close()
    return {
        "adverts_sent": n,
        "adverts_heard_by_bluez": heard - 1,
        "seconds": round(elapsed, 3),
        "adverts_per_s": round(n / elapsed),
        # If the hub kept up, the last advert left the fake just before it came out of the
        # pipeline, and adverts/s is the fake's pace: the CPU figure is then the hub's cost.
        "fake_sending_seconds": round(sent[0] - started[0], 3),
        "hub_cpu_us_per_advert": round(cpu / n * 1e6, 1),
        "adverts_seen_by_bleak": source.stats.adverts - 1,
        "unpaired_dropped": stats.unpaired if stats else None,
        "decoded": stats.decoded if stats else None,
        "readings_in_store": stored - 2,  # less the marker's temperature and RSSI
        "fake_bluez": "own process",
    }
