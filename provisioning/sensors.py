"""Adding, removing, listing and live-testing the hub's sensors: the library behind
`hearth sensors add|remove|list|test`, which `hearth setup` reuses step by step.

Every change goes through the config model (hub.config) and is written atomically with
write_config, so the file is either the old one or a new one that `hearth run` accepts. What
the installer gets wrong is a SensorError: plain lines naming the flag or field and the fix.
Heavy imports (gpiozero, bleak) happen inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import difflib
import sqlite3
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from hub.config import (
    ConfigError,
    HubConfig,
    PinFactoryChoice,
    RoomRole,
    SensorConfig,
    SensorKind,
    SensorSource,
    load_config,
    parse_config,
    write_config,
)

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from drivers.gpio.factory import PinFactory
    from drivers.gpio.spec import GpioSpec
    from provisioning.doctor import Heard

__all__ = [
    "GpioTestResult",
    "Listened",
    "PreparedAdd",
    "Removed",
    "SensorError",
    "SensorRow",
    "check_busy_hint",
    "describe_wiring",
    "find_sensor",
    "gpio_not_seen_hint",
    "gpio_prompt",
    "list_sensors",
    "listen_for",
    "live_test_gpio",
    "open_pin_factory",
    "prepare_add",
    "remove_sensor",
    "verify_hint",
    "write_prepared",
]


class SensorError(Exception):
    """A refusal the installer can act on: each line is shown as is, and nothing was written."""

    def __init__(self, *lines: str) -> None:
        super().__init__(*lines)
        self.lines = list(lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)


# -- add -----------------------------------------------------------------------------------

# The CLI flag for each sensor field, so a problem names what the installer typed.
_FLAGS = {
    "id": "--id",
    "kind": "--kind",
    "room": "--room",
    "role": "--role",
    "pin": "--pin",
    "pull_up": "--pull-up/--no-pull-up",
    "active_high": "--active-high/--active-low",
    "debounce_ms": "--debounce-ms",
    "hold_s": "--hold-s",
    "address": "--address",
    "family": "--family",
    "bindkey": "--bindkey",
}


@dataclass(frozen=True)
class PreparedAdd:
    """A validated new config, not yet written. `original` is the file as read, so a file
    changed by someone else meanwhile (a long bindkey check) is not overwritten."""

    path: Path
    config: HubConfig
    sensor: SensorConfig
    original: bytes


def _load(path: Path) -> tuple[HubConfig, bytes]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise SensorError(
            *str(exc).splitlines(),
            f"fix the file first (hearth config check {path}); nothing was changed",
        ) from None
    return config, path.read_bytes()


def _describe_sensor(sensor: SensorConfig) -> str:
    where = f"GPIO {sensor.pin}" if sensor.pin is not None else sensor.address or sensor.source
    return f"'{sensor.id}' ({sensor.kind.value} in {sensor.room}, {where})"


def _clash(config: HubConfig, fields: Mapping[str, Any]) -> str | None:
    """The first existing sensor the new one would collide with, in words."""
    new_id = fields.get("id")
    pin = fields.get("pin")
    address = str(fields.get("address") or "").strip().upper().replace("-", ":")
    for sensor in config.sensors:
        if sensor.id == new_id:
            return (
                f"--id: sensor id '{new_id}' is already used by {_describe_sensor(sensor)}; pick"
                f" another id, or remove that sensor first (hearth sensors remove {sensor.id})"
            )
        if pin is not None and sensor.pin == pin:
            return (
                f"--pin: GPIO {pin} is already used by {_describe_sensor(sensor)}; one pin reads"
                " one sensor: wire this one to a free pin"
            )
        if address and sensor.address == address:
            return (
                f"--address: {address} is already paired as {_describe_sensor(sensor)};"
                f" to move it, remove it first (hearth sensors remove {sensor.id})"
            )
    return None


def prepare_add(path: Path, fields: Mapping[str, Any]) -> PreparedAdd:
    """Validate a new sensor against the whole config (its rules and its neighbours).

    `fields` are the sensor's keys as in the file (source included), only those given: a
    wiring field given for the wrong source must be refused, not defaulted.
    """
    path = Path(path)
    config, original = _load(path)
    clash = _clash(config, fields)
    if clash is not None:
        raise SensorError(clash)
    # The file's own data plus the new table, validated by the same parser as `hearth run`.
    data = tomllib.loads(original.decode("utf-8").removeprefix("\ufeff"))
    sensors = data.setdefault("sensors", [])
    index = len(sensors)
    sensors.append(dict(fields))
    try:
        updated = parse_config(tomli_w.dumps(data), str(path), path.absolute().parent)
    except ConfigError as exc:
        raise SensorError(*_flag_problems(exc.problems, index, fields)) from None
    return PreparedAdd(path, updated, updated.sensors[index], original)


def _flag_problems(problems: list[str], index: int, fields: Mapping[str, Any]) -> list[str]:
    prefix = f"sensors[{index}]."
    lines = []
    for problem in problems:
        if problem.startswith(prefix):
            name, _, message = problem.removeprefix(prefix).partition(": ")
            if name == "source":  # "a climate sensor cannot be wired to GPIO"
                name = "pin" if fields.get("source") == SensorSource.GPIO else "address"
            lines.append(f"{_FLAGS.get(name, name)}: {message}")
        else:
            lines.append(problem)
    return lines


def write_prepared(prepared: PreparedAdd) -> None:
    """Write the new config atomically (keeping the file's mode; a bindkey file is never
    world-readable), unless the file changed since it was read."""
    _write_if_unchanged(prepared.path, prepared.config, prepared.original)


def _write_if_unchanged(path: Path, config: HubConfig, original: bytes) -> None:
    try:
        now = path.read_bytes()
    except OSError as exc:
        raise SensorError(f"{path}: cannot read the file again: {exc.strerror or exc}") from None
    if now != original:
        raise SensorError(
            f"{path}: the file was changed by something else meanwhile; nothing was written,"
            " run the command again"
        )
    try:
        write_config(path, config)
    except ConfigError as exc:  # a rule the per-sensor checks missed: still never written
        raise SensorError(*str(exc).splitlines()) from None
    except OSError as exc:
        raise SensorError(f"{path}: cannot write the file: {exc.strerror or exc}") from None


# -- remove --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    sensor: SensorConfig
    dropped_room_checks: tuple[str, ...]  # rooms whose check overrides went with it


def find_sensor(config: HubConfig, sensor_id: str, path: Path) -> SensorConfig:
    """The sensor with this id, or a SensorError listing the ids there are."""
    for sensor in config.sensors:
        if sensor.id == sensor_id:
            return sensor
    ids = [s.id for s in config.sensors]
    message = f"no sensor '{sensor_id}' in {path}"
    close = difflib.get_close_matches(sensor_id, ids, n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return_hint = f"sensors: {', '.join(ids)}" if ids else "it has no sensors"
    raise SensorError(message, f"{return_hint} (hearth sensors list)")


def remove_sensor(path: Path, sensor_id: str, *, drop_room_checks: bool = False) -> Removed:
    """Remove a sensor. If it was the last one in a room that has its own check settings,
    refuse (those settings would be lost) unless `drop_room_checks`."""
    path = Path(path)
    config, original = _load(path)
    sensor = find_sensor(config, sensor_id, path)
    remaining = tuple(s for s in config.sensors if s.id != sensor_id)
    rooms_left = {s.room for s in remaining}
    orphaned = tuple(room for room in config.checks.rooms if room not in rooms_left)
    if orphaned and not drop_room_checks:
        quoted = ", ".join(f"'{room}'" for room in orphaned)
        raise SensorError(
            f"'{sensor_id}' is the last sensor in {quoted}, which has its own check settings"
            f' ([checks.rooms."{orphaned[0]}"]); nothing was changed',
            "to replace the sensor, add the new one first and then remove this one; to remove"
            " the room's settings too, run again with --drop-room-checks",
        )
    rooms = {room: checks for room, checks in config.checks.rooms.items() if room in rooms_left}
    updated = config.model_copy(
        update={
            "sensors": remaining,
            "checks": config.checks.model_copy(update={"rooms": rooms}),
        }
    )
    _write_if_unchanged(path, updated, original)
    return Removed(sensor, orphaned)


# -- list ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorRow:
    """One sensor as `hearth sensors list` shows it. Never carries the bindkey itself."""

    id: str
    kind: str
    room: str
    role: str
    source: str
    where: str | None  # "GPIO 17" or the Bluetooth address
    family: str | None
    bindkey_set: bool
    last_heard: float | None  # wall-clock time of its newest reading in the buffer
    battery: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "room": self.room,
            "role": self.role,
            "source": self.source,
            "pin": int(self.where.split()[1]) if self.source == "gpio" and self.where else None,
            "address": self.where if self.source == "ble" else None,
            "family": self.family,
            "bindkey_set": self.bindkey_set,
            "last_heard": self.last_heard,
            "battery": self.battery,
        }


def list_sensors(config: HubConfig) -> tuple[list[SensorRow], str | None]:
    """The configured sensors with what the buffer last heard from each, and a note when the
    buffer could not be read. The buffer is opened read-only: the hub may be running."""
    heard, note = _heard(config)
    rows = []
    for s in config.sensors:
        where = f"GPIO {s.pin}" if s.pin is not None else s.address
        h = heard.get(s.id)
        rows.append(
            SensorRow(
                s.id,
                s.kind.value,
                s.room,
                s.role.value,
                s.source.value,
                where,
                None if s.family is None else s.family.value,
                s.bindkey is not None,
                None if h is None else h.last_seen,
                None if h is None else h.battery,
            )
        )
    return rows, note


def _heard(config: HubConfig) -> tuple[dict[str, Heard], str | None]:
    from provisioning.doctor import connect_readonly, latest_by_sensor

    path = config.store_path
    if not config.sensors:
        return {}, None
    if not path.exists():
        return {}, f"no buffer yet at {path}: the hub has not run, so no sensor has been heard"
    try:
        conn = connect_readonly(path)
        try:
            return latest_by_sensor(conn, [s.id for s in config.sensors]), None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {}, f"cannot read the buffer at {path} ({exc}): last heard is not shown"


# -- live test: GPIO -----------------------------------------------------------------------

# The Pi's 40-pin header: physical pin of each BCM GPIO number, so a hint can say where to
# look. (gpiozero knows this only through a board's info, which mock pins do not share.)
_HEADER_PIN = {
    0: 27, 1: 28, 2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23,
    12: 32, 13: 33, 14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15,
    23: 16, 24: 18, 25: 22, 26: 37, 27: 13,
}  # fmt: skip

_ACTIVE_WORD = {
    SensorKind.MOTION: ("motion", "no motion"),
    SensorKind.CONTACT: ("open", "closed"),
    SensorKind.BUTTON: ("pulled", "released"),
    SensorKind.PRESSURE_MAT: ("occupied", "empty"),
    SensorKind.LEAK: ("wet", "dry"),
}


def gpio_prompt(sensor: SensorConfig) -> str:
    """What the installer should do so the sensor changes state, in their words."""
    kind = sensor.kind
    if kind is SensorKind.CONTACT:
        if sensor.role is RoomRole.EXIT_DOOR:
            return "Open the front door now."
        return f"Open the door or window that {sensor.id} ({sensor.room}) is fitted to now."
    if kind is SensorKind.BUTTON:
        return f"Pull the cord (or press the button) of {sensor.id} ({sensor.room}) now."
    if kind is SensorKind.MOTION:
        return f"Walk past the motion sensor in {sensor.room} now."
    if kind is SensorKind.PRESSURE_MAT:
        return f"Step or sit on the pressure mat in {sensor.room} now."
    return f"Touch the leak probe in {sensor.room} with a damp cloth now."


def describe_wiring(spec: GpioSpec) -> str:
    header = _HEADER_PIN.get(spec.pin)
    where = f"GPIO {spec.pin}" + (f" (header pin {header})" if header else "")
    pull = "pull-up" if spec.pull_up else "pull-down"
    return f"{where}, {pull}, active {'high' if spec.active_high else 'low'}"


def open_pin_factory(config: HubConfig) -> tuple[PinFactory, str]:
    """The pins the hub itself would use (the config's gpio.pin_factory), and why."""
    from drivers.gpio.factory import choose_pin_factory

    choice = config.gpio.pin_factory
    mock = None if choice is PinFactoryChoice.AUTO else choice is PinFactoryChoice.MOCK
    return choose_pin_factory(mock)


@dataclass(frozen=True)
class GpioTestResult:
    seen: bool
    after_s: float | None  # from the prompt to the first debounced change
    level_before: bool  # the line's level when the test started (True: high)
    level_after: bool  # after the change, or at the end of the wait
    state_after: str  # "open", "closed", "motion"... for level_after

    @property
    def level_word(self) -> str:
        return "high" if self.level_after else "low"


def live_test_gpio(
    sensor: SensorConfig,
    seconds: float,
    factory: PinFactory,
    on_armed: Callable[[str], None],
) -> GpioTestResult:
    """Watch the sensor's pin for one debounced change. `on_armed(prompt)` is called once the
    pin is watched (so the installer's action cannot be missed); then wait up to `seconds`.

    Raises SensorError when the pin cannot be opened (busy: the hub service holds it)."""
    from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]

    from drivers.gpio.spec import GpioSpec

    spec = GpioSpec.from_config(sensor)
    try:
        device = DigitalInputDevice(
            spec.pin, pull_up=spec.pull_up, bounce_time=spec.debounce_s, pin_factory=factory
        )
    except Exception as exc:
        raise SensorError(*check_busy_hint(spec.pin, exc)) from None
    changed = threading.Event()
    try:
        before = bool(device.pin.state)  # the raw level: True is high
        device.when_activated = changed.set
        device.when_deactivated = changed.set
        start = time.monotonic()
        on_armed(gpio_prompt(sensor))
        seen = changed.wait(seconds)
        after_s = time.monotonic() - start if seen else None
        after = bool(device.pin.state)
    finally:
        device.close()
    if seen and after == before:  # changed and changed back within the debounce: still seen
        after = not before
    active_word, idle_word = _ACTIVE_WORD[sensor.kind]
    state = active_word if after == spec.active_high else idle_word
    return GpioTestResult(seen, after_s, before, after, state)


