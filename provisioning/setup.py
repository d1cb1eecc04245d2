"""`hearth setup`: the installer's guided session, as a library with injectable I/O.

A small step engine: each step is a function of a Session; after each one the progress is
written atomically to `<data_dir>/setup-state.json`, so a session cut off (Ctrl-C, a flat
battery, a dropped SSH link) continues at the first unfinished step. Every change to the
config goes through the same validated, atomic writers as the plain subcommands
(write_config, sensors.write_prepared), so whenever the session stops the config is valid.

The I/O is a Prompter: the terminal one uses plain input() (it works on any pseudo-terminal,
serial console or SSH session); the scripted one answers every question with its default
or the value given on the command line, for `--non-interactive` installs and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import tomli_w

from hub.config import (
    DEFAULT_DATA_DIR,
    ConfigError,
    HubConfig,
    RoomRole,
    SensorKind,
    load_config,
    parse_config,
    starter_config,
    write_config,
)
from hub.fsutil import atomic_write_text
from sync.deferred import (
    apply_enrollment,
    defer_enrollment,
    deferred_path,
)

if TYPE_CHECKING:
    from drivers.ble.scan import ScanResult
    from provisioning.doctor import Environment

STATE_FILENAME = "setup-state.json"
DEFAULT_ROOMS = "Living room, Kitchen, Bedroom, Bathroom, Hallway"

# Step status in the state file. "skipped" and "deferred" count as finished for resuming;
# the closing summary lists them with the command that completes them later.
DONE, SKIPPED, DEFERRED = "done", "skipped", "deferred"


class SetupStopped(Exception):
    """The session cannot go on here (a scripted install missing a value, a refused code);
    the message says what to do. Progress so far is saved."""


class Prompter(Protocol):
    """How the session talks to the installer."""

    interactive: bool

    def say(self, line: str = "") -> None: ...

    def ask(self, question: str, default: str) -> str: ...

    def confirm(self, question: str, default: bool) -> bool: ...


class TerminalPrompter:
    """Plain input(): no full-screen tricks, so it works on a pty, a serial line, over SSH."""

    interactive = True

    def __init__(
        self, write: Callable[[str], None] | None = None, read: Callable[[str], str] = input
    ) -> None:
        self._write = write or (lambda line: print(line, flush=True))
        self._read = read

    def say(self, line: str = "") -> None:
        self._write(line)

    def ask(self, question: str, default: str) -> str:
        shown = f" [{default}]" if default else ""
        try:
            answer = self._read(f"{question}{shown}: ").strip()
        except EOFError:
            raise SetupStopped(
                "the terminal closed; run hearth setup again to continue"
                " (or use --non-interactive with flags)"
            ) from None
        return answer or default

    def confirm(self, question: str, default: bool) -> bool:
        hint = "Y/n" if default else "y/N"
        while True:
            answer = self.ask(f"{question} ({hint})", "").lower()
            if not answer:
                return default
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self.say("please answer y or n")


class ScriptedPrompter:
    """Every question answered with its default: flags set those defaults."""

    interactive = False

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or (lambda line: print(line, flush=True))

    def say(self, line: str = "") -> None:
        self._write(line)

    def ask(self, question: str, default: str) -> str:
        self._write(f"{question}: {default}")
        return default

    def confirm(self, question: str, default: bool) -> bool:
        self._write(f"{question}: {'yes' if default else 'no'}")
        return default


# -- progress ------------------------------------------------------------------------------


@dataclass
class SetupState:
    """What the session has finished, kept beside the hub's data."""

    steps: dict[str, str] = field(default_factory=dict)  # step name -> done/skipped/deferred
    rooms: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # step name -> what is left to do
    updated_at: float | None = None

    @classmethod
    def load(cls, data_dir: Path) -> SetupState:
        try:
            raw = json.loads((data_dir / STATE_FILENAME).read_text("utf-8"))
        except (OSError, ValueError):
            return cls()  # none yet, or unreadable: starting again is safe (steps re-check)
        if not isinstance(raw, dict):
            return cls()
        steps = raw.get("steps") if isinstance(raw.get("steps"), dict) else {}
        rooms = raw.get("rooms") if isinstance(raw.get("rooms"), list) else []
        notes = raw.get("notes") if isinstance(raw.get("notes"), dict) else {}
        return cls(
            {str(k): str(v) for k, v in (steps or {}).items()},
            [str(r) for r in rooms or []],
            {str(k): str(v) for k, v in (notes or {}).items()},
            raw.get("updated_at"),
        )

    def save(self, data_dir: Path) -> None:
        self.updated_at = time.time()
        data_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "steps": self.steps,
            "rooms": self.rooms,
            "notes": self.notes,
            "updated_at": self.updated_at,
        }
        atomic_write_text(data_dir / STATE_FILENAME, json.dumps(record, indent=2) + "\n")


