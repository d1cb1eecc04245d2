"""A fake BlueZ on a private dbus-daemon: the radio's edge, so bleak's real BlueZ backend runs.

Tests point bleak at the private bus with DBUS_SYSTEM_BUS_ADDRESS; bleak itself is not
touched. The fake "bluetoothd" is a dbus-fast service owning `org.bluez`, running on its own
event loop in a background thread, so tests (and CLI commands that call asyncio.run) use it
from any thread through a small synchronous API:

    fake.advertise("A4:C1:38:00:00:01", name="ATC_1", service_data={"fcd2": payload})
    fake.remove_adapter(); fake.add_adapter()   # the USB dongle unplugged and back
    fake.restart_bluetoothd()                   # a new process takes org.bluez
    fake.restart_dbus_daemon()                  # the bus itself dies and comes back

Like the real radio, an advert is only heard while someone scans: during a discovery session
(active scanning), or when it matches the or_patterns of an activated advertisement monitor
(passive scanning). What bleak 3.1 needs from BlueZ, and so what this fake provides:
ObjectManager.GetManagedObjects on `/`; Adapter1 (SetDiscoveryFilter, StartDiscovery,
StopDiscovery); AdvertisementMonitorManager1 (RegisterMonitor, UnregisterMonitor, then
Activate and DeviceFound on the client's monitor object); Device1 objects announced with
InterfacesAdded and updated with PropertiesChanged; Properties.Get/GetAll (dbus-fast's own).
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the
# annotations at class creation, and would take a postponed "None" for a signature.

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pytest
from dbus_fast import (
    BusType,
    DBusError,
    Message,
    MessageFlag,
    MessageType,
    PropertyAccess,
    Variant,
    unpack_variants,
)
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt32,
)
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

DBUS_DAEMON = "/usr/bin/dbus-daemon"
BLUEZ = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
WAIT_S = 10.0  # generous: every wait is on a condition, never a fixed sleep
_IN_FLIGHT = 64  # adverts sent before waiting for the bus daemon to have read them

_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
_T = TypeVar("_T")

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>fakebluez</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def full_uuid(uuid: str) -> str:
    """BlueZ spells every UUID in full, lower case: "fcd2" -> "0000fcd2-0000-1000-...."."""
    text = uuid.lower()
    if len(text) == 4:
        return f"0000{text}{_BASE_UUID_TAIL}"
    if len(text) == 8:
        return f"{text}{_BASE_UUID_TAIL}"
    return str(uuidlib.UUID(text))


def _short_uuid(uuid: str) -> bytes:
    """The UUID as it is sent over the air: 2, 4 or 16 bytes, little-endian."""
    if uuid.endswith(_BASE_UUID_TAIL):
        value = int(uuid[:8], 16)
        return value.to_bytes(2 if value <= 0xFFFF else 4, "little")
    return uuidlib.UUID(uuid).bytes[::-1]


# -- adverts and or_patterns ------------------------------------------------------------


@dataclass(frozen=True)
class Advert:
    """One advertisement as a sensor sends it (the scan response's name included)."""

    address: str
    name: str | None = None
    rssi: int = -60
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: Sequence[str] = ()

    def ad_structures(self) -> list[tuple[int, bytes]]:
        """The advert's AD structures (type, data): what or_patterns are matched against."""
        ads: list[tuple[int, bytes]] = []
        if self.name is not None:
            ads.append((0x09, self.name.encode()))
        uuids = [_short_uuid(full_uuid(u)) for u in self.service_uuids]
        for ad_type, size in ((0x03, 2), (0x05, 4), (0x07, 16)):
            of_size = b"".join(u for u in uuids if len(u) == size)
            if of_size:
                ads.append((ad_type, of_size))
        for company, data in self.manufacturer_data.items():
            ads.append((0xFF, company.to_bytes(2, "little") + data))
        for uuid, data in self.service_data.items():
            short = _short_uuid(full_uuid(uuid))
            ad_type = {2: 0x16, 4: 0x20, 16: 0x21}[len(short)]
            ads.append((ad_type, short + data))
        return ads


Pattern = tuple[int, int, bytes]  # (start position, AD type, content)


def matches(patterns: Sequence[Pattern], advert: Advert) -> bool:
    """BlueZ's or_patterns: any pattern found in any AD structure of its type."""
    ads = advert.ad_structures()
    return any(
        ad_type == kind and data[start : start + len(content)] == content
        for start, kind, content in patterns
        for ad_type, data in ads
    )


# -- the D-Bus interfaces ------------------------------------------------------------------


class _Adapter(ServiceInterface):
    """org.bluez.Adapter1 of hci0. Discovery sessions belong to the client that started
    them, as in BlueZ: a client that leaves the bus loses its session."""

    def __init__(self, daemon: "_Bluetoothd", address: str) -> None:
        super().__init__("org.bluez.Adapter1")
        self._daemon = daemon
        self._address = address
        self.powered = True

    @dbus_property(PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self._address

    @dbus_property(PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return "public"

    @dbus_property(PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return "fakebluez"

    @dbus_property(PropertyAccess.READ)
    def Alias(self) -> DBusStr:
        return "fakebluez"

    @dbus_property(PropertyAccess.READ)
    def Class(self) -> DBusUInt32:
        return 0

    @dbus_property(PropertyAccess.READ)
    def Powered(self) -> DBusBool:
        return self.powered

    @dbus_property(PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def Pairable(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def Discovering(self) -> DBusBool:
        return bool(self._daemon.sessions)

    @dbus_property(PropertyAccess.READ)
    def UUIDs(self) -> Annotated[list[str], DBusSignature("as")]:
        return []

    @dbus_property(PropertyAccess.READ)
    def Roles(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["central", "peripheral"]

    @dbus_method()
    def SetDiscoveryFilter(self, properties: DBusDict) -> None:
        sender = self._daemon.caller()
        filters = unpack_variants(properties)
        transport = filters.get("Transport", "auto")
        if transport not in ("auto", "bredr", "le"):
            raise DBusError("org.bluez.Error.InvalidArguments", "Invalid Transport")
        self._daemon.set_filter(sender, filters)

    @dbus_method()
    def StartDiscovery(self) -> None:
        self._daemon.start_session(self._daemon.caller())

    @dbus_method()
    def StopDiscovery(self) -> None:
        if not self._daemon.stop_session(self._daemon.caller()):
            raise DBusError("org.bluez.Error.Failed", "No discovery started")

    @dbus_method()
    def GetDiscoveryFilters(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]


class _MonitorManager(ServiceInterface):
    """org.bluez.AdvertisementMonitorManager1: what passive scanning needs."""

    def __init__(self, daemon: "_Bluetoothd", refusal: str | None) -> None:
        super().__init__("org.bluez.AdvertisementMonitorManager1")
        self._daemon = daemon
        self._refusal = refusal

    @dbus_property(PropertyAccess.READ)
    def SupportedMonitorTypes(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["or_patterns"]

    @dbus_property(PropertyAccess.READ)
    def SupportedFeatures(self) -> Annotated[list[str], DBusSignature("as")]:
        return []

    @dbus_method()
    def RegisterMonitor(self, application: DBusObjectPath) -> None:
        if self._refusal is not None:
            raise DBusError("org.bluez.Error.Failed", self._refusal)
        self._daemon.register_monitor(self._daemon.caller(), application)

    @dbus_method()
    def UnregisterMonitor(self, application: DBusObjectPath) -> None:
        if not self._daemon.unregister_monitor(self._daemon.caller(), application):
            raise DBusError("org.bluez.Error.DoesNotExist", "Monitor not registered")


class _Device(ServiceInterface):
    """org.bluez.Device1 for one remote device: what BlueZ merges from its adverts."""

    def __init__(self, advert: Advert, adapter_path: str) -> None:
        super().__init__("org.bluez.Device1")
        self.address = advert.address.upper()
        self.adapter_path = adapter_path
        self.local_name: str | None = None  # not .name: that is the interface name
        self.rssi = advert.rssi
        self.manufacturer_data: dict[int, bytes] = {}
        self.service_data: dict[str, bytes] = {}
        self.uuids: list[str] = []
        # BlueZ leaves Name out until the device has told it one: hide it per object.
        self._name_property = next(
            p for p in ServiceInterface._get_properties(self) if p.name == "Name"
        )
        ServiceInterface._get_properties(self).remove(self._name_property)
        self.merge(advert)

    def merge(self, advert: Advert) -> dict[str, Any]:
        """Take in a new advert the way BlueZ does; returns the properties that changed."""
        changed: dict[str, Any] = {"RSSI": advert.rssi}
        self.rssi = advert.rssi
        if advert.name is not None and advert.name != self.local_name:
            if self.local_name is None:
                ServiceInterface._get_properties(self).append(self._name_property)
            self.local_name = advert.name
            changed["Name"] = changed["Alias"] = advert.name
        if advert.manufacturer_data:
            merged = {**self.manufacturer_data, **advert.manufacturer_data}
            if merged != self.manufacturer_data:
                self.manufacturer_data = merged
                changed["ManufacturerData"] = self.ManufacturerData
        if advert.service_data:
            fresh = {full_uuid(u): bytes(d) for u, d in advert.service_data.items()}
            merged_sd = {**self.service_data, **fresh}
            if merged_sd != self.service_data:
                self.service_data = merged_sd
                changed["ServiceData"] = self.ServiceData
        new_uuids = [full_uuid(u) for u in advert.service_uuids]
        if any(u not in self.uuids for u in new_uuids):
            self.uuids = self.uuids + [u for u in new_uuids if u not in self.uuids]
            changed["UUIDs"] = self.uuids
        return changed

    @property
    def path(self) -> str:
        return f"{self.adapter_path}/dev_{self.address.replace(':', '_')}"

    @dbus_property(PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self.address

    @dbus_property(PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return "public"

    @dbus_property(PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return self.local_name or ""

    @dbus_property(PropertyAccess.READ)
    def Alias(self) -> DBusStr:
        return self.local_name or self.address.replace(":", "-")

    @dbus_property(PropertyAccess.READ)
    def Adapter(self) -> DBusObjectPath:
        return self.adapter_path

    @dbus_property(PropertyAccess.READ)
    def RSSI(self) -> DBusInt16:
        return self.rssi

    @dbus_property(PropertyAccess.READ)
    def UUIDs(self) -> Annotated[list[str], DBusSignature("as")]:
        return self.uuids

    @dbus_property(PropertyAccess.READ)
    def ManufacturerData(self) -> Annotated[dict[int, Variant], DBusSignature("a{qv}")]:
        return {k: Variant("ay", v) for k, v in self.manufacturer_data.items()}

    @dbus_property(PropertyAccess.READ)
    def ServiceData(self) -> Annotated[dict[str, Variant], DBusSignature("a{sv}")]:
        return {k: Variant("ay", v) for k, v in self.service_data.items()}

    @dbus_property(PropertyAccess.READ)
    def Paired(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def Connected(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def Trusted(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def Blocked(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ)
    def ServicesResolved(self) -> DBusBool:
        return False


# -- one bluetoothd process ----------------------------------------------------------------


@dataclass
class Monitor:
    """A client's advertisement monitor as BlueZ sees it."""

    sender: str
    path: str
    patterns: list[Pattern] = field(default_factory=list)
    active: bool = False
    found: set[str] = field(default_factory=set)


class _Bluetoothd:
    """One run of the fake bluetoothd: its own bus connection, like its own process.

    Restarting bluetoothd is dropping this object (its connection closes and org.bluez is
    released with it) and starting a new one with no memory of discovery or monitors.
    """

    def __init__(self, fake: "FakeBlueZ") -> None:
        self.fake = fake
        self.bus: MessageBus | None = None
        self.adapter: _Adapter | None = None
        self.manager: _MonitorManager | None = None
        self.devices: dict[str, _Device] = {}
        self.sessions: set[str] = set()
        self.filters: dict[str, dict[str, Any]] = {}
        self.monitors: list[Monitor] = []
        self._caller: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle

    async def start(self) -> None:
        bus = await MessageBus(bus_address=self.fake.address, bus_type=BusType.SYSTEM).connect()
        self.bus = bus
        bus.add_message_handler(self._on_message)
        for rule in (
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'",
            "type='signal',interface='org.freedesktop.DBus.ObjectManager',member='InterfacesAdded'",
        ):
            await self._call_daemon("AddMatch", "s", [rule])
        await bus.request_name(BLUEZ)
        self.add_adapter()

    async def _call_daemon(self, member: str, signature: str, body: list[Any]) -> Message:
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return reply

    async def stop(self) -> None:
        """Die like a killed process: no goodbye signals, the connection just closes."""
        for task in list(self._tasks):
            task.cancel()
        if self.bus is not None and self.bus.connected:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await self.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        self.fake.notify(self._forget_scans)

    # -- the adapter coming and going

    def add_adapter(self) -> None:
        assert self.bus is not None
        if self.adapter is not None:
            return
        self.adapter = _Adapter(self, self.fake.adapter_address)
        self.bus.export(ADAPTER_PATH, self.adapter)
        if self.fake.monitor_manager:
            self.manager = _MonitorManager(self, self.fake.monitor_refusal)
            self.bus.export(ADAPTER_PATH, self.manager)

    def set_powered(self, powered: bool) -> None:
        """rfkill or `bluetoothctl power off`: the adapter stays, its scans end."""
        if self.adapter is None or self.adapter.powered == powered:
            return
        self.adapter.powered = powered
        if not powered:
            self.fake.notify(self._forget_scans)
        self.adapter.emit_properties_changed({"Powered": powered, "Discovering": False})

    def remove_adapter(self) -> None:
        """As when the dongle is unplugged: devices go, then the adapter; sessions end."""
        assert self.bus is not None
        for device in self.devices.values():
            self.bus.unexport(device.path)
        self.devices.clear()
        self.bus.unexport(ADAPTER_PATH)
        self.adapter = self.manager = None
        self.fake.notify(self._forget_scans)

    def _forget_scans(self) -> None:
        self.sessions.clear()
        self.monitors.clear()

    # -- calls from clients

    def caller(self) -> str:
        assert self._caller is not None
        return self._caller

    def record(self, member: str) -> None:
        self.fake.notify(lambda: self.fake.calls.append(member))

    def set_filter(self, sender: str, filters: dict[str, Any]) -> None:
        self.fake.notify(lambda: self.filters.__setitem__(sender, filters))

    def start_session(self, sender: str) -> None:
        was = bool(self.sessions)
        self.fake.notify(lambda: self.sessions.add(sender))
        if not was and self.adapter is not None:
            self.adapter.emit_properties_changed({"Discovering": True})

    def stop_session(self, sender: str) -> bool:
        if sender not in self.sessions:
            return False
        self.fake.notify(lambda: self.sessions.discard(sender))
        if not self.sessions and self.adapter is not None:
            self.adapter.emit_properties_changed({"Discovering": False})
        return True

    def register_monitor(self, sender: str, path: str) -> None:
        if any(m.sender == sender and m.path == path for m in self.monitors):
            raise DBusError("org.bluez.Error.AlreadyExists", "Monitor already registered")
        self.fake.notify(lambda: self.monitors.append(Monitor(sender, path)))

    def unregister_monitor(self, sender: str, path: str) -> bool:
        kept = [m for m in self.monitors if not (m.sender == sender and m.path == path)]
        if len(kept) == len(self.monitors):
            return False
        self.fake.notify(lambda: setattr(self, "monitors", kept))
        return True

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is MessageType.METHOD_CALL:
            self._caller = msg.sender  # read synchronously by the method that follows
            self.record(msg.member or "")
        elif msg.message_type is MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
                name, _, new_owner = msg.body
                if not new_owner:
                    self._client_left(name)
            elif msg.member == "InterfacesAdded" and msg.sender != self.bus_name:
                self._maybe_monitor_exported(msg.sender, msg.body[0], msg.body[1])
        return False

    @property
    def bus_name(self) -> str | None:
        return None if self.bus is None else self.bus.unique_name

    def _client_left(self, name: str) -> None:
        def forget() -> None:
            self.sessions.discard(name)
            self.filters.pop(name, None)
            self.monitors[:] = [m for m in self.monitors if m.sender != name]

        had_session = name in self.sessions
        self.fake.notify(forget)
        if had_session and not self.sessions and self.adapter is not None:
            self.adapter.emit_properties_changed({"Discovering": False})

    def _maybe_monitor_exported(
        self, sender: str | None, path: str, interfaces: dict[str, Any]
    ) -> None:
        if "org.bluez.AdvertisementMonitor1" not in interfaces:
            return
        for monitor in self.monitors:
            if monitor.sender == sender and (
                path == monitor.path or path.startswith(monitor.path.rstrip("/") + "/")
            ):
                task = asyncio.create_task(self._activate(monitor, path))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _activate(self, monitor: Monitor, path: str) -> None:
        """Read the monitor's Type and Patterns from the client, as BlueZ does, then
        Activate it; a monitor BlueZ cannot use is released instead."""
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination=monitor.sender,
                path=path,
                interface="org.freedesktop.DBus.Properties",
                member="GetAll",
                signature="s",
                body=["org.bluez.AdvertisementMonitor1"],
            )
        )
        if reply.message_type is not MessageType.METHOD_RETURN:
            return
        props = unpack_variants(reply.body[0])
        patterns = [(int(s), int(t), bytes(c)) for s, t, c in props.get("Patterns", [])]
        usable = props.get("Type") == "or_patterns" and bool(patterns)
        member = "Activate" if usable else "Release"
        reply = await self.bus.call(
            Message(
                destination=monitor.sender,
                path=path,
                interface="org.bluez.AdvertisementMonitor1",
                member=member,
            )
        )
        if usable and reply.message_type is MessageType.METHOD_RETURN:

            def activate() -> None:
                monitor.patterns = patterns
                monitor.active = True

            self.fake.notify(activate)

    # -- the radio

    async def flushed(self) -> None:
        """Wait until the bus daemon has read everything sent so far: a round trip to it
        over the same connection. Keeps a burst of adverts from filling the socket, which
        dbus-fast does not survive (a send that meets a full socket drops the connection)."""
        if self.bus is not None and self.bus.connected:
            with contextlib.suppress(Exception):
                await self._call_daemon("GetId", "", [])

    def hear(self, advert: Advert) -> bool:
        """An advert in the air: announced on D-Bus only if someone is listening for it."""
        if self.bus is None or self.adapter is None or not self.bus.connected:
            return False
        finders = [m for m in self.monitors if m.active and matches(m.patterns, advert)]
        if not self.sessions and not finders:
            return False
        address = advert.address.upper()
        device = self.devices.get(address)
        if device is None:
            device = _Device(advert, ADAPTER_PATH)
            self.devices[address] = device
            self.bus.export(device.path, device)  # InterfacesAdded with every property
        else:
            device.emit_properties_changed(device.merge(advert))
        for monitor in finders:
            if address not in monitor.found:
                monitor.found.add(address)
                self.bus.send(
                    Message(
                        destination=monitor.sender,
                        path=monitor.path,
                        interface="org.bluez.AdvertisementMonitor1",
                        member="DeviceFound",
                        signature="o",
                        body=[device.path],
                        flags=MessageFlag.NO_REPLY_EXPECTED,
                    )
                )
        return True


# -- the private bus -------------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl  # looked up before fork


def _die_with_parent() -> None:
    """In the child before exec: have the kernel kill it when its parent goes, so a test
    run that is itself killed (a CI timeout) leaves no dbus-daemon behind. The "parent" is
    the thread that started it: start and restart the daemon from a long-lived thread."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class DBusDaemon:
    """A private dbus-daemon on a unix socket in its own directory, restartable at the
    same address (as systemd restarts the system bus at /run/dbus/system_bus_socket)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "bus"
        self.config = directory / "bus.conf"
        self.address = f"unix:path={self.socket}"
        self.config.write_text(_BUS_CONFIG.format(socket=self.socket))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        process = subprocess.Popen(
            [
                DBUS_DAEMON,
                f"--config-file={self.config}",
                "--nofork",
                "--nopidfile",
                "--print-address=1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self._process = process
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], WAIT_S)
        line = process.stdout.readline() if ready else b""
        if not line.strip():
            self.kill()
            raise RuntimeError("dbus-daemon did not start")

    def kill(self) -> None:
        """Kill -9: what a crashed or restarted system bus looks like to its clients."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(WAIT_S)
        if process.stdout is not None:
            process.stdout.close()


# -- the fake and its test API -------------------------------------------------------------


class FakeBlueZ:
    """The fake bluetoothd and its private bus, driven from tests. Thread-safe."""

    def __init__(
        self,
        *,
        monitor_manager: bool = True,
        monitor_refusal: str | None = None,
        adapter_address: str = "00:1A:7D:DA:71:13",
    ) -> None:
        """`monitor_manager=False` is a BlueZ without --experimental (no passive scanning);
        `monitor_refusal` makes RegisterMonitor fail with org.bluez.Error.Failed."""
        self.monitor_manager = monitor_manager
        self.monitor_refusal = monitor_refusal
        self.adapter_address = adapter_address
        self.calls: list[str] = []  # every method call BlueZ received, by member name
        self._dir = Path(tempfile.mkdtemp(prefix="fakebluez-"))  # short: socket paths <108
        self.daemon = DBusDaemon(self._dir)
        self.address = self.daemon.address
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fakebluez", daemon=True
        )
        self._bluetoothd: _Bluetoothd | None = None

    # -- lifecycle

    def start(self) -> "FakeBlueZ":
        self.daemon.start()
        self._thread.start()
        self._run(self._start_bluetoothd())
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._run(self._stop_bluetoothd())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT_S)
        self._loop.close()
        self.daemon.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT_S)

    async def _start_bluetoothd(self) -> None:
        daemon = _Bluetoothd(self)
        await daemon.start()
        self.notify(lambda: setattr(self, "_bluetoothd", daemon))

    async def _stop_bluetoothd(self) -> None:
        daemon = self._bluetoothd
        if daemon is not None:
            await daemon.stop()
        self.notify(lambda: setattr(self, "_bluetoothd", None))

    # -- state shared with the test thread

    def notify(self, change: Callable[[], object]) -> None:
        with self._cond:
            change()
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"fake BlueZ: condition not met within {timeout} s")

    def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> Awaitable[None]:
        """wait_until for async tests: waits in a thread so the client's loop keeps going."""
        return asyncio.to_thread(self.wait_until, predicate, timeout)

    def count(self, member: str) -> int:
        """How many times BlueZ was called with this method (across restarts)."""
        with self._cond:
            return self.calls.count(member)

    @property
    def discovering(self) -> bool:
        with self._cond:
            return bool(self._bluetoothd and self._bluetoothd.sessions)

    @property
    def discovery_filters(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._bluetoothd.filters.values()) if self._bluetoothd else []

    @property
    def monitors(self) -> list[Monitor]:
        with self._cond:
            return list(self._bluetoothd.monitors) if self._bluetoothd else []

    @property
    def active_monitors(self) -> list[Monitor]:
        return [m for m in self.monitors if m.active]

    @property
    def listening(self) -> bool:
        """Someone is scanning: a discovery session or an activated monitor."""
        return self.discovering or bool(self.active_monitors)

    # -- the radio and the faults

    def advertise(
        self,
        address: str,
        *,
        name: str | None = None,
        rssi: int = -60,
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[str, bytes] | None = None,
        service_uuids: Sequence[str] = (),
    ) -> bool:
        """Send one advert; True if BlueZ heard it (someone was scanning for it)."""
        advert = Advert(
            address,
            name,
            rssi,
            dict(manufacturer_data or {}),
            dict(service_data or {}),
            tuple(service_uuids),
        )
        return self.advertise_many([advert]) == 1

    def advertise_many(self, adverts: Sequence[Advert]) -> int:
        """Send many adverts in one go (for benchmarks); returns how many were heard."""

        async def hear_all() -> int:
            daemon, heard = self._bluetoothd, 0
            if daemon is None:
                return 0
            for i, advert in enumerate(adverts, 1):
                heard += daemon.hear(advert)
                if i % _IN_FLIGHT == 0 or i == len(adverts):
                    await daemon.flushed()
            return heard

        return self._run(hear_all())

    def remove_adapter(self) -> None:
        async def remove() -> None:
            if self._bluetoothd is not None and self._bluetoothd.adapter is not None:
                self._bluetoothd.remove_adapter()

        self._run(remove())

    def power(self, on: bool) -> None:
        """Power the adapter off (its scans end, as with rfkill) or back on."""

        async def switch() -> None:
            if self._bluetoothd is not None:
                self._bluetoothd.set_powered(on)

        self._run(switch())

    def add_adapter(self) -> None:
        async def add() -> None:
            if self._bluetoothd is not None:
                self._bluetoothd.add_adapter()

        self._run(add())

    def restart_bluetoothd(self) -> None:
        """bluetoothd dies (org.bluez is released with its connection) and a new one starts
        and takes the name: every discovery session and monitor is forgotten."""
        self._run(self._stop_bluetoothd())
        self._run(self._start_bluetoothd())

    def stop_bluetoothd(self) -> None:
        """bluetoothd is not running: nothing owns org.bluez."""
        self._run(self._stop_bluetoothd())

    def start_bluetoothd(self) -> None:
        self._run(self._start_bluetoothd())

    def restart_dbus_daemon(self) -> None:
        """The system bus is killed (every client's connection drops at once) and started
        again at the same address; bluetoothd reconnects to it, as systemd would restart it."""
        self.daemon.kill()
        self._run(self._stop_bluetoothd())
        self.daemon.start()
        self._run(self._start_bluetoothd())


@contextlib.contextmanager
def running_fake_bluez(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[FakeBlueZ]:
    """Start a fake BlueZ and point bleak (and dbus-fast) at its bus for the duration."""
    if not os.access(DBUS_DAEMON, os.X_OK):
        pytest.skip(f"{DBUS_DAEMON} is not installed (Debian package dbus-daemon)")
    fake = FakeBlueZ(**options)
    try:
        fake.start()
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.address)
        yield fake
    finally:
        fake.close()
        gc.collect()  # see run_with_fresh_bleak: CLI runs in the test leave the same garbage


@pytest.fixture
def fake_bluez(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBlueZ]:
    """A fake BlueZ that supports passive scanning; tests wanting another flavour use
    running_fake_bluez(monkeypatch, monitor_manager=False, ...)."""
    with running_fake_bluez(monkeypatch) as fake:
        yield fake


def run_with_fresh_bleak(main: Coroutine[Any, Any, _T]) -> _T:
    """Run a test scenario on a new event loop, and so with a fresh bleak BlueZ manager.

    bleak keeps one manager (one D-Bus connection and a cache of BlueZ's objects) per event
    loop, created on first use. A new loop per test gives each test its own, connected to
    that test's private bus; afterwards its connection is closed here rather than left for
    bleak to sweep up the next time some loop asks for a manager.
    """

    async def scenario() -> _T:
        try:
            return await main
        finally:
            _drop_bleak_manager(asyncio.get_running_loop())

    try:
        return asyncio.run(scenario())
    finally:
        # Collect the run's garbage now. A dead connection leaves futures that log
        # "exception never retrieved" when collected; Python 3.11 formats that traceback
        # with ast.parse, which breaks an ast.parse it interrupts (pytest rewriting a
        # module imported later: "AST constructor recursion depth mismatch").
        gc.collect()


def _drop_bleak_manager(loop: asyncio.AbstractEventLoop) -> None:
    from bleak.backends.bluezdbus import manager

    instance = manager._global_instances.pop(loop, None)  # bleak's registry, by loop
    if instance is not None and instance._bus is not None:
        instance._bus.disconnect()
