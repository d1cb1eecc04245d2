"""The hub's one configuration file (TOML), validated before anything else runs.

An installer edits this file in a resident's home, usually without a developer to ask, so a bad
file must never produce a traceback: every problem is reported at once, one line each, naming
the key that is wrong and what would be right. Unknown keys are errors, because a misspelt
threshold that silently falls back to its default is worse than a refusal to start.
"""

import datetime as dt
import difflib
import enum
import re
import stat
import tomllib
import zoneinfo
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Self, get_args, get_origin
from urllib.parse import urlsplit

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from hub.fsutil import atomic_write_text

__all__ = [
    "COUNCIL_MANAGED",
    "GPIO_KINDS",
    "BleFamily",
    "ChecksSection",
    "ColdHomeCheck",
    "ConfigError",
    "CouncilSection",
    "DampCheck",
    "HubConfig",
    "HubSection",
    "InactivityCheck",
    "LearningSettings",
    "NightWindow",
    "OutOfBedCheck",
    "OverheatingCheck",
    "Pm25Check",
    "RoomChecks",
    "RoomRole",
    "SensorConfig",
    "SensorKind",
    "SensorSilentCheck",
    "SensorSource",
    "StoreSection",
    "VentilationCheck",
    "load_config",
    "parse_clock_time",
    "parse_config",
    "starter_config",
    "with_council_config",
    "write_config",
]

DEFAULT_DATA_DIR = Path("/var/lib/hearth")

# A problem found by a cross-field rule: location relative to the model that found it.
_Loc = tuple[str | int, ...]
_Problem = tuple[_Loc, str]

# Custom pydantic error types. `_INVALID` carries a message meant to be shown verbatim;
# `_RULES` carries several (location, message) pairs found by one model-level rule check, so
# that every broken rule gets its own line with its own precise location.
_INVALID = "hearth_invalid"
_RULES = "hearth_rules"

_HEADER = (
    "# Hearth hub configuration.\n"
    "# Check it after every edit with: hearth config check <this file>\n"
    "# (Comments added here are not kept when the hub rewrites the file.)\n\n"
)


class ConfigError(Exception):
    """Carries every problem found, so an installer can fix them all in one pass."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        super().__init__(source, list(problems))
        self.source = source
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


# --- small validators shared by the models ------------------------------------------------


def _invalid(message: str) -> PydanticCustomError:
    # A template of "{message}" keeps braces in user input from being read as placeholders.
    return PydanticCustomError(_INVALID, "{message}", {"message": message})


def _raise_problems(problems: list[_Problem]) -> None:
    if problems:
        summary = "; ".join(_join_location(loc, message) for loc, message in problems)
        raise PydanticCustomError(_RULES, "{summary}", {"summary": summary, "problems": problems})


def _non_blank(value: str) -> str:
    if not value.strip():
        raise _invalid("must not be empty")
    return value


_HUB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SENSOR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_GPIO_PINS = range(28)


def _check_hub_id(value: str) -> str:
    if not _HUB_ID.fullmatch(value):
        raise _invalid(f"{value!r} is not a valid hub id: use 1-64 letters, digits, '-' or '_'")
    return value


def _check_sensor_id(value: str) -> str:
    if not _SENSOR_ID.fullmatch(value):
        raise _invalid(
            f"{value!r} is not a valid sensor id: use 1-40 lower-case letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        message = f"{value!r} is not a known time zone"
        close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        raise _invalid(message) from None
    return value


def _check_url(value: str) -> str:
    """The council's address. Plain http only on loopback (a council on this very machine, or
    a test): anywhere else an on-path attacker could forge acknowledgements (events marked
    synced that never arrived) or push configs. No query or fragment: the uploader appends
    API paths, and what it signs must be exactly the path it sends."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise _invalid(f"{value!r} is not a valid web address") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid(f"{value!r} is not a web address: it must start with https:// or http://")
    if not host:
        raise _invalid(f"{value!r} has no host name after {parts.scheme}://")
    if parts.scheme == "http" and host.lower() not in ("127.0.0.1", "::1", "localhost"):
        raise _invalid(
            f"{value!r} is not encrypted: use https://; plain http:// is allowed only for a"
            " council on this machine (127.0.0.1, ::1 or localhost)"
        )
    if parts.query or parts.fragment or value.rstrip().endswith(("?", "#")):
        raise _invalid(f"{value!r} has a query or fragment ('?' or '#'): give the address only")
    return value


def parse_clock_time(text: str) -> dt.time:
    """Parse an "HH:MM" config value; checks use this so every window means the same thing."""
    match = _CLOCK.fullmatch(text.strip())
    if match:
        hour, minute = int(match[1]), int(match[2])
        if hour < 24 and minute < 60:
            return dt.time(hour, minute)
    raise ValueError(f"{text!r} is not a time of day: use 24-hour HH:MM, e.g. '22:00'")


