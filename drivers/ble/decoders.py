"""The Bluetooth-Devices decoders (bthome-ble, xiaomi-ble, govee-ble, ruuvitag-ble) behind one
small interface, with their output mapped onto our Quantity vocabulary.

The libraries take a habluetooth `BluetoothServiceInfoBleak` and return a sensor-state-data
`SensorUpdate`. Two facts about that update shape the code below:

- It is cumulative, not a delta: `entity_values` is the decoder's own dict of every value it
  has ever produced, so after one good advert a replayed, undecryptable or empty one still
  "returns" the old temperature. A value is fresh only if the library built a new value
  object for it during this call, which we check by identity against the previous call.
- Decoders hold state (BTHome packet ids and encryption counters, Xiaomi bindkey checks), so
  a device keeps one `DeviceDecoder` for life.

Values outside what a home sensor can physically report (a 160 °C room, 300 % humidity) mean
a corrupt or misparsed advert: `decode` raises `ImplausibleValue` and nothing from that
advert is used. The library modules are imported on first use of their family: xiaomi-ble
alone pulls in aiohttp, which a hub with only BTHome sensors need not load.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from bleak.backends.device import BLEDevice
from habluetooth import BluetoothServiceInfoBleak
from sensor_state_data import DeviceKey, SensorDescription, Units

from hub.events import PLAUSIBLE, Quantity

if TYPE_CHECKING:
    from bluetooth_sensor_state_data import BluetoothData

BTHOME: Final = "bthome"
XIAOMI: Final = "xiaomi"
GOVEE: Final = "govee"
RUUVITAG: Final = "ruuvitag"
FAMILIES: Final = (BTHOME, XIAOMI, GOVEE, RUUVITAG)

# (module, class, takes a bindkey)
_LIBRARIES: Final[dict[str, tuple[str, str, bool]]] = {
    BTHOME: ("bthome_ble", "BTHomeBluetoothDeviceData", True),
    XIAOMI: ("xiaomi_ble", "XiaomiBluetoothDeviceData", True),
    GOVEE: ("govee_ble", "GoveeBluetoothDeviceData", False),
    RUUVITAG: ("ruuvitag_ble", "RuuvitagBluetoothDeviceData", False),
}
# Where the libraries log per advert (warnings for failed decryption, info for unknown
# Xiaomi products): a radio-noise storm on a paired address would otherwise flood the log.
DECODER_LOGGERS: Final = tuple(f"{module}.parser" for module, _, _ in _LIBRARIES.values())

_BTHOME_UUIDS: Final = frozenset(
    {
        "0000fcd2-0000-1000-8000-00805f9b34fb",  # BTHome v2
        "0000181c-0000-1000-8000-00805f9b34fb",  # BTHome v1
        "0000181e-0000-1000-8000-00805f9b34fb",  # BTHome v1, encrypted
    }
)
_XIAOMI_UUIDS: Final = frozenset(
    {
        "0000fe95-0000-1000-8000-00805f9b34fb",  # MiBeacon
        "0000fd50-0000-1000-8000-00805f9b34fb",  # HHCC plant sensor
        "0000181d-0000-1000-8000-00805f9b34fb",  # Mi scale v1
        "0000181b-0000-1000-8000-00805f9b34fb",  # Mi scale v2
    }
)
_RUUVI_COMPANY_ID: Final = 0x0499
_APPLE_COMPANY_ID: Final = 0x004C  # iBeacon frames: many devices, Govee's included, send them

_SOURCE: Final = "hearth"  # habluetooth's "which adapter heard it"; one adapter here
_NO_RSSI: Final = -127  # what habluetooth uses when an advert carries no RSSI

# Library value keys (the device class, or the key the library chose) -> our quantity.
_SENSOR_KEYS: Final[dict[str, Quantity]] = {
    "temperature": Quantity.TEMPERATURE,
    "humidity": Quantity.HUMIDITY,
    "carbon_dioxide": Quantity.CO2,
    "pm25": Quantity.PM25,
    "pressure": Quantity.PRESSURE,
    "illuminance": Quantity.ILLUMINANCE,
    "battery": Quantity.BATTERY,
    "voltage": Quantity.VOLTAGE,
}
_BINARY_KEYS: Final[dict[str, Quantity]] = {
    "motion": Quantity.MOTION,
    "opening": Quantity.CONTACT,
    "door": Quantity.CONTACT,
    "window": Quantity.CONTACT,
    "garage_door": Quantity.CONTACT,
    "moisture": Quantity.LEAK,  # binary moisture is "wet"; the % moisture sensor is unmapped
    "occupancy": Quantity.OCCUPANCY,
    "presence": Quantity.OCCUPANCY,  # e.g. Govee H5130 pressure mat
}
# Transient events (not states): a press of a pull cord, a motion trigger.
_RELEASE_EVENTS: Final = frozenset({"release", "hold_release", "long_release"})

# Per quantity: the units we accept from a library, as (scale, offset) into our unit.
_UNITS: Final[dict[Quantity, dict[str, tuple[float, float]]]] = {
    Quantity.TEMPERATURE: {
        Units.TEMP_CELSIUS: (1.0, 0.0),
        Units.TEMP_FAHRENHEIT: (5.0 / 9.0, -32.0 * 5.0 / 9.0),
        Units.TEMP_KELVIN: (1.0, -273.15),
    },
    Quantity.HUMIDITY: {Units.PERCENTAGE: (1.0, 0.0)},
    Quantity.CO2: {Units.CONCENTRATION_PARTS_PER_MILLION: (1.0, 0.0)},
    Quantity.PM25: {
        Units.CONCENTRATION_MICROGRAMS_PER_CUBIC_METER: (1.0, 0.0),
        Units.CONCENTRATION_MILLIGRAMS_PER_CUBIC_METER: (1000.0, 0.0),
    },
    Quantity.PRESSURE: {
        Units.PRESSURE_HPA: (1.0, 0.0),
        Units.PRESSURE_MBAR: (1.0, 0.0),
        Units.PRESSURE_PA: (0.01, 0.0),
        Units.PRESSURE_KPA: (10.0, 0.0),
    },
    Quantity.ILLUMINANCE: {Units.LIGHT_LUX: (1.0, 0.0)},
    Quantity.BATTERY: {Units.PERCENTAGE: (1.0, 0.0)},
    Quantity.VOLTAGE: {
        Units.ELECTRIC_POTENTIAL_VOLT: (1.0, 0.0),
        Units.ELECTRIC_POTENTIAL_MILLIVOLT: (0.001, 0.0),
    },
}
_Conversion = tuple[Quantity, float, float, float, float]  # quantity, scale, offset, lo, hi
_UNMAPPED: Final = None


class ImplausibleValue(ValueError):
    """A decoded value no home sensor could report: the advert is corrupt."""


# What one advert said that we can use: (fresh state values, transient events, fresh values
# with no Quantity of ours (acceleration, VOC...), values given as None or text (Govee's
# "error")). A plain tuple: this is built for every decoded advert.
Decoded = tuple[list[tuple[Quantity, float]], list[Quantity], int, int]


@dataclass(frozen=True)
class DecodedAdvert:
    """One advert decoded for display (`hearth sensors scan`), not for storage."""

    family: str
    values: dict[Quantity, float]  # states, plus 1.0 for an event (a press) in this advert
    name: str | None  # the library's name for the device (model + short address), else the advert's
    needs_bindkey: bool = field(default=False)  # encrypted, and no (or a wrong) bindkey given


def identify_family(
    name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: Sequence[str],
) -> str | None:
    """Which decoder family an advert belongs to, or None. Service-data UUIDs and the Ruuvi
    company id are unambiguous; Govee uses many company ids and payload shapes, so for it we
    ask govee-ble itself."""
    try:
        for uuid in service_data:
            if uuid in _BTHOME_UUIDS:
                return BTHOME
            if uuid in _XIAOMI_UUIDS:
                return XIAOMI
        if _RUUVI_COMPANY_ID in manufacturer_data:
            return RUUVITAG
        if any(company != _APPLE_COMPANY_ID for company in manufacturer_data):
            probe = library_decoder(GOVEE, None)
            info = _service_info(
                "00:00:00:00:00:00", name, None, manufacturer_data, service_data, service_uuids
            )
            if probe.supported(info):
                return GOVEE
    except Exception:  # a malformed advert is "not recognised", never a crash
        return None
    return None


def decode_once(
    address: str,
    name: str | None,
    rssi: int | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: Sequence[str],
    bindkey: bytes | None = None,
) -> DecodedAdvert | None:
    """Decode one advert from a device that is not paired (for scanning). None if no family
    recognises it; a recognised advert whose values cannot be decoded (encrypted without the
    key, corrupt) still gives its family with no values. Never raises."""
    limit_decoder_logs()
    family = identify_family(name, manufacturer_data, service_data, service_uuids)
    if family is None:
        return None
    try:
        decoder = DeviceDecoder(family, address, bindkey)
    except Exception:  # e.g. a bindkey of the wrong length
        return DecodedAdvert(family, {}, name, needs_bindkey=True)
    try:
        decoded = decoder.decode(
            name, rssi, manufacturer_data, service_data, service_uuids, time.monotonic()
        )
    except Exception:
        return DecodedAdvert(family, {}, decoder.device_name() or name, decoder.needs_bindkey())
    states, events, _, _ = decoded
    values = dict(states)
    for quantity in events:
        values[quantity] = 1.0
    return DecodedAdvert(family, values, decoder.device_name() or name, decoder.needs_bindkey())


class _Seen:
    """One library value slot as last seen: which value object it held, and what it maps to.

    Found by id() of the library's DeviceKey (which we keep alive, so the id cannot be
    reused): DeviceKey is a plain dataclass whose hash and equality run in Python, and
    hashing it a dozen times per advert cost more than everything else we do."""

    __slots__ = ("conversion", "key", "quantity", "unmapped", "value")

    def __init__(
        self, key: DeviceKey, conversion: _Conversion | None, quantity: Quantity | None
    ) -> None:
        self.key = key
        self.value: object = None
        self.conversion = conversion  # sensors: quantity, scale, offset, plausible range
        self.quantity = quantity  # binary sensors
        # The library's own RSSI entry is no loss: the advert's RSSI comes from bleak.
        self.unmapped = conversion is None and quantity is None and key.key != "signal_strength"


_SEEN_LIMIT = 512  # a library that made new keys per advert must not grow this forever


class DeviceDecoder:
    """One device's decoder for its whole life: the library object and what it last said."""

    __slots__ = ("_binary_seen", "_ble_device", "_lib", "_sensor_seen", "address", "family")

    def __init__(self, family: str, address: str, bindkey: bytes | None = None) -> None:
        if family not in _LIBRARIES:
            raise ValueError(f"unknown BLE decoder family {family!r}; known: {', '.join(FAMILIES)}")
        self.family = family
        self.address = address
        self._lib = library_decoder(family, bindkey)
        self._ble_device = BLEDevice(address, None, None)
        self._sensor_seen: dict[int, _Seen] = {}
        self._binary_seen: dict[int, _Seen] = {}

    def decode(
        self,
        name: str | None,
        rssi: int | None,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        service_uuids: Sequence[str],
        now_monotonic: float,
    ) -> Decoded:
        """Run the library on one advert and keep what is new in it. Raises whatever the
        library raises on a malformed advert, and ImplausibleValue."""
        address = self.address
        # As in _service_info, inlined: this runs for every decoded advert.
        info = BluetoothServiceInfoBleak(
            name or address,
            address,
            _NO_RSSI if rssi is None else rssi,
            manufacturer_data if type(manufacturer_data) is dict else dict(manufacturer_data),
            service_data if type(service_data) is dict else dict(service_data),
            service_uuids if type(service_uuids) is list else list(service_uuids),
            _SOURCE,
            self._ble_device,
            None,
            False,
            now_monotonic,
            None,
        )
        update = self._lib.update(info)
        states: list[tuple[Quantity, float]] = []
        events: list[Quantity] = []
        unmapped = unusable = 0

        seen = self._sensor_seen
        for key, sensor_value in update.entity_values.items():
            slot = seen.get(id(key))
            if slot is None or slot.key is not key:
                if len(seen) >= _SEEN_LIMIT:
                    seen.clear()
                conversion = _sensor_conversion(key, update.entity_descriptions.get(key))
                slot = seen[id(key)] = _Seen(key, conversion, None)
            elif slot.value is sensor_value:
                continue  # left over from an earlier advert (see the module docstring)
            slot.value = sensor_value
            conversion = slot.conversion
            if conversion is None:
                unmapped += slot.unmapped
                continue
            raw = sensor_value.native_value
            if type(raw) is not float and type(raw) is not int:
                unusable += 1
                continue
            quantity, scale, offset, low, high = conversion
            value = raw * scale + offset
            if not low <= value <= high:  # also catches NaN
                raise ImplausibleValue(f"{quantity.value} {value!r} from {key.key}")
            states.append((quantity, value))

        seen = self._binary_seen
        for key, binary_value in update.binary_entity_values.items():
            slot = seen.get(id(key))
            if slot is None or slot.key is not key:
                if len(seen) >= _SEEN_LIMIT:
                    seen.clear()
                slot = seen[id(key)] = _Seen(key, None, _binary_quantity(key))
            elif slot.value is binary_value:
                continue
            slot.value = binary_value
            quantity_or_none = slot.quantity
            if quantity_or_none is None:
                unmapped += 1
                continue
            state = binary_value.native_value
            if state is None:
                unusable += 1
                continue
            states.append((quantity_or_none, 1.0 if state else 0.0))

        for key, event in update.events.items():  # cleared by the library on every update
            quantity_or_none = _event_quantity(key, event.event_type)
            if quantity_or_none is None:
                unmapped += 1
            else:
                events.append(quantity_or_none)
        return states, events, unmapped, unusable

    def device_name(self) -> str | None:
        """The library's name for the device, e.g. "Shelly BLU H&T 80A5"."""
        try:
            return self._lib.title or self._lib.get_device_name()
        except Exception:
            return None

    def needs_bindkey(self) -> bool:
        """True if the device encrypts its adverts and the bindkey is missing or wrong."""
        scheme: Any = getattr(self._lib, "encryption_scheme", None)
        if scheme is None or getattr(scheme, "value", scheme) == "none":
            return False
        return not bool(getattr(self._lib, "bindkey_verified", False))


