"""`hearth doctor`'s checks: is this hub able to do its job, and if not, what to do about it.

Each check is a small function that looks at one thing (the Bluetooth adapter, GPIO access,
the clock, disk and buffer, the council link, the service, each sensor) and answers with a
Finding: green, amber or red, one line of what it saw, and a fix in words an installer can
act on. The runner runs them all at once and never lets one broken check hide the others: a
check that raises or hangs becomes a red finding of its own.

Everything outside the process (the D-Bus bus, /dev, commands like systemctl, the kernel
clock, disk usage, the HTTP transport, the time) comes in through `Environment`, so tests
run the real checks against a fake BlueZ, a temp /dev, a fake systemctl and a real council.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import inspect
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from hub.clock import kernel_clock_synchronised

if TYPE_CHECKING:
    import httpx

    from hub.config import HubConfig, SensorConfig
    from sync.client import UploadClock

__all__ = [
    "CHECKS",
    "Check",
    "CommandResult",
    "Context",
    "Environment",
    "Finding",
    "Level",
    "Report",
    "run_checks",
    "run_doctor",
]


class Level(enum.StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """0 green, 1 amber, 2 red: scripts can act on the worst finding."""
        return self.rank


_RANK = {Level.GREEN: 0, Level.AMBER: 1, Level.RED: 2}


def worst(levels: Iterable[Level]) -> Level:
    return max(levels, key=lambda level: level.rank, default=Level.GREEN)


@dataclass(frozen=True)
class Finding:
    name: str
    level: Level
    summary: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level.value,
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass(frozen=True)
class Report:
    findings: list[Finding]

    @property
    def level(self) -> Level:
        return worst(f.level for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "exit_code": self.level.exit_code,
            "findings": [f.as_dict() for f in self.findings],
        }


# -- the edges -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


# argv -> its result, or None when the program is not installed.
Runner = Callable[[Sequence[str]], CommandResult | None]


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


def run_command(argv: Sequence[str], timeout_s: float = 10.0) -> CommandResult | None:
    """Run a short command with the C locale (its output is parsed), or None if missing."""
    program = shutil.which(argv[0])
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CommandResult(-1, "", f"{argv[0]} did not answer within {timeout_s:g} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _read_write(path: Path) -> bool:
    return os.access(path, os.R_OK | os.W_OK)


def _lgpio_importable() -> bool:
    return importlib.util.find_spec("lgpio") is not None


def _disk_usage(path: Path) -> DiskUsage:
    total, used, free = shutil.disk_usage(path)
    return DiskUsage(total, used, free)


@dataclass(frozen=True)
class Environment:
    """The world the checks look at. The defaults are the real machine."""

    bus_address: str | None = None  # None: the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured)
    dev_dir: Path = Path("/dev")
    gpio_access: Callable[[Path], bool] = _read_write
    lgpio_available: Callable[[], bool] = _lgpio_importable
    clock_synced: Callable[[], bool] = kernel_clock_synchronised
    disk_usage: Callable[[Path], DiskUsage] = _disk_usage
    now: Callable[[], float] = time.time
    run: Runner = run_command
    transport: httpx.AsyncBaseTransport | None = None
    upload_clock: UploadClock | None = None  # None: the system clock
    council_timeout_s: float = 10.0
    unit: str = "hearth.service"
    check_timeout_s: float = 30.0


@dataclass
class Context:
    """What every check gets: the config (None when it could not be read) and the edges."""

    config: HubConfig | None
    config_path: Path
    env: Environment = field(default_factory=Environment)


# -- bluetooth -----------------------------------------------------------------------------

_ADAPTER = "org.bluez.Adapter1"
_MONITORS = "org.bluez.AdvertisementMonitorManager1"
_VERSION_COMMANDS = (
    ("bluetoothctl", "--version"),
    ("/usr/libexec/bluetooth/bluetoothd", "--version"),
    ("/usr/lib/bluetooth/bluetoothd", "--version"),
)
_FIX_BLUETOOTHD = (
    "start the Bluetooth service: sudo systemctl enable --now bluetooth"
    " (if it is not installed: sudo apt install bluez)"
)
_FIX_NO_ADAPTER = (
    "this machine has no working Bluetooth adapter. On a Pi, check that Bluetooth is not"
    " disabled in /boot/firmware/config.txt (no dtoverlay=disable-bt) and not blocked"
    " (sudo rfkill unblock bluetooth), then reboot; a USB adapter: plug it in again"
)
_FIX_POWERED_OFF = (
    "switch Bluetooth on: sudo rfkill unblock bluetooth && bluetoothctl power on"
    " (the hub keeps retrying and starts scanning once it is on)"
)


def bluez_version(run: Runner) -> str | None:
    """The BlueZ version from its own tools; BlueZ does not publish it on D-Bus."""
    for argv in _VERSION_COMMANDS:
        result = run(argv)
        if result is not None and result.returncode == 0:
            match = re.search(r"\d+\.\d+", result.stdout)
            if match:
                return match[0]
    return None


async def _bluez_objects(address: str) -> tuple[bool, dict[str, dict[str, dict[str, Any]]]]:
    """(bluetoothd running, BlueZ's objects) over one short-lived D-Bus connection."""
    from dbus_fast import BusType, Message, MessageType, unpack_variants
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        owner = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="NameHasOwner",
                signature="s",
                body=["org.bluez"],
            )
        )
        if owner.message_type is MessageType.ERROR or not owner.body[0]:
            return False, {}
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"BlueZ did not list its objects: {reply.error_name}")
        objects: dict[str, dict[str, dict[str, Any]]] = unpack_variants(reply.body[0])
        return True, objects
    finally:
        bus.disconnect()