def _clock_from_toml(value: object) -> object:
    # TOML has a native local-time type (22:00:00); accept it rather than confuse the installer.
    if isinstance(value, dt.time):
        if value.second or value.microsecond or value.tzinfo is not None:
            raise _invalid(f"{value.isoformat()} is not a whole minute: use HH:MM, e.g. '22:00'")
        return value.strftime("%H:%M")
    return value


def _check_clock_time(value: str) -> str:
    try:
        return parse_clock_time(value).strftime("%H:%M")
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _check_pin(value: int) -> int:
    if value not in _GPIO_PINS:
        raise _invalid(f"{value} is not a GPIO pin on a Raspberry Pi (0-27)")
    return value


def _check_mac(value: str) -> str:
    if not _MAC.fullmatch(value.strip()):
        raise _invalid(
            f"{value!r} is not a Bluetooth address: expected six pairs of hex digits"
            " like 'A4:C1:38:12:34:56'"
        )
    return value.strip().upper().replace("-", ":")


def _check_bindkey(value: str) -> str:
    # The key is a secret: describe what is wrong with it without echoing it.
    if not _HEX.fullmatch(value):
        raise _invalid("must contain only hexadecimal characters (0-9, a-f)")
    if len(value) != 32:
        raise _invalid(f"must be exactly 32 hexadecimal characters, got {len(value)}")
    return value.lower()


def _reject_empty_path(value: object) -> object:
    # pydantic would turn "" into Path("."), silently meaning "the config file's directory".
    if isinstance(value, str) and not value.strip():
        raise _invalid("must not be empty")
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if base_dir is not None and not value.is_absolute():
        return Path(base_dir) / value
    return value


# TOML already says what type a value is, so no silent coercion ("30" is not 30, true is not 1).
_Int = Annotated[int, Strict()]
_Float = Annotated[float, Strict()]  # a whole number is still accepted where a float is wanted
_Bool = Annotated[bool, Strict()]
_NonBlank = Annotated[str, AfterValidator(_non_blank)]
_ClockTime = Annotated[str, BeforeValidator(_clock_from_toml), AfterValidator(_check_clock_time)]
_ConfigPath = Annotated[Path, BeforeValidator(_reject_empty_path)]