def limit_decoder_logs(per_window: int = 10, window_s: float = 60.0) -> None:
    """Cap what the decoder libraries log per minute (INFO and above; DEBUG, if someone turned
    it on, passes). Idempotent: installs one filter per library logger."""
    for logger_name in DECODER_LOGGERS:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _LogBudget) for f in logger.filters):
            logger.addFilter(_LogBudget(per_window, window_s))


class _LogBudget(logging.Filter):
    """At most `per_window` records per window; the first record after a window that had to
    drop some says how many were dropped."""

    def __init__(self, per_window: int, window_s: float) -> None:
        super().__init__()
        self._per_window = per_window
        self._window_s = window_s
        self._window_start = -math.inf
        self._passed = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        now = time.monotonic()
        if now - self._window_start >= self._window_s:
            self._window_start = now
            self._passed = 0
            if self._dropped:
                record.msg = f"{record.getMessage()} ({self._dropped} similar messages dropped)"
                record.args = ()
                self._dropped = 0
        if self._passed >= self._per_window:
            self._dropped += 1
            return False
        self._passed += 1
        return True


def library_decoder(family: str, bindkey: bytes | None = None) -> BluetoothData:
    """A bare library decoder object (what DeviceDecoder wraps): for benchmarks and probes."""
    module_name, class_name, takes_bindkey = _LIBRARIES[family]
    cls = getattr(importlib.import_module(module_name), class_name)
    decoder: BluetoothData = cls(bindkey) if takes_bindkey else cls()
    return decoder


