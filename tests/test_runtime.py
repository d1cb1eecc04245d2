"""The hub service wiring: a failing driver is recorded and restarted, never silently lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.base import Emit
from hub import runtime
from hub.clock import SimulatedClock
from hub.config import HubConfig, HubSection, SensorConfig
from hub.events import Quantity, Reading, SystemEvent, SystemKind
from hub.runtime import Hub
from hub.store import Store
from tests.factories import T0


class FailsOnceSource:
    """A driver that dies on its first run (pin busy, adapter gone) and works on the next."""

    name = "flaky"

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.runs = 0
        self.delivered = asyncio.Event()

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.runs == 1:
            raise OSError("GPIO busy")
        emit(Reading("pull-cord", Quantity.BUTTON, 0.0, self.clock.stamp()))
        self.delivered.set()
        await asyncio.Event().wait()  # a live driver runs until cancelled


def test_a_failed_driver_is_recorded_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "DRIVER_RETRY_FIRST_S", 0.01)
    sensor = SensorConfig.model_validate(
        {"id": "pull-cord", "kind": "button", "room": "Bathroom", "source": "simulated"}
    )
    config = HubConfig(hub=HubSection(name="t", data_dir=tmp_path), sensors=(sensor,))
    clock = SimulatedClock(T0, speed=1.0)
    source = FailsOnceSource(clock)
    hub = Hub(config, clock, [source])

    async def scenario() -> None:
        running = asyncio.create_task(hub.run())
        async with asyncio.timeout(30):
            await source.delivered.wait()
        hub.stop()
        await running

    asyncio.run(scenario())
    store = Store.open(config.store_path)
    events = [e.event for e in store.events()]
    store.close()
    failures = [
        e for e in events if isinstance(e, SystemEvent) and e.kind is SystemKind.DRIVER_FAILED
    ]
    assert source.runs == 2
    assert [f.details["problem"] for f in failures] == ["OSError: GPIO busy"]
    assert any(isinstance(e, Reading) and e.sensor_id == "pull-cord" for e in events)