class _Section(BaseModel):
    """Frozen, so a running service cannot drift from the file it was started with."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- sections -----------------------------------------------------------------------------


class HubSection(_Section):
    name: _NonBlank
    # Set by enrollment; absent until then.
    id: Annotated[str, AfterValidator(_check_hub_id)] | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Europe/London"
    data_dir: _ConfigPath = DEFAULT_DATA_DIR

    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_path(value, info)


class CouncilSection(_Section):
    url: Annotated[str, AfterValidator(_check_url)] | None = None
    ca_bundle: _ConfigPath | None = None
    # The version of the council-managed sections (COUNCIL_MANAGED) last applied to this file.
    config_version: Annotated[_Int, Field(ge=0)] = 0
    # The uploader: how often it tries when nothing urgent is waiting (an alert is sent at
    # once), how big a batch may be, the longest wait between retries, a request's timeout,
    # and an optional bandwidth cap for metered links (KiB/s of request bodies).
    sync_interval_s: Annotated[_Float, Field(ge=1, le=86_400)] = 60.0
    batch_max_events: Annotated[_Int, Field(ge=1, le=5000)] = 500
    batch_max_kib: Annotated[_Int, Field(ge=4, le=1024)] = 256
    retry_max_s: Annotated[_Float, Field(ge=1, le=86_400)] = 300.0
    timeout_s: Annotated[_Float, Field(ge=1, le=600)] = 30.0
    bandwidth_kib_s: Annotated[_Float, Field(gt=0, le=1_000_000)] | None = None

    @field_validator("ca_bundle")
    @classmethod
    def _resolve_ca_bundle(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(value, info)


class StoreSection(_Section):
    path: _NonBlank = "hearth.db"  # relative to hub.data_dir
    quota_mb: Annotated[_Float, Field(ge=1, le=1_000_000)] = 512.0
    retention_days: Annotated[_Int, Field(ge=1, le=3650)] = 30
    # How long routine readings may wait in memory before a group commit (alerts never wait).
    commit_interval_s: Annotated[_Float, Field(ge=0.01, le=5.0)] = 1.0


class ScanMode(enum.StrEnum):
    PASSIVE = "passive"  # listen only: saves the sensors' batteries; needs BlueZ monitors
    ACTIVE = "active"  # ask for scan responses: some families (Govee) need it


class BleSection(_Section):
    scan_mode: ScanMode = ScanMode.PASSIVE
    # No advert from anyone for this long: restart scanning (a wedged adapter or BlueZ).
    restart_after_silence_min: Annotated[_Float, Field(ge=1, le=1440)] = 10.0


class PinFactoryChoice(enum.StrEnum):
    AUTO = "auto"  # lgpio where the machine has a GPIO chip, mock pins where it has none
    LGPIO = "lgpio"
    MOCK = "mock"  # for demos and bench tests: no pin is read


class GpioSection(_Section):
    pin_factory: PinFactoryChoice = PinFactoryChoice.AUTO


class Deadbands(_Section):
    """A new value is stored when it differs from the last stored one by at least this much
    (binary states are stored on every change)."""

    temperature: Annotated[_Float, Field(ge=0, le=10)] = 0.2
    humidity: Annotated[_Float, Field(ge=0, le=50)] = 1.0
    co2: Annotated[_Float, Field(ge=0, le=1000)] = 25.0
    pm25: Annotated[_Float, Field(ge=0, le=100)] = 1.0
    pressure: Annotated[_Float, Field(ge=0, le=100)] = 0.5
    illuminance: Annotated[_Float, Field(ge=0, le=10_000)] = 10.0
    battery: Annotated[_Float, Field(ge=0, le=100)] = 1.0
    voltage: Annotated[_Float, Field(ge=0, le=10)] = 0.05
    rssi: Annotated[_Float, Field(ge=0, le=100)] = 10.0


class ReportSection(_Section):
    """How often sensor values reach the buffer: a thermometer advertising every 2 s must
    not write 43,000 rows a day, yet a quiet sensor must still be heard from."""

    heartbeat_min: Annotated[_Float, Field(ge=1, le=1440)] = 15.0
    deadband: Deadbands = Field(default_factory=Deadbands)


class SensorKind(enum.StrEnum):
    MOTION = "motion"
    CONTACT = "contact"
    BUTTON = "button"
    PRESSURE_MAT = "pressure_mat"
    LEAK = "leak"
    CLIMATE = "climate"
    AIR_QUALITY = "air_quality"
    THERMOMETER = "thermometer"


class RoomRole(enum.StrEnum):
    BEDROOM = "bedroom"
    BATHROOM = "bathroom"
    TOILET = "toilet"
    KITCHEN = "kitchen"
    LIVING_ROOM = "living_room"
    HALLWAY = "hallway"
    EXIT_DOOR = "exit_door"
    OTHER = "other"


class SensorSource(enum.StrEnum):
    GPIO = "gpio"
    BLE = "ble"
    SIMULATED = "simulated"
    REPLAY = "replay"  # recorded data played by `hearth replay`; not read by `hearth run`


class BleFamily(enum.StrEnum):
    BTHOME = "bthome"
    XIAOMI = "xiaomi"
    GOVEE = "govee"
    RUUVITAG = "ruuvitag"


# Kinds that are a simple on/off signal on one wire; the rest need a BLE (or simulated) sensor.
GPIO_KINDS = frozenset(
    {
        SensorKind.MOTION,
        SensorKind.CONTACT,
        SensorKind.BUTTON,
        SensorKind.PRESSURE_MAT,
        SensorKind.LEAK,
    }
)
_GPIO_ONLY_FIELDS = ("pin", "pull_up", "active_high", "debounce_ms", "hold_s")
_BLE_ONLY_FIELDS = ("address", "family", "bindkey")
_ENCRYPTING_FAMILIES = frozenset({BleFamily.BTHOME, BleFamily.XIAOMI})


class SensorConfig(_Section):
    id: Annotated[str, AfterValidator(_check_sensor_id)]
    kind: SensorKind
    room: _NonBlank
    role: RoomRole = RoomRole.OTHER
    source: SensorSource

    # GPIO wiring (BCM numbering).
    pin: Annotated[_Int, AfterValidator(_check_pin)] | None = None
    pull_up: _Bool = True
    active_high: _Bool | None = None  # None: let the driver decide from pull_up
    debounce_ms: Annotated[_Int, Field(ge=0, le=5000)] = 50
    hold_s: Annotated[_Float, Field(ge=0, le=30)] | None = None  # buttons: long-press time

    # BLE.
    address: Annotated[str, AfterValidator(_check_mac)] | None = None
    family: BleFamily | None = None  # None: let the scanner recognise the advertisement
    bindkey: Annotated[str, AfterValidator(_check_bindkey)] | None = None

    @model_validator(mode="after")
    def _check_source_fields(self) -> Self:
        _raise_problems(list(self._source_problems()))
        return self

    def _source_problems(self) -> Iterator[_Problem]:
        source = self.source
        reported: set[str] = set()
        if source is SensorSource.GPIO:
            if self.pin is None:
                yield (
                    ("pin",),
                    "required when source is 'gpio' (the GPIO number the sensor is wired to, 0-27)",
                )
            if self.kind not in GPIO_KINDS:
                kinds = ", ".join(kind.value for kind in SensorKind if kind in GPIO_KINDS)
                yield (
                    ("source",),
                    f"a {self.kind} sensor cannot be wired to GPIO (gpio is only for: {kinds})",
                )
        else:
            for name in _GPIO_ONLY_FIELDS:
                if name in self.model_fields_set:
                    reported.add(name)
                    yield (
                        (name,),
                        f"only applies when source is 'gpio' (this sensor's source is '{source}')",
                    )
        if source is SensorSource.BLE:
            if self.address is None:
                yield (
                    ("address",),
                    "required when source is 'ble' (the sensor's Bluetooth address,"
                    " like 'A4:C1:38:12:34:56')",
                )
        else:
            for name in _BLE_ONLY_FIELDS:
                if name in self.model_fields_set:
                    reported.add(name)
                    yield (
                        (name,),
                        f"only applies when source is 'ble' (this sensor's source is '{source}')",
                    )
        if (
            self.hold_s is not None
            and self.kind is not SensorKind.BUTTON
            and "hold_s" not in reported
        ):
            yield (("hold_s",), f"only applies to button sensors (this one is '{self.kind}')")
        if (
            self.bindkey is not None
            and self.family is not None
            and self.family not in _ENCRYPTING_FAMILIES
            and "bindkey" not in reported
        ):
            yield (("bindkey",), f"{self.family} sensors are not encrypted; remove the bindkey")


# --- anomaly checks (defaults and sources: DESIGN.md, "Anomaly checks") -------------------


class ColdHomeCheck(_Section):
    warning_below_c: Annotated[_Float, Field(ge=0, le=30)] = 18.0
    warning_after_min: Annotated[_Int, Field(ge=1, le=1440)] = 120
    urgent_below_c: Annotated[_Float, Field(ge=0, le=30)] = 16.0

    @model_validator(mode="after")
    def _urgent_is_colder(self) -> Self:
        if self.urgent_below_c >= self.warning_below_c:
            _raise_problems(
                [(("urgent_below_c",), f"must be below warning_below_c ({self.warning_below_c:g})")]
            )
        return self


class OverheatingCheck(_Section):
    bedroom_above_c: Annotated[_Float, Field(ge=15, le=45)] = 26.0
    for_minutes: Annotated[_Int, Field(ge=1, le=720)] = 60
    night_start: _ClockTime = "22:00"
    night_end: _ClockTime = "07:00"

    @model_validator(mode="after")
    def _window_not_empty(self) -> Self:
        _raise_problems(list(_empty_window(self.night_start, self.night_end, "night_")))
        return self


class DampCheck(_Section):
    rh_high: Annotated[_Float, Field(ge=1, le=100)] = 70.0
    high_minutes: Annotated[_Int, Field(ge=1, le=10_080)] = 120
    rh_very_high: Annotated[_Float, Field(ge=1, le=100)] = 90.0
    very_high_minutes: Annotated[_Int, Field(ge=1, le=10_080)] = 60
    window_hours: Annotated[_Int, Field(ge=1, le=168)] = 12

    @model_validator(mode="after")
    def _thresholds_consistent(self) -> Self:
        problems: list[_Problem] = []
        if self.rh_very_high <= self.rh_high:
            problems.append((("rh_very_high",), f"must be above rh_high ({self.rh_high:g})"))
        window_minutes = self.window_hours * 60
        for name in ("high_minutes", "very_high_minutes"):
            if getattr(self, name) > window_minutes:
                problems.append(
                    (
                        (name,),
                        f"must fit in the window: at most {window_minutes}"
                        f" (window_hours is {self.window_hours})",
                    )
                )
        _raise_problems(problems)
        return self


class VentilationCheck(_Section):
    co2_above_ppm: Annotated[_Int, Field(ge=400, le=10_000)] = 1500
    for_minutes: Annotated[_Int, Field(ge=1, le=1440)] = 60
    # Below this the alert clears: the gap to co2_above_ppm is the hysteresis.
    co2_good_ppm: Annotated[_Int, Field(ge=400, le=10_000)] = 800

    @model_validator(mode="after")
    def _good_is_lower(self) -> Self:
        if self.co2_good_ppm >= self.co2_above_ppm:
            _raise_problems(
                [(("co2_good_ppm",), f"must be below co2_above_ppm ({self.co2_above_ppm})")]
            )
        return self


class Pm25Check(_Section):
    mean_above_ugm3: Annotated[_Float, Field(ge=1, le=500)] = 15.0
    window_hours: Annotated[_Int, Field(ge=1, le=168)] = 24


class NightWindow(_Section):
    """The night used by night exit, out of bed, night bathroom visits and inactivity."""

    start: _ClockTime = "22:00"
    end: _ClockTime = "06:00"

    @model_validator(mode="after")
    def _window_not_empty(self) -> Self:
        _raise_problems(list(_empty_window(self.start, self.end, "")))
        return self


class OutOfBedCheck(_Section):
    away_minutes: Annotated[_Int, Field(ge=1, le=720)] = 45


class InactivityCheck(_Section):
    """Hard ceilings that apply even before (or despite) the learned routine."""

    ceiling_day_hours: Annotated[_Float, Field(ge=1, le=24)] = 4.0
    # Night (checks.night) ceiling: 10 h covers a long night's sleep that started before the
    # night window without alarming every morning; the learned check normally fires earlier.
    ceiling_night_hours: Annotated[_Float, Field(ge=1, le=24)] = 10.0


class KitchenNotUsedCheck(_Section):
    """The window in which a usually-used kitchen going unused is worth a note (GrandCare)."""

    window_start: _ClockTime = "08:00"
    window_end: _ClockTime = "12:00"

    @model_validator(mode="after")
    def _window_not_empty(self) -> Self:
        _raise_problems(list(_empty_window(self.window_start, self.window_end, "window_")))
        return self


class LearningSettings(_Section):
    min_days: Annotated[_Int, Field(ge=1, le=90)] = 7


class SensorSilentCheck(_Section):
    missed_intervals: Annotated[_Int, Field(ge=1, le=100)] = 3
    battery_low_pct: Annotated[_Float, Field(ge=1, le=90)] = 15.0


# The checks a room may override: the environmental ones, whose right level depends on the
# room (a bathroom is meant to be humid); the rest are about the person, not the room.
ROOM_CHECKS: tuple[str, ...] = ("cold_home", "overheating", "damp", "ventilation", "pm25")


class RoomChecks(_Section):
    """One room's overrides, kept as written: each merges over the home's values, and only the
    merged result is validated (ChecksSection._merge_rooms), so a change to a home value
    still reaches the room for every key the room does not set itself."""

    cold_home: dict[str, Any] | None = None
    overheating: dict[str, Any] | None = None
    damp: dict[str, Any] | None = None
    ventilation: dict[str, Any] | None = None
    pm25: dict[str, Any] | None = None


class ChecksSection(_Section):
    # Most alerts one check may raise per day, so a flapping sensor cannot flood the night carer.
    daily_cap: Annotated[_Int, Field(ge=1, le=100)] = 3
    cold_home: ColdHomeCheck = Field(default_factory=ColdHomeCheck)
    overheating: OverheatingCheck = Field(default_factory=OverheatingCheck)
    damp: DampCheck = Field(default_factory=DampCheck)
    ventilation: VentilationCheck = Field(default_factory=VentilationCheck)
    pm25: Pm25Check = Field(default_factory=Pm25Check)
    night: NightWindow = Field(default_factory=NightWindow)
    out_of_bed: OutOfBedCheck = Field(default_factory=OutOfBedCheck)
    inactivity: InactivityCheck = Field(default_factory=InactivityCheck)
    kitchen_not_used: KitchenNotUsedCheck = Field(default_factory=KitchenNotUsedCheck)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    sensor_silent: SensorSilentCheck = Field(default_factory=SensorSilentCheck)
    # [checks.rooms."<room name>".<check>]: per-room overrides (HubConfig checks the names).
    rooms: dict[str, RoomChecks] = Field(default_factory=dict)

    _for_room: dict[str, "ChecksSection"] = PrivateAttr(default_factory=dict)

    @field_validator("rooms")
    @classmethod
    def _merge_rooms(
        cls, rooms: dict[str, RoomChecks], info: ValidationInfo
    ) -> dict[str, RoomChecks]:
        """Validate each override merged over the home's values, and keep it normalised
        (e.g. a TOML time as "HH:MM") so that it writes back as it reads."""
        problems: list[_Problem] = []
        normalised: dict[str, RoomChecks] = {}
        for room, overrides in rooms.items():
            kept: dict[str, dict[str, Any]] = {}
            for name in ROOM_CHECKS:
                override = getattr(overrides, name)
                home = info.data.get(name)
                if override is None or home is None:  # a bad home value is reported already
                    continue
                model = type(home)
                try:
                    merged = model.model_validate({**home.model_dump(), **override})
                except ValidationError as exc:
                    problems.extend(
                        ((room, name, *loc), message) for loc, message in _located(exc, model)
                    )
                    continue
                kept[name] = {key: getattr(merged, key) for key in override}
            normalised[room] = RoomChecks(**kept)
        _raise_problems(problems)
        return normalised

    @model_validator(mode="after")
    def _settle_rooms(self) -> Self:
        # Merged once here rather than on first use, so that two equal files give equal
        # configs (pydantic compares private attributes too).
        merged: dict[str, ChecksSection] = {}
        for room, overrides in self.rooms.items():
            update: dict[str, Any] = {"rooms": {}}
            for name in ROOM_CHECKS:
                override = getattr(overrides, name)
                if override is not None:
                    home = getattr(self, name)
                    update[name] = type(home).model_validate({**home.model_dump(), **override})
            merged[room] = self.model_copy(update=update)
        self._for_room = merged
        return self

    def for_room(self, room: str) -> "ChecksSection":
        """The settings for sensors in `room`: the home's, with that room's overrides merged
        in (a room without overrides gets the home's own section)."""
        return self._for_room.get(room, self)


def _empty_window(start: str, end: str, prefix: str) -> Iterator[_Problem]:
    if start == end:
        yield ((f"{prefix}end",), f"must differ from {prefix}start ({start}): the window is empty")


class HubConfig(_Section):
    hub: HubSection
    council: CouncilSection = Field(default_factory=CouncilSection)
    store: StoreSection = Field(default_factory=StoreSection)
    ble: BleSection = Field(default_factory=BleSection)
    gpio: GpioSection = Field(default_factory=GpioSection)
    report: ReportSection = Field(default_factory=ReportSection)
    sensors: tuple[SensorConfig, ...] = ()
    checks: ChecksSection = Field(default_factory=ChecksSection)

    @field_validator("sensors")
    @classmethod
    def _no_clashes(cls, sensors: tuple[SensorConfig, ...]) -> tuple[SensorConfig, ...]:
        problems: list[_Problem] = []
        by_id: dict[str, int] = {}
        by_pin: dict[int, int] = {}
        by_address: dict[str, int] = {}
        for index, sensor in enumerate(sensors):
            first = by_id.setdefault(sensor.id, index)
            if first != index:
                problems.append(
                    ((index, "id"), f"sensor id '{sensor.id}' is already used by sensors[{first}]")
                )
            if sensor.pin is not None:
                first = by_pin.setdefault(sensor.pin, index)
                if first != index:
                    problems.append(
                        (
                            (index, "pin"),
                            f"GPIO {sensor.pin} is already used by sensors[{first}]"
                            f" ('{sensors[first].id}')",
                        )
                    )
            if sensor.address is not None:
                first = by_address.setdefault(sensor.address, index)
                if first != index:
                    problems.append(
                        (
                            (index, "address"),
                            f"BLE address {sensor.address} is already used by sensors[{first}]"
                            f" ('{sensors[first].id}')",
                        )
                    )
        _raise_problems(problems)
        return sensors

    @field_validator("checks")
    @classmethod
    def _override_rooms_exist(cls, checks: ChecksSection, info: ValidationInfo) -> ChecksSection:
        # A misspelt room would otherwise leave its sensors on the home's values, silently.
        sensors: tuple[SensorConfig, ...] | None = info.data.get("sensors")
        if sensors is None:  # the sensors are wrong already: their rooms are not known
            return checks
        known = sorted({sensor.room for sensor in sensors})
        problems: list[_Problem] = []
        for room in checks.rooms:
            if room not in known:
                message = f"no sensor is in room {room!r} (rooms: {', '.join(known) or 'none'})"
                close = difflib.get_close_matches(room, known, n=1)
                if close:
                    message += f"; did you mean {close[0]!r}?"
                problems.append((("rooms", room), message))
        _raise_problems(problems)
        return checks

    def checks_for_room(self, room: str) -> ChecksSection:
        """The check settings for sensors in `room` (see ChecksSection.for_room)."""
        return self.checks.for_room(room)

    @property
    def store_path(self) -> Path:
        """The SQLite buffer; store.path is relative to hub.data_dir unless absolute."""
        return self.hub.data_dir / self.store.path


# Sections the council may set for a hub (enrollment, config fetch). Everything else (the
# hub's identity, its sensors, where it stores data) belongs to the installer's file.
COUNCIL_MANAGED = ("checks", "report")


def with_council_config(
    config: HubConfig, sections: dict[str, Any], version: int, source: str = "council config"
) -> HubConfig:
    """`config` with the council's sections replacing its own, validated as a whole.

    A section the council may not set, or a value the hub's rules refuse, is a ConfigError
    naming it, and nothing changes: a bad push from the council must never stop a hub.
    """
    foreign = sorted(set(sections) - set(COUNCIL_MANAGED))
    if foreign:
        allowed = ", ".join(COUNCIL_MANAGED)
        raise ConfigError(
            source,
            [
                f"[{name}]: the council may not set this section (only {allowed})"
                for name in foreign
            ],
        )
    data = _to_toml_data(config)
    for name in COUNCIL_MANAGED:
        data.pop(name, None)
        if name in sections:
            data[name] = sections[name]
    data.setdefault("council", {})["config_version"] = version
    return _validate(data, source, Path.cwd())


# --- loading and writing ------------------------------------------------------------------


def load_config(path: Path) -> HubConfig:
    """Read and validate the config file, with the council state the service saved in the
    data directory laid over it (hub.council_state); any problem becomes a ConfigError."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory, not a config file"]) from None
    except NotADirectoryError:
        raise ConfigError(source, ["no such file (part of the path is not a directory)"]) from None
    except PermissionError:
        raise ConfigError(
            source, ["permission denied: cannot read the file (check its owner and mode)"]
        ) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            source,
            [
                f"line {line}, column {column}: not UTF-8 text (byte 0x{raw[exc.start]:02x});"
                " save the file as UTF-8"
            ],
        ) from None
    # Editors on Windows may add a byte-order mark, which TOML does not allow.
    config = parse_config(text.removeprefix("\ufeff"), source, path.absolute().parent)
    # What the running service learnt from the council (it may not write this file).
    from hub.council_state import with_council_state  # imports this module: not at the top

    return with_council_state(config)


def parse_config(text: str, source: str, base_dir: Path) -> HubConfig:
    """Validate config text; relative paths in it are taken relative to `base_dir`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [_toml_problem(exc)]) from exc
    return _validate(data, source, base_dir)


