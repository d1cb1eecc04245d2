"""The BLE driver end to end: fake radio (a fake BlueZ on a private D-Bus) -> bleak's real
BlueZ backend -> BleSource -> the decode pipeline -> a real Store through the group committer.

Every wait is on a condition (a reading arriving, BlueZ seeing a call) with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.pipeline import PairedDevice
from drivers.ble.policy import ReportPolicy
from drivers.ble.scanner import (
    FAMILY_OR_PATTERNS,
    Backoff,
    BleSource,
    plan_scan,
)
from hub.clock import SystemClock
from hub.events import Quantity, Reading
from hub.store import GroupCommitter, Store
from tests import fakebluez
from tests.ble_vectors import ALL, BY_KEY, Vector
from tests.fakebluez import FakeBlueZ, full_uuid, run_with_fresh_bleak, running_fake_bluez

pytestmark = pytest.mark.ci_required  # CI has dbus-daemon: a skip there would hide a gap
WAIT_S = 10.0
FAST_BACKOFF = Backoff(initial_s=0.01, max_s=0.05, rng=random.Random(3))
RSSI = -61

fake_bluez = fakebluez.fake_bluez  # the fixture


def _end_to_end_vectors() -> list[Vector]:
    """Every vector, each as its own device. Upstream tests reuse addresses; plain BTHome
    payloads do not depend on the address, so those get one of their own. Encrypted ones
    (the address is part of the nonce) and the rest keep theirs, first one per address."""
    chosen: dict[str, Vector] = {}
    for i, v in enumerate(ALL):
        if v.family == "bthome" and v.bindkey is None:
            v = replace(v, address=f"F0:0D:00:00:00:{i:02X}")
        chosen.setdefault(v.address, v)
    return list(chosen.values())


DISTINCT = _end_to_end_vectors()


def paired(vectors: Iterable[Vector]) -> list[PairedDevice]:
    return [PairedDevice(v.key, v.address, v.family, v.bindkey) for v in vectors]


def expected_readings(vectors: Iterable[Vector]) -> set[tuple[str, Quantity, float]]:
    """What the store must hold: each state and event, and the RSSI as sensor health."""
    expected = set()
    for v in vectors:
        expected |= {(v.key, q, round(value, 3)) for q, value in v.states.items()}
        expected |= {(v.key, q, 1.0) for q in v.events}
        expected.add((v.key, Quantity.RSSI, float(RSSI)))
    return expected


def send(fake: FakeBlueZ, v: Vector, *, rssi: int = RSSI, **changes: Any) -> bool:
    fields: dict[str, Any] = {
        "name": v.name,
        "rssi": rssi,
        "manufacturer_data": v.manufacturer_data,
        "service_data": v.service_data,
        "service_uuids": v.service_uuids,
        **changes,
    }
    return fake.advertise(v.address, **fields)


def bthome_temperature(celsius: float) -> dict[str, bytes]:
    """A plain BTHome v2 advert's service data: device info, then temperature (0x02, sint16
    in 0.01 °C), as the BTHome v2 format lays it out (cf. bthome-temp-humidity's vector)."""
    raw = round(celsius * 100).to_bytes(2, "little", signed=True)
    return {"fcd2": b"\x40\x02" + raw}


class Hub:
    """A BleSource feeding a real Store, as the hub runs it; `until` waits for readings."""

    def __init__(
        self,
        tmp_path: Path,
        devices: Sequence[PairedDevice],
        mode: str = "passive",
        *,
        silence_s: float = 600.0,
    ) -> None:
        self.store = Store.open(tmp_path / "hub.db")
        self.committer = GroupCommitter(self.store, max_latency_s=0.02)
        # No deadbands: every change is stored, so each new value shows up as a reading.
        policy = ReportPolicy(heartbeat_s=3600.0, deadbands={})
        self.source = BleSource(
            devices, mode, silence_s, SystemClock(), policy, backoff=FAST_BACKOFF
        )
        self.readings: list[Reading] = []
        self._arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def emit(self, reading: Reading) -> None:
        self.committer.add(reading)
        self.readings.append(reading)
        self._arrived.set()

    async def __aenter__(self) -> Hub:
        self.committer.start()
        self.task = asyncio.create_task(self.source.run(self.emit))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.committer.close()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    async def reading(self, sensor: str, quantity: Quantity, value: float) -> None:
        def seen() -> bool:
            return any(
                r.sensor_id == sensor and r.quantity is quantity and r.value == pytest.approx(value)
                for r in self.readings
            )

        await self.until(seen)

    def stored(self) -> set[tuple[str, Quantity, float]]:
        """The readings the store committed (call after leaving the context)."""
        events = [e.event for e in self.store.events(limit=100_000)]
        return {
            (e.sensor_id, e.quantity, round(e.value, 3)) for e in events if isinstance(e, Reading)
        }


class LogWaiter(logging.Handler):
    """Counts log records containing some text, and lets a test wait for a number of them
    (records are emitted on the event loop's thread, where the test waits)."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(logger)
        self.text = text
        self.count = 0
        self._seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self._seen.set()

    def __enter__(self) -> LogWaiter:
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)

    async def until(self, count: int, timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._seen.clear()
                await self._seen.wait()


def scenario(main: Coroutine[Any, Any, None]) -> None:
    run_with_fresh_bleak(main)


# -- decoding end to end -------------------------------------------------------------------


def test_real_payloads_of_every_family_land_in_the_store_as_the_right_readings(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    assert {v.family for v in DISTINCT} == {"bthome", "xiaomi", "govee", "ruuvitag"}
    assert any(v.bindkey and v.family == "bthome" for v in DISTINCT)
    assert any(v.bindkey and v.family == "xiaomi" for v in DISTINCT)
    hub = Hub(tmp_path, paired(DISTINCT), "active")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.discovering)
            for v in DISTINCT:
                assert send(fake_bluez, v)
            wanted = {(s, q) for s, q, _ in expected_readings(DISTINCT)}
            await hub.until(lambda: {(r.sensor_id, r.quantity) for r in hub.readings} >= wanted)

    scenario(main())
    assert hub.stored() == expected_readings(DISTINCT)
    stats = hub.source.pipeline.stats if hub.source.pipeline else None
    assert stats is not None and stats.bad_adverts == 0


def test_an_unpaired_device_and_a_repeated_payload_store_nothing(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    v = BY_KEY["bthome-temp-humidity"]
    stranger = BY_KEY["ruuvitag-v5"]
    hub = Hub(tmp_path, paired([v]), "active")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.discovering)
            for _ in range(3):
                assert send(fake_bluez, stranger)
                assert send(fake_bluez, v)
            # A marker after them: once it is stored, everything before it was handled.
            assert send(fake_bluez, v, service_data=bthome_temperature(19.5))
            await hub.reading(v.key, Quantity.TEMPERATURE, 19.5)

    scenario(main())
    assert hub.stored() == expected_readings([v]) | {(v.key, Quantity.TEMPERATURE, 19.5)}
    stats = hub.source.pipeline.stats if hub.source.pipeline else None
    assert stats is not None and stats.unpaired == 3 and stats.unchanged == 2


# -- scan modes ----------------------------------------------------------------------------


def test_passive_mode_registers_a_monitor_with_or_patterns_and_hears_only_matches(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    sensors = [BY_KEY["bthome-temp-humidity"], BY_KEY["ruuvitag-v5"]]
    hub = Hub(tmp_path, paired(sensors), "passive")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: bool(fake_bluez.active_monitors))
            assert not fake_bluez.discovering and fake_bluez.count("StartDiscovery") == 0
            (monitor,) = fake_bluez.active_monitors
            wanted = set(FAMILY_OR_PATTERNS["bthome"] + FAMILY_OR_PATTERNS["ruuvitag"])
            assert set(monitor.patterns) == wanted
            for v in sensors:
                assert send(fake_bluez, v)
            # A Govee advert matches no pattern: the radio never reports it.
            assert not send(fake_bluez, BY_KEY["govee-h5075"])
            await hub.until(lambda: {r.sensor_id for r in hub.readings} == {v.key for v in sensors})

    scenario(main())
    assert hub.stored() == expected_readings(sensors)


def test_active_mode_uses_discovery_filtered_to_le(fake_bluez: FakeBlueZ, tmp_path: Path) -> None:
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), "active")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.discovering)
            assert fake_bluez.count("RegisterMonitor") == 0
            (filters,) = fake_bluez.discovery_filters
            assert filters["Transport"] == "le" and filters["DuplicateData"] is False
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

    scenario(main())


def test_a_govee_sensor_makes_a_passive_config_scan_actively_and_says_why(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["govee-h5075"]
    hub = Hub(tmp_path, paired([v, BY_KEY["bthome-temp-humidity"]]), "passive")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.discovering)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 21.6)

    scenario(main())
    assert fake_bluez.count("RegisterMonitor") == 0
    assert "scanning actively: govee sensors" in caplog.text


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"monitor_manager": False}, "started with --experimental"),
        ({"monitor_refusal": "Controller does not support monitors"}, "does not support"),
    ],
    ids=["no-monitor-manager", "register-monitor-refused"],
)
def test_passive_refused_falls_back_to_active_with_a_log_line_saying_why(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["bthome-temp-humidity"]
    with running_fake_bluez(monkeypatch, **options) as fake:
        hub = Hub(tmp_path, paired([v]), "passive")

        async def main() -> None:
            async with hub:
                await fake.until(lambda: fake.discovering)
                assert send(fake, v)
                await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

        scenario(main())
    refusals = [r.getMessage() for r in caplog.records if "passive scanning refused" in r.msg]
    assert len(refusals) == 1 and reason in refusals[0]
    assert refusals[0].endswith("scanning actively")


def test_plan_scan_listens_for_every_family_when_one_is_not_known_yet() -> None:
    plan = plan_scan("passive", ["bthome", None])
    assert plan.mode == "passive" and plan.why is None
    assert set(plan.or_patterns) == {p for ps in FAMILY_OR_PATTERNS.values() for p in ps}
    assert plan_scan("passive", ["ruuvitag"]).or_patterns == FAMILY_OR_PATTERNS["ruuvitag"]
    assert plan_scan("active", ["bthome"]).mode == "active"
    with pytest.raises(ValueError, match="scan mode"):
        plan_scan("aggressive", [])


# -- recovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["passive", "active"])
def test_scanning_survives_bluetoothd_restarting(
    fake_bluez: FakeBlueZ, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), mode)

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

            fake_bluez.restart_bluetoothd()  # the new one knows nothing of our scan
            assert not send(fake_bluez, v, service_data=bthome_temperature(30.0))
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v, service_data=bthome_temperature(20.0))
            await hub.reading(v.key, Quantity.TEMPERATURE, 20.0)
            assert hub.running and hub.source.stats.failures >= 1

    scenario(main())
    assert (v.key, Quantity.TEMPERATURE, 20.0) in hub.stored()
    assert "BLE scanning stopped: bluetoothd" in caplog.text


def test_scanning_survives_the_adapter_vanishing_and_coming_back(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), "passive")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

            looked = fake_bluez.count("GetManagedObjects")
            fake_bluez.remove_adapter()
            # While it is gone the driver keeps looking for it (with backoff), and runs on.
            await fake_bluez.until(lambda: fake_bluez.count("GetManagedObjects") >= looked + 3)
            assert hub.running
            fake_bluez.add_adapter()
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v, service_data=bthome_temperature(20.0))
            await hub.reading(v.key, Quantity.TEMPERATURE, 20.0)
            assert hub.running

    scenario(main())
    assert "Bluetooth adapter hci0 was removed" in caplog.text
    assert "no Bluetooth adapter found" in caplog.text


def test_scanning_survives_the_adapter_being_powered_off_and_on(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), "active")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            looked = fake_bluez.count("GetManagedObjects")
            fake_bluez.power(False)
            await fake_bluez.until(lambda: fake_bluez.count("GetManagedObjects") >= looked + 2)
            assert not fake_bluez.listening and hub.running
            fake_bluez.power(True)
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

    scenario(main())
    assert "Bluetooth adapter hci0 was powered off" in caplog.text
    assert "Bluetooth adapter hci0 is powered off" in caplog.text


def test_scanning_survives_the_dbus_daemon_being_killed_and_restarted(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), "passive")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)

            fake_bluez.restart_dbus_daemon()
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v, service_data=bthome_temperature(20.0))
            await hub.reading(v.key, Quantity.TEMPERATURE, 20.0)
            assert hub.running

    scenario(main())
    assert (v.key, Quantity.TEMPERATURE, 20.0) in hub.stored()
    assert "lost the connection to the system D-Bus" in caplog.text


def test_run_keeps_trying_without_any_dbus_and_only_stops_when_cancelled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    hub = Hub(tmp_path, paired([BY_KEY["bthome-temp-humidity"]]))

    async def main() -> None:
        async with hub:
            # Every failed attempt is logged (repeats at debug): wait for a few of them.
            with LogWaiter("drivers.ble.scanner", "cannot connect to the system D-Bus") as log:
                await log.until(5)
            assert hub.running

    scenario(main())
    assert hub.source.stats.failures >= 5


def test_silence_restarts_scanning(fake_bluez: FakeBlueZ, tmp_path: Path) -> None:
    v = BY_KEY["bthome-temp-humidity"]
    hub = Hub(tmp_path, paired([v]), "passive", silence_s=0.2)

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            # Nobody advertises: the driver gives up on this scan and starts a new one.
            await fake_bluez.until(lambda: fake_bluez.count("RegisterMonitor") >= 2)
            await fake_bluez.until(lambda: fake_bluez.count("UnregisterMonitor") >= 1)
            await fake_bluez.until(lambda: fake_bluez.listening)
            assert send(fake_bluez, v)
            await hub.reading(v.key, Quantity.TEMPERATURE, 25.06)
            assert hub.running and hub.source.stats.silence_restarts >= 1
            assert hub.source.stats.failures == 0

    scenario(main())


# -- logs stay bounded ---------------------------------------------------------------------


def test_no_log_line_per_advert(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the hub's level: the libraries' debug lines are off
    caplog.set_level(logging.DEBUG, logger="drivers.ble")  # ours stay quiet even at debug
    v = BY_KEY["bthome-temp-humidity"]
    stranger = BY_KEY["ruuvitag-v5"]
    hub = Hub(tmp_path, paired([v]), "active")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.discovering)
            await asyncio.to_thread(caplog.clear)
            for i in range(200):
                send(fake_bluez, v, service_data=bthome_temperature(15 + i / 100))
                send(fake_bluez, stranger, rssi=-50 - i % 20)
            await hub.reading(v.key, Quantity.TEMPERATURE, 15 + 199 / 100)

    scenario(main())
    assert len(caplog.records) <= 5, [r.getMessage() for r in caplog.records]


def test_a_long_outage_writes_a_few_log_lines_not_one_per_retry(
    fake_bluez: FakeBlueZ, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    hub = Hub(tmp_path, paired([BY_KEY["bthome-temp-humidity"]]), "passive")

    async def main() -> None:
        async with hub:
            await fake_bluez.until(lambda: fake_bluez.listening)
            looked = fake_bluez.count("GetManagedObjects")
            fake_bluez.remove_adapter()
            await fake_bluez.until(lambda: fake_bluez.count("GetManagedObjects") >= looked + 64)
            assert hub.running

    scenario(main())
    assert hub.source.stats.failures >= 64
    stopped = [r for r in caplog.records if "BLE scanning stopped" in r.getMessage()]
    assert len(stopped) <= 9  # removed, then attempts 1, 2, 4, 8, 16, 32, 64 of "not found"


# -- backoff -------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0, rng=random.Random(1))
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (1000, 60.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap / 4  # jittered, not in step with other hubs


def test_fake_bluez_spells_uuids_as_bluez_does() -> None:
    assert full_uuid("fcd2") == "0000fcd2-0000-1000-8000-00805f9b34fb"
    assert full_uuid("0000FCD2-0000-1000-8000-00805F9B34FB") == full_uuid("fcd2")


def test_the_fake_offers_what_bleak_reads_from_bluez(fake_bluez: FakeBlueZ) -> None:
    """The fake's own D-Bus surface, read with a plain client: the objects bleak lists, and
    a device's properties as BlueZ gives them (no Name until the device sends one)."""
    from dbus_fast import BusType, Message, MessageType, Variant, unpack_variants
    from dbus_fast.aio import MessageBus

    device = "/org/bluez/hci0/dev_C0_FF_EE_00_00_01"

    async def call(bus: MessageBus, path: str, interface: str, member: str, *args: str) -> Any:
        signature = "s" * len(args)
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=list(args),
            )
        )
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return unpack_variants(reply.body[0]) if reply.body else None

    async def main() -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            objects = await call(
                bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
            )
            hci0 = objects["/org/bluez/hci0"]
            assert hci0["org.bluez.Adapter1"]["Powered"] is True
            assert "central" in hci0["org.bluez.Adapter1"]["Roles"]
            monitors = hci0["org.bluez.AdvertisementMonitorManager1"]
            assert monitors["SupportedMonitorTypes"] == ["or_patterns"]

            assert not fake_bluez.advertise("C0:FF:EE:00:00:01")  # nobody is scanning
            await call(bus, "/org/bluez/hci0", "org.bluez.Adapter1", "StartDiscovery")
            assert fake_bluez.advertise("C0:FF:EE:00:00:01", manufacturer_data={0x0499: b"\x05"})
            props = await call(
                bus, device, "org.freedesktop.DBus.Properties", "GetAll", "org.bluez.Device1"
            )
            assert "Name" not in props and props["Alias"] == "C0-FF-EE-00-00-01"
            assert props["ManufacturerData"] == {0x0499: b"\x05"}
            assert props["Adapter"] == "/org/bluez/hci0" and props["RSSI"] == -60
            assert fake_bluez.advertise("C0:FF:EE:00:00:01", name="Thermo")
            name = await bus.call(
                Message(
                    destination="org.bluez",
                    path=device,
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=["org.bluez.Device1", "Name"],
                )
            )
            assert name.body == [Variant("s", "Thermo")]
        finally:
            bus.disconnect()

    scenario(main())