async def check_bluetooth(ctx: Context) -> Finding:
    from drivers.ble.scanner import system_bus_address
    from hub.config import SensorSource

    assert ctx.config is not None
    name = "bluetooth"
    ble = [s for s in ctx.config.sensors if s.source is SensorSource.BLE]
    if not ble:
        return Finding(name, Level.GREEN, "no BLE sensors configured: Bluetooth not needed")
    address = ctx.env.bus_address or system_bus_address()
    version = await asyncio.to_thread(bluez_version, ctx.env.run)
    details: dict[str, Any] = {"bluez_version": version, "bus": address, "ble_sensors": len(ble)}
    try:
        running, objects = await _bluez_objects(address)
    except Exception as exc:
        return Finding(
            name,
            Level.RED,
            f"cannot reach the system message bus (D-Bus): {type(exc).__name__}: {exc}",
            "the system message bus is not running: restart the hub (sudo reboot); if it"
            " persists, reinstall it: sudo apt install --reinstall dbus",
            details,
        )
    if not running:
        return Finding(
            name,
            Level.RED,
            "the Bluetooth service (bluetoothd) is not running",
            _FIX_BLUETOOTHD,
            details,
        )
    return _judge_adapters(objects, ctx.config, ble, version, details)


def _judge_adapters(
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]],
    cfg: HubConfig,
    ble: Sequence[SensorConfig],
    version: str | None,
    details: dict[str, Any],
) -> Finding:
    """The adapter bleak would scan with (first powered one that can be a BLE central, as
    drivers.ble.scanner chooses), and whether it can scan the way the config asks."""
    from drivers.ble.scanner import PASSIVE, plan_scan

    name = "bluetooth"
    adapters = {p: i for p, i in sorted(objects.items()) if _ADAPTER in i}
    details["adapters"] = {
        p.rsplit("/", 1)[-1]: {
            "address": i[_ADAPTER].get("Address"),
            "powered": bool(i[_ADAPTER].get("Powered")),
        }
        for p, i in adapters.items()
    }
    usable = {p: i for p, i in adapters.items() if "central" in i[_ADAPTER].get("Roles", [])}
    if not usable:
        what = "no Bluetooth adapter found" if not adapters else "no adapter can scan for BLE"
        return Finding(name, Level.RED, what, _FIX_NO_ADAPTER, details)
    powered = [p for p, i in usable.items() if i[_ADAPTER].get("Powered")]
    shown = f", BlueZ {version}" if version else ""
    if not powered:
        adapter = next(iter(usable)).rsplit("/", 1)[-1]
        return Finding(
            name,
            Level.AMBER,
            f"Bluetooth adapter {adapter} is switched off{shown}",
            _FIX_POWERED_OFF,
            details,
        )
    path = powered[0]
    adapter = path.rsplit("/", 1)[-1]
    details["adapter"] = adapter
    plan = plan_scan(cfg.ble.scan_mode.value, [s.family.value if s.family else None for s in ble])
    details["scan_mode"] = plan.mode
    summary = f"adapter {adapter} on{shown}, {plan.mode} scanning"
    if plan.mode == PASSIVE and _MONITORS not in usable[path]:
        return Finding(
            name,
            Level.AMBER,
            f"adapter {adapter} on{shown}, but passive scanning is not available: the hub"
            " scans actively, which drains the sensors' batteries faster",
            "passive scanning needs BlueZ 5.56 or later started with --experimental: add"
            " --experimental to bluetoothd's ExecStart (sudo systemctl edit bluetooth),"
            " then sudo systemctl restart bluetooth",
            details,
        )
    return Finding(name, Level.GREEN, summary, None, details)