def write_config(path: Path, config: HubConfig) -> None:
    """Write `config` atomically, after re-validating the exact text about to be written.

    The re-validation catches a config changed with model_copy(update=...), which pydantic
    does not validate, before it can reach the disk and stop the hub from starting.
    An existing file keeps its permissions and (when root writes it) its owner and group; a
    file holding a BLE bindkey is never world-readable.
    """
    path = Path(path)
    text = _HEADER + tomli_w.dumps(_to_toml_data(config))
    parse_config(text, str(path), path.absolute().parent)
    owner: tuple[int, int] | None = None
    try:
        st = path.stat()
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    except OSError:
        mode = 0o644
    if any(sensor.bindkey is not None for sensor in config.sensors):
        mode &= ~0o007
    atomic_write_text(path, text, mode=mode, owner=owner)


_SIMULATED_HOME: tuple[tuple[str, SensorKind, str, RoomRole], ...] = (
    ("living-room-climate", SensorKind.CLIMATE, "Living room", RoomRole.LIVING_ROOM),
    ("bedroom-climate", SensorKind.CLIMATE, "Bedroom", RoomRole.BEDROOM),
    ("bathroom-climate", SensorKind.CLIMATE, "Bathroom", RoomRole.BATHROOM),
    ("living-room-motion", SensorKind.MOTION, "Living room", RoomRole.LIVING_ROOM),
    ("bedroom-motion", SensorKind.MOTION, "Bedroom", RoomRole.BEDROOM),
    ("kitchen-motion", SensorKind.MOTION, "Kitchen", RoomRole.KITCHEN),
    ("bathroom-motion", SensorKind.MOTION, "Bathroom", RoomRole.BATHROOM),
    ("hallway-motion", SensorKind.MOTION, "Hallway", RoomRole.HALLWAY),
    ("front-door", SensorKind.CONTACT, "Hallway", RoomRole.EXIT_DOOR),
    ("pull-cord", SensorKind.BUTTON, "Bathroom", RoomRole.BATHROOM),
)