def check_busy_hint(pin: int, exc: BaseException) -> list[str]:
    """Why a pin could not be opened, for the installer."""
    text = f"{type(exc).__name__}: {exc}"
    if "busy" in text.lower() or "in use" in text.lower() or "InUse" in text:
        return [
            f"GPIO {pin} is busy: the hub service is probably reading it right now ({exc})",
            "stop the service for the test (sudo systemctl stop hearth), run the test again,"
            " then start it (sudo systemctl start hearth)",
        ]
    return [f"cannot open GPIO {pin}: {text}"]


def gpio_not_seen_hint(sensor: SensorConfig, result: GpioTestResult) -> list[str]:
    """Why no change was seen, judged from where the line sat the whole time."""
    from drivers.gpio.spec import GpioSpec

    spec = GpioSpec.from_config(sensor)
    level = result.level_word
    pulled_level = spec.pull_up  # where the resistor takes a line nothing drives
    lines = [f"the line stayed {level} ({result.state_after}) the whole time"]
    if result.level_after == pulled_level:
        lines.append(
            f"{level} is where the {'pull-up' if spec.pull_up else 'pull-down'} holds a line"
            f" nothing drives: check the sensor is wired to GPIO {spec.pin}"
            f" (BCM numbering; header pin {_HEADER_PIN.get(spec.pin, '?')}) and to"
            f" {'ground' if spec.pull_up else '3.3 V'}, and that no wire is loose"
        )
    else:
        lines.append(
            f"something holds the line {level} against the"
            f" {'pull-up' if spec.pull_up else 'pull-down'}: the switch may be stuck"
            f" {'closed' if spec.pull_up else 'open'} or the wire shorted, or the sensor needs"
            f" {'--pull-down' if spec.pull_up else '--pull-up'}"
        )
    if sensor.kind is SensorKind.MOTION:
        lines.append(
            "a PIR sensor needs up to a minute after power-on, and stays triggered for its"
            " hold time: wait for it to settle, then walk past again"
        )
    return lines