# -- gpio ----------------------------------------------------------------------------------


def check_gpio(ctx: Context) -> Finding:
    from drivers.gpio.factory import gpio_chips
    from hub.config import PinFactoryChoice, SensorSource

    assert ctx.config is not None
    name = "gpio"
    wired = [s.id for s in ctx.config.sensors if s.source is SensorSource.GPIO]
    factory = ctx.config.gpio.pin_factory
    chips = gpio_chips(ctx.env.dev_dir)
    details: dict[str, Any] = {
        "pin_factory": factory.value,
        "chips": [c.name for c in chips],
        "gpio_sensors": wired,
    }
    if not wired:
        return Finding(name, Level.GREEN, "no GPIO sensors configured", None, details)
    if factory is PinFactoryChoice.MOCK:
        if chips:
            return Finding(
                name,
                Level.AMBER,
                f"{len(wired)} wired sensor(s), but the config says mock pins: nothing real"
                " is read",
                'unless this is a demo, set pin_factory = "auto" under [gpio] in the config'
                " and restart the service",
                details,
            )
        return Finding(name, Level.GREEN, "mock pins (set in the config)", None, details)
    if not chips:
        return Finding(
            name,
            Level.RED,
            f"{len(wired)} wired sensor(s) configured, but this machine has no GPIO pins"
            f" (no {ctx.env.dev_dir}/gpiochip*)",
            "run the hub on the Raspberry Pi the sensors are wired to; for a demo without"
            ' pins set pin_factory = "mock" under [gpio]',
            details,
        )
    denied = [c.name for c in chips if not ctx.env.gpio_access(c)]
    details["denied"] = denied
    if denied:
        user = _user_name()
        return Finding(
            name,
            Level.RED,
            f"this user ({user}) may not use the GPIO pins ({', '.join(denied)})",
            f"add the user to the gpio group: sudo usermod -aG gpio {user}, then log out and"
            " back in (the service: sudo systemctl restart hearth)",
            details,
        )
    if not ctx.env.lgpio_available():
        return Finding(
            name,
            Level.RED,
            "GPIO pins present, but the lgpio module the hub reads them with is missing",
            "install it: sudo apt install python3-lgpio (or pip install lgpio on 64-bit)",
            details,
        )
    return Finding(
        name,
        Level.GREEN,
        f"{len(wired)} wired sensor(s), pins accessible ({', '.join(c.name for c in chips)})",
        None,
        details,
    )


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# -- clock ---------------------------------------------------------------------------------


def check_clock(ctx: Context) -> Finding:
    synced = bool(ctx.env.clock_synced())
    details = {"synchronised": synced, "now": ctx.env.now()}
    if synced:
        return Finding("clock", Level.GREEN, "clock synchronised (NTP)", None, details)
    return Finding(
        "clock",
        Level.AMBER,
        "clock not synchronised yet: events are stamped as unsynced until it is",
        "connect the hub to the internet; it sets its clock by itself within a minute"
        " (check with: timedatectl). If it stays unsynchronised online, enable time sync:"
        " sudo timedatectl set-ntp true",
        details,
    )


# -- disk and store ------------------------------------------------------------------------

_MB = 1024 * 1024
DISK_AMBER = (0.10, 500 * _MB)  # fraction free, bytes free
DISK_RED = (0.02, 100 * _MB)
OLDEST_UNSYNCED_AMBER_S = 86_400.0


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: Context) -> Finding:
    assert ctx.config is not None
    data_dir = ctx.config.hub.data_dir
    usage = ctx.env.disk_usage(_existing(data_dir))
    fraction = usage.free / usage.total if usage.total else 0.0
    details = {
        "data_dir": str(data_dir),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "free_fraction": round(fraction, 4),
    }
    said = f"{usage.free / _MB:,.0f} MB free of {usage.total / _MB:,.0f} MB ({fraction:.0%})"
    fix = (
        "free space on the SD card: remove large files you put there (sudo du -xh / |"
        " sort -h | tail shows the biggest), or use a larger card. When space runs out the"
        " buffer gives up synced data first, then the oldest unsent readings; never an alert"
    )
    if fraction < DISK_RED[0] or usage.free < DISK_RED[1]:
        return Finding("disk", Level.RED, f"disk almost full: {said}", fix, details)
    if fraction < DISK_AMBER[0] or usage.free < DISK_AMBER[1]:
        return Finding("disk", Level.AMBER, f"disk getting full: {said}", fix, details)
    return Finding("disk", Level.GREEN, said, None, details)