def starter_config(hub_name: str, data_dir: Path, *, simulated: bool) -> HubConfig:
    """A config that starts cleanly: the design's default checks, and with `simulated` a small
    home of simulated sensors so the whole pipeline can be demonstrated without hardware."""
    data: dict[str, Any] = {"hub": {"name": hub_name, "data_dir": str(data_dir)}}
    if simulated:
        data["sensors"] = [
            {"id": sensor_id, "kind": kind, "room": room, "role": role, "source": "simulated"}
            for sensor_id, kind, room, role in _SIMULATED_HOME
        ]
    return _validate(data, "starter config", Path.cwd())


def _validate(data: dict[str, Any], source: str, base_dir: Path) -> HubConfig:
    try:
        return HubConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, _problems_from(exc)) from exc


def _to_toml_data(config: HubConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json", exclude_none=True)
    # Wiring defaults (pull_up, debounce_ms) would read back as "set" on a sensor whose source
    # they do not apply to, and be rejected; write only the fields that belong to each source.
    for sensor in data.get("sensors", []):
        if sensor["source"] != SensorSource.GPIO:
            for name in _GPIO_ONLY_FIELDS:
                sensor.pop(name, None)
        if sensor["source"] != SensorSource.BLE:
            for name in _BLE_ONLY_FIELDS:
                sensor.pop(name, None)
    if not data["checks"]["rooms"]:
        del data["checks"]["rooms"]
    # An empty [council] table or `sensors = []` only adds noise for the installer.
    return {key: value for key, value in data.items() if value not in ({}, [])}


# --- turning errors into installer-readable lines -----------------------------------------

_TOML_POSITION = re.compile(
    r"(?P<message>.*?) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)",
    re.DOTALL,
)


def _toml_problem(exc: tomllib.TOMLDecodeError) -> str:
    text = str(exc)
    match = _TOML_POSITION.fullmatch(text)
    if match is None:
        return f"invalid TOML: {_lower_first(text)}"
    where = f"line {match['line']}, column {match['column']}" if match["line"] else "end of file"
    return f"{where}: invalid TOML: {_lower_first(match['message'])}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _problems_from(exc: ValidationError) -> list[str]:
    return [_join_location(loc, message) for loc, message in _located(exc, HubConfig)]


def _located(exc: ValidationError, root: type[BaseModel]) -> list[_Problem]:
    """Each problem of `exc` with its location relative to `root`, the model validated."""
    problems: list[_Problem] = []
    for error in exc.errors(include_url=False):
        loc: _Loc = tuple(error["loc"])
        if error["type"] == _RULES:
            for sub_loc, message in error.get("ctx", {}).get("problems", []):
                problems.append((loc + tuple(sub_loc), message))
        else:
            problems.append((loc, _message_for(error, loc, root)))
    return problems


def _join_location(loc: _Loc, message: str) -> str:
    return f"{_format_location(loc)}: {message}" if loc else message


def _format_location(loc: _Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _message_for(error: ErrorDetails, loc: _Loc, root: type[BaseModel] = HubConfig) -> str:
    kind = error["type"]
    value = error["input"]
    ctx: dict[str, Any] = error.get("ctx", {})
    got = _describe(value)
    if kind == "missing":
        if _model_in(_annotation_at(loc, root)) is not None:
            return f"required section [{_format_location(loc)}] is missing"
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, root)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "string_type":
        return f"expected a string (in quotes), got {got}"
    if kind == "path_type":
        return f"expected a path (a string in quotes), got {got}"
    if kind == "enum":
        return _enum_message(loc, value, ctx, root)
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}"
    if kind == "greater_than":
        return f"must be more than {_number(ctx['gt'])}"
    if kind == "less_than":
        return f"must be less than {_number(ctx['lt'])}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a table, got {got}"
    if kind in ("tuple_type", "list_type"):
        name = _format_location(loc)
        return f"expected an array of tables (one [[{name}]] per entry), got {got}"
    return str(error["msg"]).removeprefix("Value error, ")


