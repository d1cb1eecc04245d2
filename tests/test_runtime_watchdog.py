"""`hearth run` under systemd: READY once the hub is up, watchdog pings while its loops are
healthy, and no pings while the buffer's flusher is stuck (so systemd restarts the hub)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from hub import runtime
from hub.clock import SystemClock
from hub.config import HubConfig, HubSection, SensorConfig
from hub.events import Event, Quantity
from hub.runtime import Hub
from hub.store import Store
from tests.test_runtime_sync import PushButtonSource
from tests.test_watchdog import Systemd, systemd

__all__ = ["systemd"]  # the fixture, used by name

WATCHDOG_USEC = "400000"  # pings every 0.2 s


def _datagrams_until(systemd: Systemd, wanted: str, timeout_s: float = 10.0) -> list[str]:
    """Datagrams received until one containing `wanted` (inclusive)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {wanted!r} within {timeout_s} s; got {got}")
        got.append(systemd.recv(timeout=left))
        if wanted in got[-1]:
            return got


def test_ready_then_pings_then_none_while_the_store_is_stuck_then_again(
    tmp_path: Path, systemd: Systemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "STORE_MAX_SILENCE_S", 1.0)
    monkeypatch.setattr(runtime, "STORE_BEAT_EVERY_S", 0.1)
    release = threading.Event()
    stuck = threading.Event()
    real_commit = Store.commit

    def commit(self: Store, events: Sequence[Event]) -> list[int]:
        if any(getattr(e, "sensor_id", None) == "hang" for e in events):
            stuck.set()
            release.wait(30)  # the SD card stops answering
        return real_commit(self, events)

    monkeypatch.setattr(Store, "commit", commit)
    sensor = SensorConfig.model_validate(
        {"id": "hang", "kind": "climate", "room": "Lounge", "source": "simulated"}
    )
    config = HubConfig(hub=HubSection(name="t", data_dir=tmp_path), sensors=(sensor,))
    clock = SystemClock()
    source = PushButtonSource(clock)
    hub = Hub(config, clock, [source], notifier=systemd.notifier(WATCHDOG_USEC))

    def scenario_in_thread() -> None:
        # The datagrams are read here; the hub runs on its own loop in the main thread.
        got = _datagrams_until(systemd, "READY=1")
        assert "STATUS=running: 1 sources, not uploading" in got[-1]
        _datagrams_until(systemd, "WATCHDOG=1")
        _datagrams_until(systemd, "WATCHDOG=1")  # a steady cadence, not a one-off
        loop.call_soon_threadsafe(source.send, "hang", Quantity.TEMPERATURE, 20.0)
        assert stuck.wait(10)
        got = _datagrams_until(systemd, "STATUS=stuck")
        assert "store" in got[-1]
        with pytest.raises(TimeoutError):  # nothing at all for 2.5 ping periods
            systemd.recv(timeout=0.5)
        release.set()
        _datagrams_until(systemd, "WATCHDOG=1")  # recovered: pings resume
        loop.call_soon_threadsafe(hub.stop)

    loop = asyncio.new_event_loop()
    checker = threading.Thread(target=lambda: errors.extend(_capture(scenario_in_thread)))
    errors: list[BaseException] = []
    checker.start()
    try:
        loop.run_until_complete(asyncio.wait_for(hub.run(), 60))
    finally:
        release.set()
        checker.join(30)
        loop.close()
    if errors:
        raise errors[0]
    assert "STOPPING=1" in "".join(systemd.pending())


def _capture(scenario: Callable[[], None]) -> list[BaseException]:
    try:
        scenario()
    except BaseException as exc:  # re-raised in the test's thread
        return [exc]
    return []
