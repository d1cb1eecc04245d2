"""The node's settings: config.py's values with defaults, checked all at once.

A technician edits config.py on the node; a typo must give one clear line per problem on
the console at boot, not a traceback in the middle of the night.
"""

import binascii

DEFAULTS = {
    "BINDKEY": "",
    "NAME": "hearth-node",
    "SENSOR": "sht31",
    "I2C_ID": 0,
    "I2C_SDA": 4,
    "I2C_SCL": 5,
    "I2C_ADDRESS": None,
    "PIR_PIN": None,
    "PIR_ACTIVE_HIGH": True,
    "PIR_PULL": "down",
    "BATTERY_ADC_PIN": None,
    "BATTERY_DIVIDER": 2.0,
    "BATTERY_EMPTY_V": 3.0,
    "BATTERY_FULL_V": 4.5,
    "INTERVAL_S": 60,
    "BURST_MS": 1000,
    "ADVERT_INTERVAL_MS": 100,
    "MIN_GAP_S": 2,
    "MOTION_POLL_MS": 500,
    "SLEEP_MODE": "light",
    "STARTUP_WAIT_S": 5,
}

SENSORS = ("sht31", "bme280")
PULLS = ("down", "up")
SLEEP_MODES = ("light", "deep")


class Settings:
    """Checked settings; attribute names are config.py's, in lower case."""

    def __init__(self, values: dict[str, object]) -> None:
        problems: list[str] = []
        self.bindkey = _bindkey(values["BINDKEY"], problems)
        self.name = _text(values, "NAME", problems)
        self.sensor = _choice(values, "SENSOR", SENSORS, True, problems)
        self.i2c_id = _int(values, "I2C_ID", 0, 1, problems)
        self.i2c_sda = _int(values, "I2C_SDA", 0, 48, problems)
        self.i2c_scl = _int(values, "I2C_SCL", 0, 48, problems)
        self.i2c_address = _optional_int(values, "I2C_ADDRESS", 0x08, 0x77, problems)
        self.pir_pin = _optional_int(values, "PIR_PIN", 0, 48, problems)
        self.pir_active_high = _bool(values, "PIR_ACTIVE_HIGH", problems)
        self.pir_pull = _choice(values, "PIR_PULL", PULLS, True, problems)
        self.battery_adc_pin = _optional_int(values, "BATTERY_ADC_PIN", 0, 48, problems)
        self.battery_divider = _number(values, "BATTERY_DIVIDER", 1.0, 20.0, problems)
        self.battery_empty_v = _number(values, "BATTERY_EMPTY_V", 0.5, 20.0, problems)
        self.battery_full_v = _number(values, "BATTERY_FULL_V", 0.5, 20.0, problems)
        self.interval_s = _int(values, "INTERVAL_S", 5, 3600, problems)
        self.burst_ms = _int(values, "BURST_MS", 100, 10000, problems)
        self.advert_interval_ms = _int(values, "ADVERT_INTERVAL_MS", 20, 10000, problems)
        self.min_gap_s = _int(values, "MIN_GAP_S", 0, 3600, problems)
        self.motion_poll_ms = _int(values, "MOTION_POLL_MS", 50, 10000, problems)
        self.sleep_mode = _choice(values, "SLEEP_MODE", SLEEP_MODES, False, problems) or "light"
        self.startup_wait_s = _int(values, "STARTUP_WAIT_S", 0, 60, problems)
        if self.battery_full_v <= self.battery_empty_v:
            problems.append("BATTERY_FULL_V must be above BATTERY_EMPTY_V")
        if self.burst_ms < self.advert_interval_ms:
            problems.append("BURST_MS must be at least ADVERT_INTERVAL_MS")
        if problems:
            raise ValueError("config.py: " + "; ".join(problems))


def from_module(module: object) -> Settings:
    """Settings from an imported config module; unknown names are refused (likely typos)."""
    values = dict(DEFAULTS)
    unknown = []
    for name in dir(module):
        if name.startswith("_"):
            continue
        if name in DEFAULTS:
            values[name] = getattr(module, name)
        elif name.isupper():
            unknown.append(name)
    if unknown:
        raise ValueError("config.py: unknown setting(s) " + ", ".join(sorted(unknown)))
    return Settings(values)


def _bindkey(value: object, problems: list[str]) -> bytes | None:
    # The key is a secret: say what is wrong with it without printing it.
    if value == "" or value is None:
        return None
    if not isinstance(value, str) or len(value) != 32:
        problems.append("BINDKEY must be 32 hex characters (or empty for no encryption)")
        return None
    try:
        return binascii.unhexlify(value)
    except ValueError:
        problems.append("BINDKEY must contain only hex characters 0-9 and a-f")
        return None


def _text(values: dict[str, object], name: str, problems: list[str]) -> str:
    value = values[name]
    if not isinstance(value, str) or not value:
        problems.append(name + " must be a non-empty string")
        return ""
    return value


def _choice(
    values: dict[str, object],
    name: str,
    choices: tuple[str, ...],
    allow_none: bool,
    problems: list[str],
) -> str | None:
    value = values[name]
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(choices) + (" or None" if allow_none else "")
        problems.append(f"{name} must be one of {allowed}, not {value!r}")
        return None
    return value


def _int(values: dict[str, object], name: str, low: int, high: int, problems: list[str]) -> int:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        return low
    return value


def _optional_int(
    values: dict[str, object], name: str, low: int, high: int, problems: list[str]
) -> int | None:
    if values[name] is None:
        return None
    return _int(values, name, low, high, problems)


def _number(
    values: dict[str, object], name: str, low: float, high: float, problems: list[str]
) -> float:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        problems.append(f"{name} must be a number from {low} to {high}, not {value!r}")
        return low
    return float(value)


def _bool(values: dict[str, object], name: str, problems: list[str]) -> bool:
    value = values[name]
    if not isinstance(value, bool):
        problems.append(f"{name} must be True or False, not {value!r}")
        return True
    return value