def _number(value: object) -> str:
    # pydantic turns a float field's bound of 1 into 1.0; installers wrote (and expect) 1.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dt.datetime):
        return f"the date-time {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, dt.time):
        return f"the time {value.isoformat()}"
    return f"{type(value).__name__} {value!r}"


def _unknown_key_message(loc: _Loc, root: type[BaseModel]) -> str:
    model = _model_in(_annotation_at(loc[:-1], root)) if loc[:-1] else root
    key = str(loc[-1])
    if model is None:
        return "unknown key"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed here: {', '.join(allowed)})"


def _enum_message(loc: _Loc, value: object, ctx: dict[str, Any], root: type[BaseModel]) -> str:
    enum_type = next(
        (kind for kind in _types_in(_annotation_at(loc, root)) if issubclass(kind, enum.Enum)),
        None,
    )
    if enum_type is None:
        choices_text = str(ctx.get("expected", ""))
        choices: list[str] = []
    else:
        choices = [str(member.value) for member in enum_type]
        choices_text = ", ".join(choices)
    if not isinstance(value, str):
        return f"expected one of: {choices_text}; got {_describe(value)}"
    message = f"{value!r} is not one of: {choices_text}"
    close = difflib.get_close_matches(value.lower(), choices, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _annotation_at(loc: _Loc, root: type[BaseModel] = HubConfig) -> Any:
    """The declared type at `loc` from `root`, found by walking the models (list indexes and
    the keys of a table of tables, like checks.rooms."<room>", are skipped)."""
    model: type[BaseModel] | None = root
    annotation: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            model = _model_in(annotation)
            continue
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _model_in(annotation)
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    return next((kind for kind in _types_in(annotation) if issubclass(kind, BaseModel)), None)


def _types_in(annotation: Any) -> list[type]:
    """Plain classes inside an annotation (through Optional, tuple[...] and Annotated)."""
    if get_origin(annotation) is None:
        return [annotation] if isinstance(annotation, type) else []
    found: list[type] = []
    for argument in get_args(annotation):
        found.extend(_types_in(argument))
    return found