@dataclass
class Options:
    """Values given on the command line: defaults for the questions (and the answers, with
    --non-interactive)."""

    council_url: str | None = None
    code: str | None = None
    name: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    rooms: str | None = None
    cold_warning_c: float | None = None
    inactivity_day_hours: float | None = None
    scan_s: float = 8.0
    listen_s: float = 20.0
    gpio_wait_s: float = 30.0
    restart: bool = False
    no_service: bool = False


@dataclass
class Session:
    """One run of the session: where the config is, who answers, what is done so far."""

    config_path: Path
    io: Prompter
    options: Options = field(default_factory=Options)
    doctor_env: Environment | None = None
    state: SetupState = field(default_factory=SetupState)
    config: HubConfig | None = None

    @property
    def cfg(self) -> HubConfig:
        assert self.config is not None, "the config step runs first"
        return self.config

    def reload(self) -> HubConfig:
        self.config = load_config(self.config_path)
        return self.config

    def save(self) -> None:
        if self.config is not None:
            self.state.save(self.config.hub.data_dir)


Step = Callable[[Session], str]  # returns done/skipped/deferred


@dataclass(frozen=True)
class StepDef:
    name: str
    title: str
    run: Step


# -- step 1: the config --------------------------------------------------------------------


def step_config(s: Session) -> str:
    path = s.config_path
    if path.exists():
        s.reload()
        s.io.say(f"Using the config at {path} (hub '{s.cfg.hub.name}').")
        return DONE
    s.io.say(f"No config at {path} yet: making one.")
    name = s.io.ask("The home's name (shown to the council's team)", s.options.name or "")
    while not name.strip():
        if not s.io.interactive:
            name = socket.gethostname() or "hearth-hub"
            break
        name = s.io.ask("The home's name (it must not be empty)", socket.gethostname())
    data_dir = Path(s.io.ask("Where the hub keeps its data", str(s.options.data_dir)))
    config = starter_config(name.strip(), data_dir.absolute(), simulated=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_config(path, config)
    s.reload()
    s.io.say(f"Wrote {path}.")
    return DONE


# -- step 2: enrollment --------------------------------------------------------------------


def step_enroll(s: Session) -> str:
    from hub.identity import KEY_FILENAME
    from sync.enroll import EnrollError, enroll

    cfg = s.cfg
    if cfg.hub.id is not None and (cfg.hub.data_dir / KEY_FILENAME).exists():
        s.io.say(f"Already enrolled as {cfg.hub.id} with {cfg.council.url}.")
        return DONE
    default_url = s.options.council_url or (str(cfg.council.url) if cfg.council.url else "")
    while True:
        url = s.io.ask("The council's address (Enter: skip for now)", default_url).rstrip("/")
        if not url:
            s.state.notes["enroll"] = "enroll later: hearth enroll --council URL --code CODE"
            s.io.say("Skipped: enroll later with hearth enroll --council URL --code CODE.")
            return SKIPPED
        code = s.io.ask("The one-time enrollment code (XXXX-XXXX-XXXX)", s.options.code or "")
        if not code:
            if not s.io.interactive:
                raise SetupStopped("--code is needed with --council")
            s.io.say("The code is on the sheet from the council's team.")
            continue
        s.io.say(f"Enrolling with {url} ...")
        try:
            answer = enroll(
                url,
                code,
                cfg.hub.data_dir,
                name=cfg.hub.name,
                ca_bundle=cfg.council.ca_bundle,
                hub_id=cfg.hub.id,
                timeout_s=min(cfg.council.timeout_s, 15.0),
            )
        except EnrollError as exc:
            if exc.status is None and "no connection" in str(exc):
                defer_enrollment(cfg.hub.data_dir, url, code)
                s.io.say(f"No connection to {url}: enrollment deferred.")
                s.io.say("The hub service will enroll by itself when it gets a connection.")
                s.state.notes["enroll"] = (
                    "the hub service enrolls by itself once online (or run hearth enroll)"
                )
                return DEFERRED
            s.io.say(f"Not enrolled: {exc}")
            if not s.io.interactive:
                raise SetupStopped(f"enrollment refused: {exc}") from None
            default_url = url
            continue
        hub_id, problems = apply_enrollment(s.config_path, url, answer)
        s.reload()
        deferred_path(cfg.hub.data_dir).unlink(missing_ok=True)
        s.io.say(f"Enrolled as {hub_id}.")
        for problem in problems:
            s.io.say(f"warning: the council's settings were not applied: {problem}")
        return DONE


# -- step 3: rooms -------------------------------------------------------------------------


def split_rooms(text: str) -> list[str]:
    seen: dict[str, str] = {}
    for part in text.split(","):
        room = " ".join(part.split())
        if room and room.casefold() not in seen:
            seen[room.casefold()] = room
    return list(seen.values())


def step_rooms(s: Session) -> str:
    known = [sensor.room for sensor in s.cfg.sensors]
    default = s.options.rooms or ", ".join(split_rooms(", ".join(known))) or DEFAULT_ROOMS
    rooms = split_rooms(s.io.ask("The rooms, separated by commas", default))
    while not rooms:
        rooms = split_rooms(s.io.ask("At least one room, please", DEFAULT_ROOMS))
    s.state.rooms = rooms
    s.io.say(f"Rooms: {', '.join(rooms)}.")
    return DONE


_E = TypeVar("_E", RoomRole, SensorKind)

_ROLE_WORDS = (
    ("bed", RoomRole.BEDROOM),
    ("bath", RoomRole.BATHROOM),
    ("shower", RoomRole.BATHROOM),
    ("toilet", RoomRole.TOILET),
    ("wc", RoomRole.TOILET),
    ("kitchen", RoomRole.KITCHEN),
    ("living", RoomRole.LIVING_ROOM),
    ("lounge", RoomRole.LIVING_ROOM),
    ("sitting", RoomRole.LIVING_ROOM),
    ("hall", RoomRole.HALLWAY),
    ("door", RoomRole.EXIT_DOOR),
)


def guess_role(room: str) -> RoomRole:
    words = room.casefold()
    return next((role for word, role in _ROLE_WORDS if word in words), RoomRole.OTHER)


def _pick_room(s: Session, default: str | None = None) -> str:
    rooms = s.state.rooms or split_rooms(DEFAULT_ROOMS)
    s.io.say("  " + "  ".join(f"{i}) {room}" for i, room in enumerate(rooms, 1)))
    answer = s.io.ask("Room (number or name)", default or rooms[0])
    if answer.isdigit() and 1 <= int(answer) <= len(rooms):
        return rooms[int(answer) - 1]
    room = " ".join(answer.split())
    if room.casefold() not in {r.casefold() for r in rooms}:
        s.state.rooms.append(room)  # a room not named earlier: keep it for the next sensor
    return room


def _pick_enum(s: Session, question: str, choices: Sequence[_E], default: _E) -> _E:
    names = [c.value for c in choices]
    while True:
        answer = s.io.ask(f"{question} ({', '.join(names)})", default.value).strip().lower()
        if answer in names:
            return choices[names.index(answer)]
        s.io.say(f"please choose one of: {', '.join(names)}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "sensor"


def _free_id(s: Session, base: str) -> str:
    taken = {sensor.id for sensor in s.cfg.sensors}
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _add_sensor(s: Session, fields: dict[str, Any]) -> bool:
    """Validate and write one sensor; on a refusal, say why and return False."""
    from provisioning.sensors import SensorError, prepare_add, write_prepared

    try:
        write_prepared(prepare_add(s.config_path, fields))
    except SensorError as exc:
        for line in exc.lines:
            s.io.say(f"  not added: {line}")
        return False
    s.reload()
    s.io.say(f"  added {fields['id']} ({fields['kind']} in {fields['room']}).")
    return True


# -- step 4: Bluetooth sensors -------------------------------------------------------------


def guess_kind(values: dict[str, float]) -> SensorKind:
    if "contact" in values:
        return SensorKind.CONTACT
    if "motion" in values:
        return SensorKind.MOTION
    if "co2" in values or "pm25" in values:
        return SensorKind.AIR_QUALITY
    if "humidity" in values:
        return SensorKind.CLIMATE
    if "temperature" in values:
        return SensorKind.THERMOMETER
    return SensorKind.CLIMATE


def values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{q} {v:g}" for q, v in sorted(values.items())) or "no values yet"


def describe_device(i: int, r: ScanResult) -> str:
    what = r.family or "not a sensor the hub reads"
    lock = ", encrypted: needs its bindkey" if r.needs_bindkey else ""
    rssi = "" if r.rssi is None else f", {r.rssi} dBm"
    return f"  {i}) {r.address}  {r.name or '-'}  {what}{lock}{rssi}  {values_text(r.values)}"


def _scan(s: Session) -> list[ScanResult] | None:
    from drivers.ble.scan import BluetoothUnavailable, scan_nearby
    from drivers.ble.scanner import paired_devices

    paired = {d.address: d for d in paired_devices(s.cfg.sensors)}
    s.io.say(f"Scanning for {s.options.scan_s:g} s ...")
    try:
        found = asyncio.run(scan_nearby(s.options.scan_s, paired))
    except BluetoothUnavailable as exc:
        s.io.say(f"Bluetooth is not usable: {exc}")
        s.io.say("hearth doctor says how to fix it; pair later with hearth sensors add.")
        return None
    return [r for r in found if r.family is not None and not r.paired]


@contextlib.contextmanager
def _decoder_warnings_muted() -> Iterator[None]:
    """The decoder libraries log every advert a wrong key fails to open; the session says
    it once, in the installer's words (verify_hint), so their lines would only be noise."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _prove_bindkey(s: Session, address: str) -> str | None:
    """Ask for the bindkey until an advert decodes with it; None: the installer gave up."""
    from drivers.ble.scan import BluetoothUnavailable
    from provisioning.sensors import listen_for, verify_hint

    while True:
        key = s.io.ask("Its bindkey (32 hex digits; Enter: skip this sensor)", "")
        key = key.replace(" ", "").lower()
        if not key:
            return None
        if not re.fullmatch(r"[0-9a-f]{32}", key):
            s.io.say("  a bindkey is 32 hex digits (0-9, a-f)")
            continue
        s.io.say(f"  listening for {address} to check the key ...")
        try:
            with _decoder_warnings_muted():
                heard = asyncio.run(listen_for(address, bytes.fromhex(key), s.options.listen_s))
        except BluetoothUnavailable as exc:
            s.io.say(f"  Bluetooth is not usable: {exc}")
            return None
        if heard.decoded:
            s.io.say(f"  bindkey works: decoded {values_text(heard.values)}")
            return key
        for line in verify_hint(heard, s.options.listen_s, True):
            s.io.say(f"  {line}")


def _pair_one(s: Session, r: ScanResult) -> None:
    room = _pick_room(s)
    role = _pick_enum(s, "Role of the room", list(RoomRole), guess_role(room))
    kind = _pick_enum(s, "Kind of sensor", list(SensorKind), guess_kind(r.values))
    sensor_id = s.io.ask("Sensor id", _free_id(s, f"{_slug(room)}-{kind.value}"))
    fields: dict[str, Any] = {
        "id": sensor_id,
        "kind": kind.value,
        "room": room,
        "role": role.value,
        "source": "ble",
        "address": r.address,
    }
    if r.family is not None:
        fields["family"] = r.family
    if r.needs_bindkey:
        key = _prove_bindkey(s, r.address)
        if key is None:
            s.io.say(f"  {r.address} not added (no working bindkey).")
            return
        fields["bindkey"] = key
    _add_sensor(s, fields)


def step_ble(s: Session) -> str:
    if not s.io.interactive:
        s.io.say("Skipped (scripted): pair Bluetooth sensors with hearth sensors add.")
        s.state.notes["ble"] = "pair Bluetooth sensors: hearth sensors scan, then add"
        return SKIPPED
    if not s.io.confirm("Scan for Bluetooth sensors now?", True):
        s.state.notes["ble"] = "pair Bluetooth sensors later: hearth sensors scan, then add"
        return SKIPPED
    while True:
        found = _scan(s)
        if found is None:
            s.state.notes["ble"] = "Bluetooth was not usable: see hearth doctor"
            return SKIPPED
        if not found:
            s.io.say("No new sensors heard. Check their batteries and bring them closer.")
        for i, r in enumerate(found, 1):
            s.io.say(describe_device(i, r))
        choice = s.io.ask("Pair which one? (number; r: scan again; Enter: done)", "")
        if not choice:
            return DONE
        if choice.isdigit() and 1 <= int(choice) <= len(found):
            _pair_one(s, found[int(choice) - 1])
            s.save()
        elif choice.lower() != "r":
            s.io.say("  give a number from the list, r, or Enter")


# -- step 5: GPIO sensors ------------------------------------------------------------------


def try_gpio_sensor(s: Session, sensor_id: str) -> bool:
    """The live test: arm the pin, ask for the action, report seen or the hint."""
    from drivers.gpio import GpioUnavailable
    from provisioning.sensors import (
        SensorError,
        find_sensor,
        gpio_not_seen_hint,
        live_test_gpio,
        open_pin_factory,
    )

    sensor = find_sensor(s.cfg, sensor_id, s.config_path)
    try:
        factory, _why = open_pin_factory(s.cfg)
    except GpioUnavailable as exc:
        s.io.say(f"  GPIO is not usable: {exc}")
        return False
    try:
        result = live_test_gpio(
            sensor, s.options.gpio_wait_s, factory, on_armed=lambda p: s.io.say(f"  >>> {p}")
        )
    except SensorError as exc:
        for line in exc.lines:
            s.io.say(f"  {line}")
        return False
    finally:
        factory.close()
    if result.seen:
        s.io.say(f"  seen after {result.after_s or 0:.1f} s: {result.state_after}")
        return True
    s.io.say(f"  not seen within {s.options.gpio_wait_s:g} s")
    for line in gpio_not_seen_hint(sensor, result):
        s.io.say(f"  hint: {line}")
    return False


def step_gpio(s: Session) -> str:
    from provisioning.sensors import remove_sensor

    if not s.io.interactive:
        s.io.say("Skipped (scripted): add wired sensors with hearth sensors add --pin.")
        s.state.notes["gpio"] = "add wired sensors: hearth sensors add --pin, then test"
        return SKIPPED
    wired = (SensorKind.CONTACT, SensorKind.MOTION, SensorKind.BUTTON, SensorKind.PRESSURE_MAT)
    while s.io.confirm("Add a sensor wired to a GPIO pin?", False):
        pin = s.io.ask("GPIO number (BCM, e.g. 17 is header pin 11)", "17")
        if not pin.isdigit():
            s.io.say("  a GPIO number is a whole number, e.g. 17")
            continue
        kind = _pick_enum(s, "Kind of sensor", [*wired, SensorKind.LEAK], SensorKind.CONTACT)
        room = _pick_room(s)
        default_role = RoomRole.EXIT_DOOR if kind is SensorKind.CONTACT else guess_role(room)
        role = _pick_enum(s, "Role", list(RoomRole), default_role)
        sensor_id = s.io.ask("Sensor id", _free_id(s, f"{_slug(room)}-{kind.value}"))
        fields = {
            "id": sensor_id,
            "kind": kind.value,
            "room": room,
            "role": role.value,
            "source": "gpio",
            "pin": int(pin),
        }
        if not _add_sensor(s, fields):
            continue
        s.save()
        while not try_gpio_sensor(s, sensor_id):
            answer = s.io.ask("  t: test again, k: keep it untested, d: drop it", "k").lower()
            if answer.startswith("d"):
                remove_sensor(s.config_path, sensor_id, drop_room_checks=True)
                s.reload()
                s.io.say(f"  dropped {sensor_id}.")
                break
            if not answer.startswith("t"):
                s.io.say(f"  kept {sensor_id}; test it later: hearth sensors test {sensor_id}")
                break
    return DONE


# -- step 6: thresholds --------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    section: str
    key: str
    question: str

    def current(self, cfg: HubConfig) -> float:
        return float(getattr(getattr(cfg.checks, self.section), self.key))


THRESHOLDS = (
    Threshold("cold_home", "warning_below_c", "Cold home warning below (°C)"),
    Threshold("inactivity", "ceiling_day_hours", "No movement in the day for (hours)"),
)


def set_thresholds(config_path: Path, values: dict[Threshold, float]) -> HubConfig:
    """Apply changed thresholds through the config's own rules; ConfigError if refused."""
    data = tomllib.loads(config_path.read_text("utf-8").removeprefix("\ufeff"))
    checks = data.setdefault("checks", {})
    for t, value in values.items():
        checks.setdefault(t.section, {})[t.key] = value
    updated = parse_config(tomli_w.dumps(data), str(config_path), config_path.absolute().parent)
    write_config(config_path, updated)
    return updated


def step_thresholds(s: Session) -> str:
    given = {
        THRESHOLDS[0]: s.options.cold_warning_c,
        THRESHOLDS[1]: s.options.inactivity_day_hours,
    }
    if s.io.interactive and not s.io.confirm(
        "Change any alert thresholds from the defaults?", False
    ):
        return DONE
    while True:
        values: dict[Threshold, float] = {}
        for t in THRESHOLDS:
            wanted = given[t]
            default = wanted if wanted is not None else t.current(s.cfg)
            answer = s.io.ask(t.question, f"{default:g}")
            try:
                number = float(answer.replace(",", "."))
            except ValueError:
                s.io.say(f"  '{answer}' is not a number; kept {default:g}")
                number = default
            if number != t.current(s.cfg):
                values[t] = number
        if not values:
            s.io.say("All thresholds stay at their defaults.")
            return DONE
        try:
            s.config = set_thresholds(s.config_path, values)
        except ConfigError as exc:
            for problem in exc.problems:
                s.io.say(f"  not accepted: {problem}")
            if not s.io.interactive:
                raise SetupStopped(f"thresholds refused: {'; '.join(exc.problems)}") from None
            continue
        s.io.say("Thresholds saved: " + ", ".join(f"{t.key} {v:g}" for t, v in values.items()))
        return DONE


# -- step 7: doctor ------------------------------------------------------------------------


def step_doctor(s: Session) -> str:
    from provisioning.doctor import run_doctor

    report = asyncio.run(run_doctor(s.config_path, s.doctor_env))
    for finding in report.findings:
        mark = {"green": "ok  ", "amber": "WARN", "red": "FAIL"}[finding.level.value]
        s.io.say(f"  {mark} {finding.name}: {finding.summary}")
        if finding.fix:
            s.io.say(f"       -> {finding.fix}")
    s.io.say(f"Doctor overall: {report.level.value}.")
    if report.level.value == "red":
        s.io.say("Fix the FAIL lines before leaving the home, then check again: hearth doctor")
    return DONE


# -- step 8: the service -------------------------------------------------------------------


def service_blocker() -> str | None:
    """Why the service cannot be installed from here, or None."""
    import shutil

    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return "this machine does not run systemd"
    if os.geteuid() != 0:
        return "not root"
    return None


def step_service(s: Session) -> str:
    import typer

    from provisioning.service_cmd import DEFAULT_UNIT_DIR, DEFAULT_USER, install

    command = f"sudo hearth service install --config {s.config_path.absolute()}"
    blocker = "left for later (--no-service)" if s.options.no_service else service_blocker()
    if blocker is not None:
        s.io.say(f"Skipped the service: {blocker}. To install it: {command}")
        s.state.notes["service"] = f"install the service: {command}"
        return SKIPPED
    if not s.io.confirm("Install and start the hub service now?", True):
        s.state.notes["service"] = f"install the service: {command}"
        return SKIPPED
    try:
        install(
            config=s.config_path,
            user=DEFAULT_USER,
            unit_dir=DEFAULT_UNIT_DIR,
            no_start=False,
            hearth_bin=None,
        )
    except typer.Exit as exc:
        if exc.exit_code:
            s.io.say(f"The service was not installed; fix the above, then: {command}")
            s.state.notes["service"] = f"install the service: {command}"
            return SKIPPED
    return DONE


STEPS = (
    StepDef("config", "the config file", step_config),
    StepDef("enroll", "enroll with the council", step_enroll),
    StepDef("rooms", "name the rooms", step_rooms),
    StepDef("ble", "pair Bluetooth sensors", step_ble),
    StepDef("gpio", "wired (GPIO) sensors", step_gpio),
    StepDef("thresholds", "alert thresholds", step_thresholds),
    StepDef("doctor", "check everything (doctor)", step_doctor),
    StepDef("service", "install and start the service", step_service),
)


# -- the engine ----------------------------------------------------------------------------


def _existing_state(config_path: Path) -> SetupState:
    if not config_path.exists():
        return SetupState()
    try:
        cfg = load_config(config_path)
    except ConfigError:
        return SetupState()
    return SetupState.load(cfg.hub.data_dir)


def run_setup(session: Session, steps: Sequence[StepDef] = STEPS) -> int:
    """Run every unfinished step in order; returns the exit code (0 finished, 130 stopped
    by Ctrl-C, 2 stopped for another reason). The state is saved after every step."""
    s = session
    s.state = SetupState() if s.options.restart else _existing_state(s.config_path)
    finished = {name for name, status in s.state.steps.items() if status}
    pending = [st for st in steps if st.name not in finished]
    if not pending:
        s.io.say("Setup is already finished. (hearth setup --restart goes through it again.)")
        _summary(s, steps)
        return 0
    if finished:
        first = steps.index(pending[0]) + 1
        s.io.say(
            f"Resuming setup: continuing at step {first} of {len(steps)} ({pending[0].title})."
        )
    current = pending[0]
    try:
        if "config" in finished:
            s.reload()  # done earlier: only read it again
        for number, step in enumerate(steps, 1):
            if step.name in finished:
                continue
            current = step
            s.io.say("")
            s.io.say(f"== Step {number} of {len(steps)}: {step.title} ==")
            s.state.steps[step.name] = step.run(s)
            s.save()
    except KeyboardInterrupt:
        s.save()
        s.io.say("")
        s.io.say(
            f"Interrupted during '{current.title}'. The config is valid and the progress is"
            " saved: run hearth setup again to continue there."
        )
        return 130
    except SetupStopped as exc:
        s.save()
        s.io.say(f"Setup stopped at '{current.title}': {exc}")
        return 2
    except ConfigError as exc:
        s.save()
        s.io.say(f"Setup stopped at '{current.title}':")
        for problem in str(exc).splitlines():
            s.io.say(f"  {problem}")
        return 2
    s.io.say("")
    s.io.say("Setup finished.")
    _summary(s, steps)
    return 0


def _summary(s: Session, steps: Sequence[StepDef]) -> None:
    if s.config is None:
        return
    s.io.say(f"Hub '{s.cfg.hub.name}', {len(s.cfg.sensors)} sensor(s), config {s.config_path}.")
    for step in steps:
        status = s.state.steps.get(step.name)
        if status in (SKIPPED, DEFERRED):
            note = s.state.notes.get(step.name, "")
            s.io.say(f"  {step.title}: {status}{': ' + note if note else ''}")
