"""The BLE driver under the hub's service watchdog (issue 6 item 6): a scanner that keeps
scanning keeps beating, and one whose loop is stuck stops beating, shows up as stuck within
its allowance (so the pings to systemd stop) and is healthy again once it comes unstuck.

Real parts: bleak's BlueZ backend against the fake BlueZ on a private dbus-daemon, the real
Heartbeats and Watchdog, and a datagram socket standing in for systemd's notify socket.
Timeouts are shortened so that a whole allowance passes in about a second; every wait is on
a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ble import scanner
from drivers.ble.pipeline import PairedDevice
from drivers.ble.policy import ReportPolicy
from drivers.ble.scanner import Backoff, BleSource
from hub.clock import SystemClock
from hub.config import BleSection, HubConfig, HubSection
from hub.events import Reading
from hub.runtime import Hub
from hub.service import Heartbeats, Stuck, Watchdog
from tests import fakebluez
from tests.ble_vectors import BY_KEY
from tests.fakebluez import FakeBlueZ, run_with_fresh_bleak
from tests.test_watchdog import Systemd, systemd

pytestmark = pytest.mark.ci_required  # CI has dbus-daemon: a skip there would hide a gap

fake_bluez = fakebluez.fake_bluez  # the fixtures, used by name
__all__ = ["fake_bluez", "systemd"]

WAIT_S = 10.0
BLUEZ_TIMEOUT_S = 0.5
SILENCE_S = 0.4  # a supervision tick every 0.1 s, a silence restart every 0.4 s
MARGIN_S = 0.1
WATCHDOG_USEC = "200000"  # the watchdog checks (and pings) every 0.1 s
SENSOR = BY_KEY["bthome-temp-humidity"]


class CountedBeat:
    """The hub's Beat, counted: a test can wait for beats, and see the waits declared."""

    def __init__(self, beats: Heartbeats, name: str, allowance: float) -> None:
        self._beat = beats.register(name, allowance)
        self.count = 0
        self.declared: list[float] = []  # the within= of each beat that passed one
        self._event = asyncio.Event()

    def __call__(self, within: float | None = None) -> None:
        self._beat(within)
        self.count += 1
        if within is not None:
            self.declared.append(within)
        self._event.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()