# -- live test and bindkey check: BLE ------------------------------------------------------


@dataclass
class Listened:
    """What was heard from one address while listening."""

    address: str
    adverts: int = 0
    rssi: int | None = None
    name: str | None = None
    family: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    decoded: bool = False  # an advert decoded to values (with the key, if encrypted)
    needs_bindkey: bool = False  # encrypted adverts heard that the key did not open
    after_s: float | None = None  # when the first decoded advert arrived

    @property
    def battery(self) -> float | None:
        return self.values.get("battery")

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "adverts": self.adverts,
            "rssi": self.rssi,
            "name": self.name,
            "family": self.family,
            "values": dict(self.values),
            "decoded": self.decoded,
            "needs_bindkey": self.needs_bindkey,
            "after_s": self.after_s,
        }


async def listen_for(
    address: str,
    bindkey: bytes | None,
    seconds: float,
    *,
    adapter: str | None = None,
    timeout_s: float = 20.0,
) -> Listened:
    """Scan until an advert from `address` decodes (with `bindkey` if given), or `seconds`
    pass. Scanning beside the running hub is fine: BlueZ shares the adapter between clients.

    Raises BluetoothUnavailable (one line) when there is no bus, BlueZ or adapter.
    """
    from drivers.ble.decoders import decode_once
    from drivers.ble.scanner import (
        ACTIVE,
        BluetoothUnavailable,
        BluezWatch,
        plan_scan,
        start_scanner,
        stop_scanner,
    )

    want = address.upper()
    result = Listened(want)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        if device.address.upper() != want or result.decoded:
            return
        result.adverts += 1
        result.rssi = adv.rssi
        result.name = adv.local_name or result.name
        decoded = decode_once(
            want,
            adv.local_name,
            adv.rssi,
            adv.manufacturer_data,
            adv.service_data,
            adv.service_uuids,
            bindkey=bindkey,
        )
        if decoded is None:
            return
        result.family = decoded.family
        result.needs_bindkey = result.needs_bindkey or decoded.needs_bindkey
        if decoded.values and not decoded.needs_bindkey:
            result.values = {str(q): float(v) for q, v in decoded.values.items()}
            result.decoded = True
            result.after_s = loop.time() - start
            done.set()

    watch = await BluezWatch.open(adapter)
    try:
        started = await start_scanner(heard, plan_scan(ACTIVE, [None]), watch.adapter, timeout_s)
        try:
            trouble = asyncio.ensure_future(watch.trouble())
            finished = asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait(
                    {trouble, finished}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                trouble.cancel()
                finished.cancel()
            if trouble.done() and not trouble.cancelled() and not result.decoded:
                raise BluetoothUnavailable(f"{trouble.result()} while listening")
        finally:
            await stop_scanner(started.scanner, timeout_s)
    finally:
        watch.close()
    return result


def verify_hint(listened: Listened, seconds: float, encrypted_key_given: bool) -> list[str]:
    """Why nothing usable was heard from the address, for the installer."""
    address = listened.address
    if listened.adverts == 0:
        return [
            f"nothing heard from {address} in {seconds:g} s",
            "check the address (hearth sensors scan lists what is nearby), that the sensor has"
            " a battery in and is advertising (some only start after a button press), and that"
            " it is within range: bring it next to the hub and try again",
        ]
    if listened.needs_bindkey:
        if encrypted_key_given:
            return [
                f"heard {listened.adverts} encrypted advert(s) from {address} but the bindkey"
                " does not decrypt them: the key is wrong",
                "check the 32 hex digits against the sensor's label or the app that set it"
                " (a sensor reset or re-flashed gets a new key)",
            ]
        return [
            f"{address} encrypts its adverts and no bindkey is configured for it",
            "add it again with --bindkey (32 hex digits from the sensor's label or app)",
        ]
    if listened.family is None:
        return [
            f"heard {listened.adverts} advert(s) from {address}, but not from a sensor the hub"
            " can read (BTHome, Xiaomi, Govee or RuuviTag)",
            "check the address: hearth sensors scan shows which nearby devices are recognised",
        ]
    return [
        f"heard {listened.adverts} {listened.family} advert(s) from {address} with no values"
        " in them yet",
        "wait for the sensor's next reading (or press its button) and try again",
    ]
