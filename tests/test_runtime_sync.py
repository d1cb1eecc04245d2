"""`hearth run` with the uploader inside, against the real council on loopback: an alert goes
at once (not at the next sync interval), the health report reaches the fleet view, and a
config the council pushes is saved to the hub's file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.base import Emit
from hub.clock import SimulatedClock, SystemClock
from hub.config import (
    CouncilSection,
    HubConfig,
    HubSection,
    SensorConfig,
    load_config,
    write_config,
)
from hub.council_state import council_state_path
from hub.events import Quantity, Reading
from hub.runtime import Hub
from tests.council_server import CouncilServer, running_council
from tests.factories import T0

WAIT_S = 30.0


class PushButtonSource:
    """A driver the test presses: each `send` emits one reading on the hub's loop."""

    name = "test-sensors"

    def __init__(self, clock: SystemClock | SimulatedClock) -> None:
        self.clock = clock
        self.queue: asyncio.Queue[tuple[str, Quantity, float]] = asyncio.Queue()

    def send(self, sensor: str, quantity: Quantity, value: float) -> None:
        self.queue.put_nowait((sensor, quantity, value))

    async def run(self, emit: Emit) -> None:
        while True:
            sensor, quantity, value = await self.queue.get()
            emit(Reading(sensor, quantity, value, self.clock.stamp()))


def _sensors() -> tuple[SensorConfig, ...]:
    return tuple(
        SensorConfig.model_validate(s)
        for s in (
            {"id": "pull-cord", "kind": "button", "room": "Bathroom", "source": "simulated"},
            {"id": "lounge-climate", "kind": "climate", "room": "Lounge", "source": "simulated"},
        )
    )


def _enrolled_config(council: CouncilServer, data_dir: Path) -> HubConfig:
    hub_id, _identity = council.enroll(data_dir, name="Flat 9")
    return HubConfig(
        hub=HubSection(name="Flat 9", id=hub_id, data_dir=data_dir),
        # A long interval: anything that arrives quickly was sent because it was urgent.
        council=CouncilSection(url=council.url, sync_interval_s=3600.0, retry_max_s=2.0),
        sensors=_sensors(),
    )


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _council_kinds(council: CouncilServer, hub_id: str) -> list[str]:
    return [e.kind for e in council.store.iter_events(hub_id=hub_id)]


def test_an_alert_is_uploaded_at_once_not_at_the_next_interval(
    tmp_path: Path, council_db_url: str
) -> None:
    with running_council(council_db_url) as council:
        config = _enrolled_config(council, tmp_path / "hub")
        hub_id = config.hub.id
        assert hub_id is not None
        clock = SystemClock()
        source = PushButtonSource(clock)
        hub = Hub(config, clock, [source])

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            # The first round at start sends the hub_started event, then the uploader idles.
            await _until(lambda: "system" in _council_kinds(council, hub_id), "hub_started")
            source.send("pull-cord", Quantity.BUTTON, 1.0)
            await _until(lambda: "alert" in _council_kinds(council, hub_id), "the alert")
            hub.stop()
            await running

        asyncio.run(scenario())
        alerts = [e.body for e in council.store.iter_events(hub_id=hub_id, kind="alert")]
        assert alerts[0]["check"] == "pull_cord"
        assert hub.uploader is not None
        assert hub.uploader.status().consecutive_failures == 0


def test_sensor_health_reaches_the_fleet_view(tmp_path: Path, council_db_url: str) -> None:
    with running_council(council_db_url) as council:
        config = _enrolled_config(council, tmp_path / "hub")
        hub_id = config.hub.id
        assert hub_id is not None
        clock = SystemClock()
        source = PushButtonSource(clock)
        hub = Hub(config, clock, [source])

        def low_battery_seen() -> bool:
            entry = council.store.fleet_entry(hub_id)
            return entry is not None and any(
                b.sensor_id == "lounge-climate" for b in entry.low_batteries
            )

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            await _until(lambda: "system" in _council_kinds(council, hub_id), "hub_started")
            source.send("lounge-climate", Quantity.BATTERY, 9.0)
            source.send("pull-cord", Quantity.BUTTON, 1.0)  # urgent: carries the report now
            await _until(low_battery_seen, "the low battery in the fleet view")
            hub.stop()
            await running

        asyncio.run(scenario())
        entry = council.store.fleet_entry(hub_id)
        assert entry is not None
        assert entry.low_batteries[0].battery == 9.0
        assert entry.software_version