class HangingStart:
    """Starting bleak hangs while `gate` is clear: a hang nothing in the driver foresaw,
    whatever timeouts it puts round the call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.hung = asyncio.Event()
        self._real = scanner.start_scanner
        monkeypatch.setattr(scanner, "start_scanner", self)

    async def __call__(self, *args: Any, **kwargs: Any) -> scanner.StartedScan:
        if not self.gate.is_set():
            self.hung.set()
            await self.gate.wait()
        return await self._real(*args, **kwargs)


@pytest.fixture(autouse=True)
def short_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanner, "BEAT_MARGIN_S", MARGIN_S)


def make_source(
    beats: Heartbeats, silence_s: float = SILENCE_S, bluez_timeout_s: float = BLUEZ_TIMEOUT_S
) -> tuple[BleSource, CountedBeat]:
    source = BleSource(
        [PairedDevice(SENSOR.key, SENSOR.address, SENSOR.family, SENSOR.bindkey)],
        "passive",
        silence_s,
        SystemClock(),
        ReportPolicy(heartbeat_s=3600.0, deadbands={}),
        backoff=Backoff(initial_s=0.01, max_s=0.05, rng=random.Random(5)),
        bluez_timeout_s=bluez_timeout_s,
    )
    beat = CountedBeat(beats, "ble", source.max_silence_s)
    source.beat = beat
    return source, beat


@contextlib.asynccontextmanager
async def running(source: BleSource) -> AsyncIterator[asyncio.Task[None]]:
    readings: list[Reading] = []
    task = asyncio.create_task(source.run(readings.append))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def sampling(beats: Heartbeats, every_s: float = 0.02) -> AsyncIterator[list[Stuck]]:
    """Everything stuck() reported while inside (a check on the side, not a wait)."""
    seen: list[Stuck] = []

    async def sample() -> None:
        while True:
            seen.extend(beats.stuck())
            await asyncio.sleep(every_s)

    task = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until_stuck_is(
    beats: Heartbeats, names: list[str], timeout: float = WAIT_S
) -> list[Stuck]:
    """Poll until stuck() names exactly `names`: being late is a matter of time passing, so
    there is no event to wait on."""
    async with asyncio.timeout(timeout):
        while True:
            stuck = beats.stuck()
            if [s.name for s in stuck] == names:
                return stuck
            await asyncio.sleep(0.01)


class Listener:
    """Systemd's side of the notify socket, read all along: the socket's queue is short, and
    pings left unread would make the hub's STATUS= datagram fail to send."""

    def __init__(self, systemd: Systemd) -> None:
        self.systemd = systemd
        self.got: list[str] = []
        self._event = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                self.got.append(await asyncio.to_thread(self.systemd.recv, 0.1))
                self._event.set()

    async def until(self, wanted: str, after: int = 0, timeout: float = WAIT_S) -> int:
        """Index of the first datagram from `after` on that contains `wanted`."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(after, len(self.got)):
                    if wanted in self.got[i]:
                        return i
                self._event.clear()
                await self._event.wait()


def test_allowance_follows_the_scanners_own_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = make_source(Heartbeats())
    assert source.max_silence_s == pytest.approx(SILENCE_S / 4 + 3 * BLUEZ_TIMEOUT_S + MARGIN_S)
    monkeypatch.setattr(scanner, "BEAT_MARGIN_S", 30.0)
    config = HubConfig(hub=HubSection(name="t"), ble=BleSection(restart_after_silence_min=10))
    # Defaults: a 150 s tick, three 20 s BlueZ timeouts and the margin.
    assert BleSource.from_config(config, SystemClock()).max_silence_s == pytest.approx(240.0)


def test_a_healthy_scanner_keeps_beating_from_its_supervision_ticks(
    fake_bluez: FakeBlueZ,
) -> None:
    beats = Heartbeats()
    # Silence restarts (every 2 s) further apart than the allowance (0.5 s tick + three
    # 0.3 s timeouts + margin = 1.5 s): only the beats after each tick keep it healthy.
    source, beat = make_source(beats, silence_s=2.0, bluez_timeout_s=0.3)
    assert source.max_silence_s < source.silence_s

    async def main() -> None:
        async with running(source), sampling(beats) as seen:
            await fake_bluez.until(lambda: fake_bluez.listening)
            began, ticks = time.monotonic(), beat.count
            # Longer than the allowance: a scanner that did not beat would be caught.
            await beat.until(
                lambda: (
                    beat.count >= ticks + 3
                    and time.monotonic() - began > source.max_silence_s + 0.1
                )
            )
        assert seen == []

    run_with_fresh_bleak(main())


def test_a_stuck_scan_loop_stops_the_pings_and_they_resume_when_it_recovers(
    fake_bluez: FakeBlueZ, systemd: Systemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    hanging = HangingStart(monkeypatch)
    beats = Heartbeats()
    source, beat = make_source(beats)
    watchdog = Watchdog(systemd.notifier(WATCHDOG_USEC), beats)
    listener = Listener(systemd)

    async def main() -> None:
        async with running(source) as task:
            tasks = [asyncio.create_task(watchdog.run()), asyncio.create_task(listener.run())]
            try:
                await fake_bluez.until(lambda: fake_bluez.listening)
                await listener.until("WATCHDOG=1")
                hanging.gate.clear()
                fake_bluez.restart_bluetoothd()  # the scan dies; the next start hangs
                await asyncio.wait_for(hanging.hung.wait(), WAIT_S)
                began = time.monotonic()
                (stuck,) = await until_stuck_is(beats, ["ble"], source.max_silence_s + WAIT_S)
                late = time.monotonic() - began
                # Its last beat was at the top of the loop, just before the hang: the
                # ordinary allowance, not a declared backoff.
                assert stuck.allowed_s == pytest.approx(source.max_silence_s)
                assert late <= source.max_silence_s + 0.5
                stopped = await listener.until("STATUS=stuck")
                assert "ble silent" in listener.got[stopped]
                pings = watchdog.pings
                await asyncio.sleep(3 * watchdog.period_s)  # observing an absence
                assert watchdog.pings == pings and not task.done()

                hanging.gate.set()  # the call returns: scanning resumes and so do the beats
                await until_stuck_is(beats, [])
                await fake_bluez.until(lambda: fake_bluez.listening)
                resumed = await listener.until("STATUS=running", after=stopped)
                await listener.until("WATCHDOG=1", after=resumed)
                assert not any("WATCHDOG=1" in g for g in listener.got[stopped:resumed])
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        assert source.stats.failures >= 1 and beat.declared  # the backoff was declared

    run_with_fresh_bleak(main())


def test_a_bluez_that_never_answers_is_timed_out_and_the_scanner_never_looks_stuck(
    fake_bluez: FakeBlueZ, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    real_list = scanner._managed_objects
    calls = 0

    async def managed_objects(bus: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # bluetoothd takes the call and never replies
            await asyncio.Event().wait()
        return await real_list(bus)

    monkeypatch.setattr(scanner, "_managed_objects", managed_objects)
    beats = Heartbeats()
    source, beat = make_source(beats)

    async def main() -> None:
        async with running(source), sampling(beats) as seen:
            await fake_bluez.until(lambda: fake_bluez.listening)
        assert seen == []
        assert calls >= 2 and source.stats.failures >= 1
        # The retry's wait was declared: at least the allowance on top of the backoff.
        assert beat.declared and min(beat.declared) > source.max_silence_s

    run_with_fresh_bleak(main())
    assert f"BlueZ did not answer within {BLUEZ_TIMEOUT_S:g} s" in caplog.text


def test_the_hub_stops_pinging_systemd_while_its_ble_loop_is_stuck(
    fake_bluez: FakeBlueZ, systemd: Systemd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same, through `Hub.run` as `hearth run` runs it under systemd."""
    hanging = HangingStart(monkeypatch)
    source, _ = make_source(Heartbeats())
    source.beat = None  # the hub sets its own
    config = HubConfig(hub=HubSection(name="t", data_dir=tmp_path))
    hub = Hub(config, SystemClock(), [source], notifier=systemd.notifier(WATCHDOG_USEC))
    listener = Listener(systemd)

    async def main() -> None:
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(listener.run())]
        try:
            await listener.until("READY=1")
            await fake_bluez.until(lambda: fake_bluez.listening)
            await listener.until("WATCHDOG=1")
            assert "ble" in hub.heartbeats.names
            hanging.gate.clear()
            fake_bluez.restart_bluetoothd()
            await asyncio.wait_for(hanging.hung.wait(), WAIT_S)
            stopped = await listener.until("STATUS=stuck", timeout=source.max_silence_s + WAIT_S)
            assert "ble silent" in listener.got[stopped]
            hanging.gate.set()
            resumed = await listener.until("STATUS=running", after=stopped)
            await listener.until("WATCHDOG=1", after=resumed)
            assert not any("WATCHDOG=1" in g for g in listener.got[stopped:resumed])
            hub.stop()
            await asyncio.wait_for(tasks[0], WAIT_S)
        finally:
            hanging.gate.set()
            hub.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run_with_fresh_bleak(main())