def ago(seconds: float) -> str:
    """An age in words ("3 h ago"), shared by doctor, `hearth status` and `sensors list`."""
    if seconds < 0:
        return "in the future (the clock was wrong or has jumped)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def connect_readonly(path: Path) -> sqlite3.Connection:
    """The buffer opened read-only: never create, migrate or recover a buffer the running
    service owns."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def check_store(ctx: Context) -> Finding:
    from hub.store.buffer import read_status

    assert ctx.config is not None
    path = ctx.config.store_path
    details: dict[str, Any] = {"path": str(path)}
    if not path.exists():
        return Finding(
            "store",
            Level.AMBER,
            f"no buffer yet at {path}: the hub has not run",
            "start the hub: sudo hearth service install (or hearth run to try it by hand)",
            details,
        )
    restart = (
        "restart the service (sudo systemctl restart hearth): the hub moves a damaged buffer"
        " aside on start, keeps what it can read and starts a new one"
    )
    try:
        conn = connect_readonly(path)
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                details["quick_check"] = problems[:10]
                return Finding(
                    "store", Level.RED, f"the buffer is damaged: {problems[0]}", restart, details
                )
            status = read_status(conn, path, None)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Finding("store", Level.RED, f"the buffer cannot be read: {exc}", restart, details)
    queued = sum(status.queue_depth.values())
    details.update(queue_depth=status.queue_depth, file_bytes=status.file_bytes)
    if status.storage_full_since is not None:
        details["storage_full_since"] = status.storage_full_since
        return Finding(
            "store",
            Level.RED,
            f"the disk has been full since {ago(ctx.env.now() - status.storage_full_since)}:"
            " the hub prunes its buffer to keep writing (synced data first, then the oldest"
            " unsent readings; alerts are kept)",
            "free space on the SD card (see the disk line); the hub goes back to normal by"
            " itself once about 25 MB are free",
            details,
        )
    summary = f"buffer OK, {queued} event(s) waiting to upload"
    oldest = status.oldest_unsynced
    if oldest is not None:
        age = ctx.env.now() - float(oldest["wall_time"])
        details["oldest_unsynced_age_s"] = age
        summary += f", oldest {ago(age)}"
        if age > OLDEST_UNSYNCED_AMBER_S:
            return Finding(
                "store",
                Level.AMBER,
                summary + ": nothing has reached the council for over a day",
                "see the council line: once the hub can reach the council, everything waiting"
                " is sent by itself (hearth sync now sends it at once)",
                details,
            )
    return Finding("store", Level.GREEN, summary, None, details)


# -- council -------------------------------------------------------------------------------

_FIX_REENROLL = (
    "enroll the hub again with a new code from the council's admin:"
    " hearth enroll --force --council {url} --code CODE"
)
CLOCK_OFFSET_AMBER_S = 60.0


def _transport_finding(exc: Exception, url: str, details: dict[str, Any]) -> Finding:
    """Name the kind of connection failure: each needs a different fix."""
    import httpx

    from sync.client import exception_chain

    host = urlsplit(url).hostname or url
    name = "council"
    for cause in exception_chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            details["failure"] = "tls_certificate"
            return Finding(
                name,
                Level.RED,
                f"the council's certificate is not trusted ({cause.verify_message})",
                "check the council address in the config; if the council uses its own"
                " certificate authority, set ca_bundle under [council] to its CA certificate",
                details,
            )
        if isinstance(cause, ssl.SSLError):
            details["failure"] = "tls"
            return Finding(
                name,
                Level.RED,
                f"a secure (TLS) connection to {host} failed ({cause.reason or cause})",
                "check the council address (https:// and the port) in the config; guest or"
                " hotel Wi-Fi that shows a login page also causes this: use another network",
                details,
            )
        if isinstance(cause, socket.gaierror):
            details["failure"] = "dns"
            return Finding(
                name,
                Level.AMBER,
                f"cannot look up the council's address {host} (DNS)",
                "check the hub is online (Wi-Fi or mobile signal) and the council address is"
                " spelt right; until then events wait safely in the buffer",
                details,
            )
    timeout = isinstance(exc, httpx.TimeoutException)
    details["failure"] = "timeout" if timeout else "no_connection"
    what = "did not answer in time" if timeout else "cannot be reached"
    return Finding(
        name,
        Level.AMBER,
        f"the council at {host} {what} ({type(exc).__name__})",
        "check the hub is online (Wi-Fi or mobile signal, router on); events wait safely in"
        " the buffer and are sent when the connection is back",
        details,
    )


def _refusal_finding(status: int, detail: str, url: str, details: dict[str, Any]) -> Finding:
    details.update(status=status, detail=detail)
    name = "council"
    if status == 401 and "timestamp" in detail.lower():
        return Finding(
            name,
            Level.RED,
            f"the council refused the hub's clock: {detail}",
            "set the clock right: connect the hub to the internet so it syncs its time"
            " (timedatectl shows it); then run hearth doctor again",
            details,
        )
    if status == 401:
        return Finding(
            name,
            Level.RED,
            f"the council did not accept this hub's key: {detail}",
            _FIX_REENROLL.format(url=url),
            details,
        )
    if status in (403, 404):
        return Finding(
            name,
            Level.RED,
            f"the council refused the request ({status}: {detail})",
            "check the council address under [council] url in the config (ask the council"
            " for the right one)",
            details,
        )
    return Finding(
        name,
        Level.AMBER,
        f"the council answered {status}: {detail}",
        "the council service has a problem: events wait in the buffer; tell the council's"
        " team if it lasts",
        details,
    )


def _deferred_enrollment(data_dir: Path) -> dict[str, Any] | None:
    """The enrollment `hearth setup` left for the service (sync.deferred), if any; never
    the code itself, which doctor has no business showing."""
    import json

    from sync.deferred import deferred_path

    try:
        record = json.loads(deferred_path(data_dir).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return {k: record.get(k) for k in ("council_url", "deferred_at")}


async def check_council(ctx: Context) -> Finding:
    import httpx

    from hub.clock import SystemClock
    from hub.identity import KEY_FILENAME, HubIdentity, KeyFileError
    from sync.client import CouncilClient, make_http_client, response_detail
    from sync.protocol import CONFIG_PATH

    assert ctx.config is not None
    cfg = ctx.config
    name = "council"
    hub_id, url = cfg.hub.id, cfg.council.url
    details: dict[str, Any] = {"hub_id": hub_id, "url": url}
    if hub_id is None or url is None:
        deferred = _deferred_enrollment(cfg.hub.data_dir)
        if deferred is not None:
            details["deferred_to"] = deferred.get("council_url")
            since = deferred.get("deferred_at")
            when = f" since {ago(ctx.env.now() - since)}" if isinstance(since, float) else ""
            return Finding(
                name,
                Level.AMBER,
                f"enrollment deferred{when}: the service enrolls by itself with"
                f" {deferred.get('council_url')} once it has a connection",
                "give the hub a connection (Wi-Fi or a mobile hotspot) and start the service:"
                " sudo hearth service install; or enroll now: hearth enroll --council URL"
                " --code CODE",
                details,
            )
        return Finding(
            name,
            Level.AMBER,
            "not enrolled with the council yet",
            "enroll: hearth enroll --council URL --code CODE (the council's admin makes the"
            " one-time code with: hearth council code create)",
            details,
        )
    details["key_file"] = str(cfg.hub.data_dir / KEY_FILENAME)
    try:
        identity = HubIdentity.load(cfg.hub.data_dir)
    except KeyFileError as exc:
        # hub.identity's messages end with their own "Fix: ..." when there is one.
        problem, _, own_fix = str(exc).partition(" Fix: ")
        return Finding(
            name,
            Level.RED,
            f"the hub's key is not usable: {problem}",
            own_fix or _FIX_REENROLL.format(url=url),
            details,
        )
    timeout = min(cfg.council.timeout_s, ctx.env.council_timeout_s)
    try:
        http = make_http_client(
            ca_bundle=cfg.council.ca_bundle, timeout_s=timeout, transport=ctx.env.transport
        )
    except ValueError as exc:
        return Finding(
            name,
            Level.RED,
            str(exc),
            "point ca_bundle under [council] at the council's CA certificate (a PEM file)",
            details,
        )
    async with http:
        client = CouncilClient(http, url, hub_id, identity, ctx.env.upload_clock or SystemClock())
        try:
            response = await client.send("GET", CONFIG_PATH)
        except httpx.TransportError as exc:
            return _transport_finding(exc, url, details)
    offset = client.clock_offset_s
    details["clock_offset_s"] = offset
    if response.status_code != 200:
        return _refusal_finding(response.status_code, response_detail(response), url, details)
    try:
        version = int(response.json()["config_version"])
    except (ValueError, KeyError, TypeError):
        version = None
    details["config_version"] = version
    summary = f"enrolled as {hub_id}; council reachable and our signature accepted"
    if offset is not None and abs(offset) >= CLOCK_OFFSET_AMBER_S:
        direction = "behind" if offset > 0 else "ahead of"
        return Finding(
            name,
            Level.AMBER,
            f"{summary}, but this hub's clock is {abs(offset):.0f} s {direction} the council's",
            "let the hub set its clock: it needs internet access for time sync (timedatectl"
            " shows it); uploads still work meanwhile",
            details,
        )
    return Finding(name, Level.GREEN, summary, None, details)


# -- the service ---------------------------------------------------------------------------

_SERVICE_PROPERTIES = ("LoadState", "ActiveState", "SubState", "WatchdogUSec", "NRestarts")
MANY_RESTARTS = 3


def _properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _watchdog_armed(value: str) -> bool:
    # systemd prints a time span ("30s", "1min 30s") or microseconds; 0 means off.
    return value not in ("", "0", "infinity") and re.search(r"[1-9]", value) is not None


def check_service(ctx: Context) -> Finding:
    name, unit = "service", ctx.env.unit
    install = "install and start it: sudo hearth service install"
    result = ctx.env.run(["systemctl", "show", unit, "-p", ",".join(_SERVICE_PROPERTIES)])
    if result is None:
        return Finding(
            name,
            Level.AMBER,
            "not installed as a service (this machine has no systemd)",
            install,
            {"unit": unit},
        )
    props = _properties(result.stdout)
    details: dict[str, Any] = {"unit": unit, **props}
    if result.returncode != 0 or "ActiveState" not in props:
        said = (result.stderr or result.stdout).strip().splitlines()
        return Finding(
            name,
            Level.AMBER,
            "cannot ask systemd about the service" + (f": {said[0]}" if said else ""),
            "systemd is not running here (a container?): run the hub on the Pi itself, then "
            + install,
            details,
        )
    if props.get("LoadState") == "not-found":
        return Finding(name, Level.AMBER, "not installed as a service", install, details)
    active, sub = props.get("ActiveState", ""), props.get("SubState", "")
    restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else 0
    logs = f"see why in its log: journalctl -u {unit} -n 50"
    if active != "active":
        if active == "activating" or sub == "auto-restart":
            return Finding(
                name,
                Level.RED,
                f"the service keeps restarting ({active}/{sub}, {restarts} restarts)",
                logs,
                details,
            )
        return Finding(
            name,
            Level.RED,
            f"the service is not running ({active}/{sub})",
            f"start it: sudo systemctl enable --now {unit}; if it stops again, {logs}",
            details,
        )
    watchdog = props.get("WatchdogUSec", "")
    if not _watchdog_armed(watchdog):
        return Finding(
            name,
            Level.AMBER,
            "running, but without its watchdog: a hung hub would not be restarted",
            "reinstall the service unit: sudo hearth service install",
            details,
        )
    summary = f"running, watchdog {watchdog}, {restarts} restart(s)"
    if restarts > MANY_RESTARTS:
        return Finding(name, Level.AMBER, f"{summary}: it has been crashing", logs, details)
    return Finding(name, Level.GREEN, summary, None, details)


# -- sensors -------------------------------------------------------------------------------

RECENT_ROWS = 200_000  # newest rows searched first for each sensor
QUIET_WIRED_S = 86_400.0  # a wired motion/contact sensor unheard for a day is worth a look
BATTERY_AMBER_PCT = 25.0


@dataclass(frozen=True)
class Heard:
    last_seen: float | None = None
    battery: float | None = None
    battery_at: float | None = None


def _newest_seqs(
    conn: sqlite3.Connection, where: str, params: Sequence[Any]
) -> dict[str, tuple[int | None, int | None]]:
    """sensor id -> (seq of its newest reading, seq of its newest battery level)."""
    rows = conn.execute(
        "SELECT sensor_id, max(seq), max(CASE WHEN quantity = 'battery' THEN seq END)"
        f" FROM events WHERE kind = 'reading' AND {where} GROUP BY sensor_id",
        params,
    )
    return {sensor_id: (last, battery) for sensor_id, last, battery in rows}


def latest_by_sensor(
    conn: sqlite3.Connection, wanted: Collection[str], recent_rows: int = RECENT_ROWS
) -> dict[str, Heard]:
    """The newest reading and newest battery level of each wanted sensor, newest by sequence
    (arrival order), so a reading stamped by a wrong clock cannot pose as the latest.

    There is no index on sensor_id (it would cost every commit), and grouping a full 512 MB
    buffer takes seconds on a Pi. Sensors that report are found among the newest rows; only
    those missing there (silent, or without a battery) cost one plain scan of the rest.
    """
    (top,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    floor = top - recent_rows
    found = _newest_seqs(conn, "seq > ?", (floor,))
    if floor > 0:
        # Unheard lately: anything older. Heard but no battery lately: only battery rows,
        # so a sensor that never reports one does not drag all its readings into the sort.
        unheard = [s for s in wanted if s not in found]
        no_battery = [s for s in wanted if s in found and found[s][1] is None]
        for ids, only_battery in ((unheard, False), (no_battery, True)):
            if not ids:
                continue
            where = f"seq <= ? AND sensor_id IN ({','.join('?' * len(ids))})"
            where += " AND quantity = 'battery'" if only_battery else ""
            for sensor_id, (last, battery) in _newest_seqs(conn, where, (floor, *ids)).items():
                newer_last, newer_battery = found.get(sensor_id, (None, None))
                found[sensor_id] = (
                    last if newer_last is None else newer_last,
                    battery if newer_battery is None else newer_battery,
                )
    out: dict[str, Heard] = {}
    for sensor_id in wanted:
        last, battery = found.get(sensor_id, (None, None))
        heard = Heard()
        if last is not None:
            (wall,) = conn.execute("SELECT wall_time FROM events WHERE seq = ?", (last,)).fetchone()
            heard = Heard(last_seen=wall)
        if battery is not None:
            value, at = conn.execute(
                "SELECT value, wall_time FROM events WHERE seq = ?", (battery,)
            ).fetchone()
            heard = Heard(heard.last_seen, value, at)
        out[sensor_id] = heard
    return out


def _silence_rule(sensor: SensorConfig, cfg: HubConfig) -> tuple[float | None, Level, str]:
    """(quiet allowed in s or None for never judged, level when quieter, why)."""
    from hub.checks.health import PERIODIC_KINDS
    from hub.config import SensorKind, SensorSource

    heartbeat_s = cfg.report.heartbeat_min * 60.0
    missed = cfg.checks.sensor_silent.missed_intervals
    if sensor.source is SensorSource.GPIO:
        if sensor.kind in (SensorKind.BUTTON, SensorKind.LEAK):
            return (
                None,
                Level.GREEN,
                (
                    f"a wired {sensor.kind.value} sensor only reports when it is used; test it"
                    f" with: hearth sensors test {sensor.id}"
                ),
            )
        return (
            QUIET_WIRED_S,
            Level.AMBER,
            (
                f"a wired {sensor.kind.value} sensor only reports when something changes, so"
                " silence may just mean nothing happened; if someone is home, test it with:"
                f" hearth sensors test {sensor.id}"
            ),
        )
    allowed = missed * heartbeat_s
    if sensor.kind in PERIODIC_KINDS:
        return (
            allowed,
            Level.RED,
            (
                f"it should report at least every {cfg.report.heartbeat_min:g} min. Check it is"
                " within range of the hub (move it or the hub closer), replace its battery, and"
                " check its address in the config"
            ),
        )
    return (
        allowed,
        Level.AMBER,
        (
            f"a {sensor.kind.value} sensor may only send when something happens, so silence"
            " may just mean nothing happened; check it is within range and its battery, and"
            f" test it with: hearth sensors test {sensor.id}"
        ),
    )


def sensor_finding(
    sensor: SensorConfig, heard: Heard | None, cfg: HubConfig, now: float, buffer: bool
) -> Finding:
    allowed, quiet_level, why = _silence_rule(sensor, cfg)
    name = f"sensor {sensor.id}"
    heard = heard or Heard()
    details: dict[str, Any] = {
        "kind": sensor.kind.value,
        "source": sensor.source.value,
        "room": sensor.room,
        "last_seen": heard.last_seen,
        "battery": heard.battery,
        "silent_after_s": allowed,
    }
    findings: list[tuple[Level, str, str | None]] = []
    if heard.last_seen is None:
        if not buffer:
            findings.append((Level.AMBER, "not heard yet (the hub has not run)", None))
        elif allowed is None:
            findings.append((Level.GREEN, "not used yet", why))
        else:
            findings.append((quiet_level, "never heard", why))
    else:
        age = now - heard.last_seen
        details["age_s"] = age
        silent = allowed is not None and age > allowed
        findings.append(
            (
                quiet_level if silent else Level.GREEN,
                f"last heard {ago(age)}",
                why if silent else None,
            )
        )
    if heard.battery is not None:
        red_below = cfg.checks.sensor_silent.battery_low_pct
        amber_below = max(BATTERY_AMBER_PCT, red_below + 10.0)
        said = f"battery {heard.battery:.0f} %"
        replace = f"replace the battery of {sensor.id} ({sensor.room}) soon"
        if heard.battery < red_below:
            findings.append((Level.RED, said + " (low)", replace.removesuffix(" soon")))
        elif heard.battery < amber_below:
            findings.append((Level.AMBER, said + " (getting low)", replace))
        else:
            findings.append((Level.GREEN, said, None))
    level = worst(level for level, _, _ in findings)
    summary = f"{sensor.kind.value} in {sensor.room}: " + ", ".join(s for _, s, _ in findings)
    fixes = [fix for lvl, _, fix in findings if fix and lvl is not Level.GREEN]
    if level is Level.GREEN and allowed is None and heard.last_seen is None:
        fixes = [why]  # green, but the installer should still know to test it by hand
    return Finding(name, level, summary, "; ".join(fixes) or None, details)


def check_sensors(ctx: Context) -> list[Finding]:
    from hub.config import SensorSource

    assert ctx.config is not None
    cfg = ctx.config
    read = [s for s in cfg.sensors if s.source is not SensorSource.REPLAY]
    if not read:
        return [
            Finding(
                "sensors",
                Level.AMBER,
                "no sensors configured",
                "add the home's sensors: hearth sensors add (or hearth setup)",
            )
        ]
    path = cfg.store_path
    heard: dict[str, Heard] = {}
    if path.exists():
        try:
            conn = connect_readonly(path)
            try:
                heard = latest_by_sensor(conn, [s.id for s in read])
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return [
                Finding(
                    "sensors",
                    Level.RED,
                    f"cannot tell when sensors were last heard: the buffer cannot be read ({exc})",
                    "see the store line above",
                    {"path": str(path)},
                )
            ]
    now = ctx.env.now()
    return [sensor_finding(s, heard.get(s.id), cfg, now, path.exists()) for s in read]


# -- the runner ----------------------------------------------------------------------------

CheckResult = Finding | list[Finding]
CheckFn = Callable[[Context], CheckResult | Awaitable[CheckResult]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn
    needs_config: bool = True


CHECKS: tuple[Check, ...] = (
    Check("bluetooth", check_bluetooth),
    Check("gpio", check_gpio),
    Check("clock", check_clock, needs_config=False),
    Check("disk", check_disk),
    Check("store", check_store),
    Check("council", check_council),
    Check("service", check_service, needs_config=False),
    Check("sensors", check_sensors),
)


async def _run_one(check: Check, ctx: Context) -> list[Finding]:
    """Run one check; a crash or a hang becomes a red finding naming it, never an escape."""
    try:
        if inspect.iscoroutinefunction(check.run):
            pending: Awaitable[Any] = check.run(ctx)
        else:
            # Blocking checks (SQLite, subprocess) run in threads so they overlap the rest.
            pending = asyncio.to_thread(check.run, ctx)
        result = await asyncio.wait_for(pending, ctx.env.check_timeout_s)
    except TimeoutError:
        return [
            Finding(
                check.name,
                Level.RED,
                f"the check did not finish within {ctx.env.check_timeout_s:g} s",
                "run hearth doctor again; if it hangs again, restart the hub (sudo reboot)",
                {"timeout_s": ctx.env.check_timeout_s},
            )
        ]
    except Exception as exc:
        return [
            Finding(
                check.name,
                Level.RED,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "this is a fault in hearth doctor: send the output of hearth doctor --json"
                " to the hub's support team",
                {"exception": type(exc).__name__, "message": str(exc)},
            )
        ]
    return result if isinstance(result, list) else [result]


async def run_checks(ctx: Context, checks: Sequence[Check] = CHECKS) -> Report:
    """Run the checks concurrently; findings come back in the checks' order."""
    chosen = [c for c in checks if ctx.config is not None or not c.needs_config]
    results = await asyncio.gather(*(_run_one(c, ctx) for c in chosen))
    return Report([f for findings in results for f in findings])


def config_finding(path: Path) -> tuple[HubConfig | None, Finding]:
    from hub.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        missing = exc.problems[:1] == ["no such file"]
        return None, Finding(
            "config",
            Level.RED,
            f"{path}: no such file" if missing else f"{path} has problems: {exc.problems[0]}",
            f"write one: hearth config init {path} (or run hearth setup)"
            if missing
            else f"fix them all (hearth config check {path} lists each one); the other"
            " checks need a valid config",
            {"path": str(path), "problems": exc.problems},
        )
    sensors = len(cfg.sensors)
    return cfg, Finding(
        "config",
        Level.GREEN,
        f"{path}: hub {cfg.hub.name!r}, {sensors} sensor(s)",
        None,
        {"path": str(path)},
    )


async def run_doctor(
    config_path: Path, env: Environment | None = None, checks: Sequence[Check] = CHECKS
) -> Report:
    """Read the config, then run every check that can run with what was read."""
    cfg, first = await asyncio.to_thread(config_finding, config_path)
    report = await run_checks(Context(cfg, config_path, env or Environment()), checks)
    return Report([first, *report.findings])