def _service_info(
    address: str,
    name: str | None,
    rssi: int | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: Sequence[str],
    ble_device: BLEDevice | None = None,
    now_monotonic: float = 0.0,
) -> BluetoothServiceInfoBleak:
    # habluetooth's class is compiled and strict about types: real dicts, a list, a str name
    # (the address when the advert has none, as habluetooth itself does), an int RSSI.
    return BluetoothServiceInfoBleak(
        name or address,
        address,
        _NO_RSSI if rssi is None else rssi,
        manufacturer_data if type(manufacturer_data) is dict else dict(manufacturer_data),
        service_data if type(service_data) is dict else dict(service_data),
        service_uuids if type(service_uuids) is list else list(service_uuids),
        _SOURCE,
        ble_device if ble_device is not None else BLEDevice(address, name, None),
        None,
        False,
        now_monotonic,
        None,
    )


def _sensor_conversion(key: DeviceKey, description: SensorDescription | None) -> _Conversion | None:
    if key.device_id is not None:
        return _UNMAPPED  # a second device behind one address (a Govee remote probe)
    quantity = _keyed(_SENSOR_KEYS, key.key)
    if quantity is None or description is None:
        return _UNMAPPED
    unit = description.native_unit_of_measurement
    scale_offset = _UNITS[quantity].get(unit) if unit is not None else None
    if scale_offset is None:
        return _UNMAPPED
    low, high = PLAUSIBLE[quantity]
    return (quantity, scale_offset[0], scale_offset[1], low, high)


def _binary_quantity(key: DeviceKey) -> Quantity | None:
    if key.device_id is not None:
        return None
    return _keyed(_BINARY_KEYS, key.key)


def _event_quantity(key: DeviceKey, event_type: str) -> Quantity | None:
    if key.device_id is not None:
        return None
    name = str(key.key)
    if name == "button" or name.startswith("button_"):
        return None if event_type in _RELEASE_EVENTS else Quantity.BUTTON
    if name == "motion":
        return Quantity.MOTION
    return None


def _keyed(table: Mapping[str, Quantity], key: str) -> Quantity | None:
    """Look a library key up, accepting the first of several same-kind objects (BTHome names
    two temperatures in one advert "temperature_1" and "temperature_2")."""
    quantity = table.get(key)
    if quantity is None and key.endswith("_1"):
        quantity = table.get(key[:-2])
    return quantity
