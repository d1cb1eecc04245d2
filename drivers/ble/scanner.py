"""The BLE driver: a bleak scanner whose adverts go to the decode pipeline, kept scanning
through bluetoothd restarts, the adapter vanishing and the D-Bus connection dying.

bleak's BlueZ manager reconnects a dead bus when next asked, but nothing tells a running
scanner that bluetoothd restarted (its discovery session or monitor died with it, silently)
or that the adapter went away. So beside bleak we keep one small D-Bus connection of our own
(`BluezWatch`) that picks the adapter, says whether BlueZ can scan passively, and reports
the first sign that the scan has died; the run loop then restarts scanning with jittered
backoff. No advert from anyone for the silence time also restarts it (a wedged adapter).

Every BlueZ call is bounded by a timeout, so the loop always comes round; it beats the hub's
service watchdog (`beat`) as it does, and one that stops beating (a hang nothing here
foresaw) stops the pings to systemd, which restarts the hub.

bleak and dbus-fast are imported inside the functions that use them: importing this module
must not load them, so `import hub` and `hearth --help` stay light.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from drivers.base import Emit
from drivers.ble.pipeline import AdvertPipeline, PairedDevice
from drivers.ble.policy import ReportPolicy
from hub.clock import Clock

if TYPE_CHECKING:
    from bleak import BleakScanner
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    from drivers.ble.pipeline import SensorHealth
    from hub.config import HubConfig, SensorConfig

log = logging.getLogger(__name__)

# Added to the longest healthy gap between two beats (see BleSource.max_silence_s): a busy
# Pi's event loop, a slow SD card under the committer, a GC pause.
BEAT_MARGIN_S = 30.0

PASSIVE: Final = "passive"
ACTIVE: Final = "active"
SCAN_MODES: Final = (PASSIVE, ACTIVE)

BLUEZ: Final = "org.bluez"
_ADAPTER_IFACE: Final = "org.bluez.Adapter1"
_MONITOR_MANAGER_IFACE: Final = "org.bluez.AdvertisementMonitorManager1"
_DEFAULT_SYSTEM_BUS: Final = "unix:path=/var/run/dbus/system_bus_socket"
# D-Bus errors that mean "BlueZ is not there right now", not "BlueZ refuses this".
_GONE_ERRORS: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.Disconnected",
        "org.freedesktop.DBus.Error.UnknownObject",
    }
)

# -- what to listen for --------------------------------------------------------------------

OrPatternTuple = tuple[int, int, bytes]  # (start position, AD type, content): BlueZ or_pattern
_SERVICE_DATA_16: Final = 0x16
_MANUFACTURER_DATA: Final = 0xFF

# The AD structures each family's data arrives in (UUIDs and company ids little-endian, as
# on the air). These are the ones the Bluetooth-Devices decoders read.
FAMILY_OR_PATTERNS: Final[Mapping[str, tuple[OrPatternTuple, ...]]] = {
    "bthome": (
        (0, _SERVICE_DATA_16, b"\xd2\xfc"),  # BTHome v2 (0xFCD2)
        (0, _SERVICE_DATA_16, b"\x1c\x18"),  # BTHome v1 (0x181C)
        (0, _SERVICE_DATA_16, b"\x1e\x18"),  # BTHome v1 encrypted (0x181E)
    ),
    "xiaomi": (
        (0, _SERVICE_DATA_16, b"\x95\xfe"),  # MiBeacon (0xFE95)
        (0, _SERVICE_DATA_16, b"\x50\xfd"),  # HHCCJCY10 (0xFD50)
        (0, _SERVICE_DATA_16, b"\x1d\x18"),  # Mi scale (0x181D)
        (0, _SERVICE_DATA_16, b"\x1b\x18"),  # Mi body composition scale (0x181B)
    ),
    "ruuvitag": ((0, _MANUFACTURER_DATA, b"\x99\x04"),),  # Ruuvi Innovations (0x0499)
}
# Govee sensors are told apart by the model in their name, which they send only in the scan
# response: passive scanning never asks for one.
NEEDS_ACTIVE: Final = frozenset({"govee"})


@dataclass(frozen=True)
class ScanPlan:
    mode: str
    or_patterns: tuple[OrPatternTuple, ...]  # for passive scans
    why: str | None = None  # why the mode differs from the one configured


def plan_scan(requested: str, families: Iterable[str | None]) -> ScanPlan:
    """The scan mode to use for these paired families, and why.

    Passive unless configured active or a family needs scan responses. A device whose family
    is not known yet (None) could be any family, so passive then listens for all of them.
    """
    if requested not in SCAN_MODES:
        raise ValueError(f"scan mode must be one of {', '.join(SCAN_MODES)}, got {requested!r}")
    wanted = set(families)
    if requested == ACTIVE:
        return ScanPlan(ACTIVE, ())
    needs_active = sorted(f for f in wanted if f is not None and f in NEEDS_ACTIVE)
    if needs_active:
        return ScanPlan(
            ACTIVE,
            (),
            f"{', '.join(needs_active)} sensors are recognised by the name in their scan"
            " response, which passive scanning never asks for",
        )
    known = sorted(f for f in wanted if f is not None and f in FAMILY_OR_PATTERNS)
    if not wanted or len(known) < len(wanted):
        known = sorted(FAMILY_OR_PATTERNS)
    patterns = tuple(p for family in known for p in FAMILY_OR_PATTERNS[family])
    return ScanPlan(PASSIVE, patterns)


# -- BlueZ as seen from our own D-Bus connection -------------------------------------------


class BluetoothUnavailable(Exception):
    """Bluetooth cannot be used right now; the message says why in one line."""


@dataclass(frozen=True)
class AdapterInfo:
    path: str
    passive_refusal: str | None  # None: BlueZ offers or_patterns monitors on this adapter

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", _DEFAULT_SYSTEM_BUS)


class BluezWatch:
    """Our own D-Bus connection to BlueZ: which adapter, can it scan passively, and the
    first sign that a running scan has died (bluetoothd gone or replaced, the adapter removed
    or powered off, the bus lost)."""

    def __init__(self, bus: MessageBus, owner: str, adapter: AdapterInfo) -> None:
        self.bus = bus
        self.owner = owner
        self.adapter = adapter
        self._trouble: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._disconnect_task = asyncio.create_task(self._watch_disconnect())
        bus.add_message_handler(self._on_signal)

    @classmethod
    async def open(cls, adapter: str | None = None) -> BluezWatch:
        """Connect and look BlueZ over; raises BluetoothUnavailable saying what is missing."""
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except Exception as exc:
            raise BluetoothUnavailable(
                f"cannot connect to the system D-Bus ({system_bus_address()}): {_describe(exc)}"
            ) from exc
        try:
            # Signals first, then the state: nothing can happen unseen in between.
            await _add_match(bus, _NAME_OWNER_RULE)
            await _add_match(bus, _REMOVED_RULE)
            owner = await _bluez_owner(bus)
            objects = await _managed_objects(bus)
            info = _choose_adapter(objects, adapter)
            await _add_match(bus, _adapter_rule(info.path))
            return cls(bus, owner, info)
        except BaseException:
            bus.disconnect()
            raise

    async def trouble(self) -> str:
        """Wait for the scan to die; returns why, in words for the log."""
        return await asyncio.shield(self._trouble)

    def close(self) -> None:
        self._disconnect_task.cancel()
        self.bus.remove_message_handler(self._on_signal)
        self.bus.disconnect()

    def _report(self, why: str) -> None:
        if not self._trouble.done():
            self._trouble.set_result(why)

    async def _watch_disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        self._report("lost the connection to the system D-Bus")

    def _on_signal(self, msg: Message) -> bool:
        member, body = msg.member, msg.body
        if member == "NameOwnerChanged" and body and body[0] == BLUEZ:
            self._report("bluetoothd restarted" if body[2] else "bluetoothd stopped")
        elif member == "InterfacesRemoved" and body[0] == self.adapter.path:
            if _ADAPTER_IFACE in body[1]:
                self._report(f"Bluetooth adapter {self.adapter.name} was removed")
        elif member == "PropertiesChanged" and msg.path == self.adapter.path:
            powered = body[1].get("Powered")
            if body[0] == _ADAPTER_IFACE and powered is not None and not powered.value:
                self._report(f"Bluetooth adapter {self.adapter.name} was powered off")
        return False


_NAME_OWNER_RULE: Final = (
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='NameOwnerChanged',arg0='org.bluez'"
)
_REMOVED_RULE: Final = (
    "type='signal',interface='org.freedesktop.DBus.ObjectManager',"
    "member='InterfacesRemoved',arg0path='/org/bluez/'"
)


def _adapter_rule(path: str) -> str:
    return (
        "type='signal',interface='org.freedesktop.DBus.Properties',"
        f"member='PropertiesChanged',path='{path}',arg0='{_ADAPTER_IFACE}'"
    )


async def _call(bus: MessageBus, **fields: Any) -> Message:
    from dbus_fast import Message, MessageType

    reply = await bus.call(Message(**fields))
    if reply.message_type is MessageType.ERROR:
        raise _DBusFailure(reply.error_name or "unknown", reply.body)
    return reply


class _DBusFailure(Exception):
    def __init__(self, name: str, body: list[Any]) -> None:
        detail = body[0] if body and isinstance(body[0], str) else ""
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name


async def _add_match(bus: MessageBus, rule: str) -> None:
    await _call(
        bus,
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member="AddMatch",
        signature="s",
        body=[rule],
    )


async def _bluez_owner(bus: MessageBus) -> str:
    try:
        reply = await _call(
            bus,
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="GetNameOwner",
            signature="s",
            body=[BLUEZ],
        )
    except _DBusFailure as exc:
        raise BluetoothUnavailable(
            "bluetoothd is not running (nothing owns org.bluez on the system D-Bus)"
        ) from exc
    return str(reply.body[0])


async def _managed_objects(bus: MessageBus) -> dict[str, dict[str, dict[str, Any]]]:
    from dbus_fast import unpack_variants

    try:
        reply = await _call(
            bus,
            destination=BLUEZ,
            path="/",
            interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects",
        )
    except _DBusFailure as exc:
        raise BluetoothUnavailable(f"BlueZ did not list its adapters ({exc})") from exc
    objects: dict[str, dict[str, dict[str, Any]]] = unpack_variants(reply.body[0])
    return objects


def _choose_adapter(
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]], wanted: str | None
) -> AdapterInfo:
    """The adapter bleak should scan with: the one named, else the first powered one that
    can be a BLE central (bleak's own rule, made explicit so both sides agree)."""
    adapters = {p: i for p, i in sorted(objects.items()) if _ADAPTER_IFACE in i}
    if wanted is not None:
        path = f"/org/bluez/{wanted}"
        if path not in adapters:
            raise BluetoothUnavailable(f"Bluetooth adapter {wanted} not found")
        candidates = [path]
    else:
        if not adapters:
            raise BluetoothUnavailable("no Bluetooth adapter found")
        candidates = [
            p for p, i in adapters.items() if "central" in i[_ADAPTER_IFACE].get("Roles", [])
        ]
        if not candidates:
            raise BluetoothUnavailable("no Bluetooth adapter here can scan for BLE devices")
    powered = [p for p in candidates if adapters[p][_ADAPTER_IFACE].get("Powered")]
    if not powered:
        name = candidates[0].rsplit("/", 1)[-1]
        raise BluetoothUnavailable(f"Bluetooth adapter {name} is powered off")
    path = powered[0]
    return AdapterInfo(path, _passive_refusal(path, adapters[path]))


def _passive_refusal(path: str, interfaces: Mapping[str, Mapping[str, Any]]) -> str | None:
    name = path.rsplit("/", 1)[-1]
    manager = interfaces.get(_MONITOR_MANAGER_IFACE)
    if manager is None:
        return (
            f"BlueZ offers no advertisement monitors on {name} (passive scanning needs"
            " BlueZ 5.56 or later started with --experimental, and Linux 5.10 or later)"
        )
    types = list(manager.get("SupportedMonitorTypes", []))
    if "or_patterns" not in types:
        offered = ", ".join(types) or "none"
        return (
            f"BlueZ's advertisement monitors on {name} do not take or_patterns (offered: {offered})"
        )
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- starting bleak ------------------------------------------------------------------------

DetectionCallback = Callable[["BLEDevice", "AdvertisementData"], None]


@dataclass(frozen=True)
class StartedScan:
    scanner: BleakScanner
    mode: str
    fallback: str | None  # why passive was refused, when it was asked for and refused


async def start_scanner(
    callback: DetectionCallback, plan: ScanPlan, adapter: AdapterInfo, timeout_s: float
) -> StartedScan:
    """Start bleak as planned; if BlueZ refuses a passive scan, fall back to active.

    Raises BluetoothUnavailable for what no scan mode can get round (no adapter, BlueZ
    gone); other failures propagate for the caller's backoff.
    """
    from bleak import BleakScanner
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

    async def start(mode: str) -> BleakScanner:
        scanner = BleakScanner(
            callback,
            scanning_mode="passive" if mode == PASSIVE else "active",
            bluez=_bluez_args(plan, adapter, mode),
        )
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the call completes, and the hub could then never stop us.
            async with asyncio.timeout(timeout_s):
                await scanner.start()
        except BleakBluetoothNotAvailableError as exc:
            raise BluetoothUnavailable(str(exc)) from exc
        except BleakDBusError as exc:
            if exc.dbus_error in _GONE_ERRORS:
                raise BluetoothUnavailable(f"BlueZ went away while starting ({exc})") from exc
            raise
        return scanner

    if plan.mode == ACTIVE:
        return StartedScan(await start(ACTIVE), ACTIVE, None)
    refusal = adapter.passive_refusal
    if refusal is None:
        try:
            return StartedScan(await start(PASSIVE), PASSIVE, None)
        except BleakError as exc:  # BlueZ refused the monitor (BluetoothUnavailable is not one)
            refusal = f"BlueZ refused the advertisement monitor on {adapter.name}: {exc}"
    return StartedScan(await start(ACTIVE), ACTIVE, refusal)


def _bluez_args(plan: ScanPlan, adapter: AdapterInfo, mode: str) -> Any:
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    args: dict[str, Any] = {"adapter": adapter.name}
    if mode == PASSIVE:
        args["or_patterns"] = [
            OrPattern(start, AdvertisementDataType(kind), content)
            for start, kind, content in plan.or_patterns
        ]
    return args


async def stop_scanner(scanner: BleakScanner, timeout_s: float) -> None:
    """Stop, whatever state BlueZ and the bus are in: a failed stop is only logged."""
    try:
        async with asyncio.timeout(timeout_s):
            await scanner.stop()
    except Exception as exc:
        log.debug("stopping the BLE scanner failed (harmless, it is gone): %s", _describe(exc))


# -- the driver ----------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with jitter, so hubs that lost BlueZ together do not retry in step."""

    initial_s: float = 1.0
    max_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (>= 1): between half and all
        of initial * 2^(failures - 1), capped at max."""
        cap = min(self.max_s, self.initial_s * 2.0 ** min(max(failures - 1, 0), 32))
        return self.rng.uniform(cap / 2, cap)


@dataclass
class ScannerStats:
    sessions: int = 0  # scans started
    failures: int = 0  # scans that could not start or died
    silence_restarts: int = 0
    adverts: int = 0  # adverts bleak handed us, from anyone
    callback_errors: int = 0
    mode: str | None = None  # the mode of the scan running now
    fallback: str | None = None  # why the last passive scan fell back to active
    last_trouble: str | None = None


@dataclass(frozen=True)
class _SessionEnd:
    why: str
    failed: bool  # the scan died (backoff) rather than went quiet (restart at once)
    heard: bool


class BleSource:
    """Paired BLE sensors as a ReadingSource. `run` scans until cancelled and never raises
    for a Bluetooth or D-Bus failure: it logs, backs off and tries again."""

    name = "ble"

    def __init__(
        self,
        devices: Iterable[PairedDevice],
        scan_mode: str,
        restart_after_silence_s: float,
        clock: Clock,
        policy: ReportPolicy,
        *,
        adapter: str | None = None,
        backoff: Backoff | None = None,
        bluez_timeout_s: float = 20.0,
        beat: Callable[..., object] | None = None,
    ) -> None:
        if restart_after_silence_s <= 0:
            raise ValueError("restart_after_silence_s must be positive")
        self.devices = list(devices)
        self.plan = plan_scan(scan_mode, (d.family for d in self.devices))
        self.silence_s = restart_after_silence_s
        self.clock = clock
        self.policy = policy
        self.adapter = adapter
        self.backoff = backoff or Backoff()
        self.bluez_timeout_s = bluez_timeout_s
        # The hub's watchdog beat (hub.service.Beat), set by the hub before run(); called
        # with no argument for "making progress", or within=s before a long wait on purpose.
        self.beat = beat
        self.stats = ScannerStats()
        self.pipeline: AdvertPipeline | None = None
        self._on_advert: Callable[..., None] = _nobody
        self._logged_fallback: str | None = None
        self._last_failure: str | None = None

    @classmethod
    def from_config(cls, config: HubConfig, clock: Clock) -> BleSource:
        """The hub's BLE sensors, scan mode, silence time and reporting policy."""
        return cls(
            paired_devices(config.sensors),
            str(config.ble.scan_mode),
            config.ble.restart_after_silence_min * 60.0,
            clock,
            ReportPolicy.from_config(config.report),
        )

    @property
    def max_silence_s(self) -> float:
        """The longest a healthy run loop goes without beating, plus a margin.

        Beats come at the top of the loop, after each supervision tick, and before each
        backoff sleep (declaring the sleep). The longest gaps between them: opening our
        D-Bus watch then starting bleak (passive, then active if passive is refused): three
        BlueZ timeouts; or a supervision tick, stopping bleak, and the next attempt's
        start. A tick plus three timeouts covers both."""
        return self.silence_s / 4 + 3 * self.bluez_timeout_s + BEAT_MARGIN_S

    def _beat(self, within: float | None = None) -> None:
        if self.beat is None:
            return
        if within is None:
            self.beat()
        else:
            self.beat(within=within)

    def health(self) -> dict[str, SensorHealth]:
        """Battery, RSSI and last heard per paired sensor (empty before run starts)."""
        return {} if self.pipeline is None else self.pipeline.health()

    async def run(self, emit: Emit) -> None:
        pipeline = AdvertPipeline(self.devices, emit, self.clock, self.policy)
        self.pipeline = pipeline
        self._on_advert = pipeline.on_advert
        if self.plan.why is not None:
            log.info("BLE: scanning actively: %s", self.plan.why)
        failures = quiet = 0
        while True:
            self._beat()
            try:
                end = await self._session(failures)
            except asyncio.CancelledError:
                raise
            except BluetoothUnavailable as exc:
                end = _SessionEnd(str(exc), failed=True, heard=False)
            except Exception as exc:  # bleak, dbus-fast or a bug: retried all the same
                log.debug("BLE scanning failed", exc_info=True)
                end = _SessionEnd(_describe(exc), failed=True, heard=False)
            self.stats.mode = None
            if end.heard:
                failures = 0
            if not end.failed:
                # Quiet for good (no sensor in range) is logged at 1, 2, 4, 8... restarts.
                quiet = 0 if end.heard else quiet + 1
                self.stats.silence_restarts += 1
                level = logging.DEBUG if quiet & (quiet - 1) else logging.WARNING
                log.log(level, "BLE: %s; restarting the scan", end.why)
                continue
            quiet = 0
            failures += 1
            self.stats.failures += 1
            self.stats.last_trouble = end.why
            delay = self.backoff.delay(failures)
            self._log_failure(end.why, failures, delay)
            self._beat(within=delay + self.max_silence_s)  # a long wait, not a hang
            await self.clock.sleep(delay)

    def _log_failure(self, why: str, failures: int, delay: float) -> None:
        # Bounded: a new reason is always logged; the same one again only at attempts 1, 2,
        # 4, 8, ... so an adapter unplugged for a week writes a few dozen lines, not 10,000.
        repeat = why == self._last_failure
        self._last_failure = why
        level = logging.DEBUG if repeat and failures & (failures - 1) else logging.WARNING
        log.log(level, "BLE scanning stopped: %s; retry %d in %.3g s", why, failures, delay)

    async def _session(self, failures: int) -> _SessionEnd:
        try:
            # A bluetoothd that takes our calls and never answers must not hold the loop:
            # the system bus may never time the calls out for us.
            async with asyncio.timeout(self.bluez_timeout_s):
                watch = await BluezWatch.open(self.adapter)
        except TimeoutError as exc:
            raise BluetoothUnavailable(
                f"BlueZ did not answer within {self.bluez_timeout_s:g} s"
            ) from exc
        try:
            started = await start_scanner(
                self._detected, self.plan, watch.adapter, self.bluez_timeout_s
            )
            try:
                self._note_started(started, watch.adapter, failures)
                return await self._until_dead_or_silent(watch)
            finally:
                await stop_scanner(started.scanner, self.bluez_timeout_s)
        finally:
            watch.close()

    def _note_started(self, started: StartedScan, adapter: AdapterInfo, failures: int) -> None:
        self.stats.sessions += 1
        self.stats.mode = started.mode
        self.stats.fallback = started.fallback
        if started.fallback is not None:
            level = logging.DEBUG if started.fallback == self._logged_fallback else logging.WARNING
            self._logged_fallback = started.fallback
            log.log(
                level, "BLE: passive scanning refused (%s); scanning actively", started.fallback
            )
        again = f" after {failures} failed attempts" if failures else ""
        # The first start and every recovery are news; a restart after silence is not.
        level = logging.INFO if failures or self.stats.sessions == 1 else logging.DEBUG
        log.log(
            level,
            "BLE: scanning %s on %s for %d paired sensors%s",
            started.mode,
            adapter.name,
            len(self.devices),
            again,
        )
        self._last_failure = None

    async def _until_dead_or_silent(self, watch: BluezWatch) -> _SessionEnd:
        """Wait for the scan to die, or for silence: no advert from anyone for silence_s."""
        clock, stats = self.clock, self.stats
        at_start = last_count = stats.adverts
        last_change = clock.monotonic()
        trouble = asyncio.ensure_future(watch.trouble())
        try:
            while True:
                self._beat()
                tick = asyncio.ensure_future(clock.sleep(self.silence_s / 4))
                try:
                    await asyncio.wait({trouble, tick}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    tick.cancel()
                heard = stats.adverts > at_start
                if trouble.done():
                    return _SessionEnd(trouble.result(), failed=True, heard=heard)
                now = clock.monotonic()
                if stats.adverts != last_count:
                    last_count, last_change = stats.adverts, now
                elif now - last_change >= self.silence_s:
                    why = f"no BLE adverts from anyone for {_duration(now - last_change)}"
                    return _SessionEnd(why, failed=False, heard=heard)
        finally:
            trouble.cancel()

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak's detection callback: the hot path. Count, hand over, nothing else."""
        self.stats.adverts += 1
        try:
            self._on_advert(
                device.address,
                adv.local_name,
                adv.rssi,
                adv.manufacturer_data,
                adv.service_data,
                adv.service_uuids,
            )
        except Exception:  # the pipeline promises not to raise; never let bleak log per advert
            self.stats.callback_errors += 1
            if self.stats.callback_errors == 1:
                log.exception("BLE: the advert pipeline raised (logged once, then counted)")


def _nobody(*advert: object) -> None:
    """Where adverts go before run() has built the pipeline (never, in practice)."""


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def paired_devices(sensors: Iterable[SensorConfig]) -> list[PairedDevice]:
    """The config's BLE sensors as the pipeline wants them (addresses upper case, keys bytes)."""
    return [
        PairedDevice(
            sensor_id=s.id,
            address=s.address.upper(),
            family=None if s.family is None else str(s.family),
            bindkey=None if s.bindkey is None else bytes.fromhex(s.bindkey),
        )
        for s in sensors
        if s.source == "ble" and s.address is not None
    ]