def test_a_config_pushed_by_the_council_is_kept_in_the_data_dir_and_applies(
    tmp_path: Path, council_db_url: str
) -> None:
    """Under its systemd unit the service may write only the data directory: the pushed
    sections are kept there, `load_config` lays them over the file, the file is untouched."""
    with running_council(council_db_url) as council:
        config = _enrolled_config(council, tmp_path / "hub")
        hub_id = config.hub.id
        assert hub_id is not None
        path = tmp_path / "hub.toml"
        write_config(path, config)
        installers_file = path.read_bytes()
        clock = SystemClock()
        source = PushButtonSource(clock)
        hub = Hub(config, clock, [source], config_path=path)
        pushed = {"checks": {"cold_home": {"warning_below_c": 17.0}}}

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            await _until(lambda: "system" in _council_kinds(council, hub_id), "hub_started")
            version = council.store.set_hub_config(hub_id, pushed).config_version
            source.send("pull-cord", Quantity.BUTTON, 1.0)  # the ack carries the new version
            await _until(
                lambda: load_config(path).council.config_version == version, "the saved config"
            )
            hub.stop()
            await running

        asyncio.run(scenario())
        saved = load_config(path)
        assert saved.checks.cold_home.warning_below_c == 17.0
        assert saved.sensors == config.sensors  # the installer's part is untouched
        assert path.read_bytes() == installers_file
        assert council_state_path(config.hub.data_dir).exists()


def test_a_hub_not_enrolled_runs_offline(tmp_path: Path) -> None:
    config = HubConfig(hub=HubSection(name="t", data_dir=tmp_path), sensors=_sensors())
    clock = SimulatedClock(T0, speed=1.0)
    hub = Hub(config, clock, [PushButtonSource(clock)])

    async def scenario() -> None:
        running = asyncio.create_task(hub.run())
        await asyncio.sleep(0)
        hub.stop()
        await running

    asyncio.run(scenario())
    assert hub.uploader is None


def test_a_deferred_enrollment_is_finished_by_the_running_hub(
    tmp_path: Path, council_db_url: str
) -> None:
    """`hearth setup` in a home with no signal leaves the enrollment deferred; the service
    finishes it once the council answers and uploads from then on, without a restart."""
    from sync.deferred import defer_enrollment, deferred_path

    with running_council(council_db_url) as council:
        data_dir = tmp_path / "hub"
        config = HubConfig(hub=HubSection(name="Flat 9", data_dir=data_dir), sensors=_sensors())
        path = tmp_path / "hub.toml"
        write_config(path, config)
        installers_file = path.read_bytes()
        data_dir.mkdir()
        defer_enrollment(data_dir, council.url, council.store.create_code(3600.0).code)
        clock = SystemClock()
        source = PushButtonSource(clock)
        hub = Hub(config, clock, [source], config_path=path)

        def hubs_with_events() -> list[str]:
            return [e.hub_id for e in council.store.fleet() if e.events_held > 0]

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            await _until(lambda: bool(hubs_with_events()), "the first upload")
            hub.stop()
            await running

        asyncio.run(scenario())
        saved = load_config(path)
        assert saved.hub.id is not None and hubs_with_events() == [saved.hub.id]
        assert saved.council.url == council.url
        assert not deferred_path(data_dir).exists()
        assert path.read_bytes() == installers_file  # kept in the data directory instead


def test_a_deferred_enrollment_whose_code_is_refused_is_dropped_and_the_hub_runs_on(
    tmp_path: Path, council_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sync.deferred import defer_enrollment, deferred_path

    with running_council(council_db_url) as council:
        data_dir = tmp_path / "hub"
        config = HubConfig(hub=HubSection(name="Flat 9", data_dir=data_dir), sensors=_sensors())
        path = tmp_path / "hub.toml"
        write_config(path, config)
        data_dir.mkdir()
        defer_enrollment(data_dir, council.url, "AAAA-BBBB-CCCC")  # never issued
        clock = SystemClock()
        hub = Hub(config, clock, [PushButtonSource(clock)], config_path=path)

        async def scenario() -> None:
            running = asyncio.create_task(hub.run())
            # The record goes first, then the log line: wait for both before stopping.
            await _until(
                lambda: (
                    not deferred_path(data_dir).exists()
                    and "the deferred enrollment was refused" in caplog.text
                ),
                "the refusal",
            )
            hub.stop()
            await running

        asyncio.run(scenario())
    assert hub.uploader is None and load_config(path).hub.id is None
    assert "the deferred enrollment was refused" in caplog.text
