"""BTHome v2 advertisement encoder (https://bthome.io/format/), plain or encrypted.

Pure: no `machine` or `bluetooth` import, so the same file runs on the node and, in the hub's
tests, on CPython, where bthome-ble must decode what it builds to the same values.

A BTHome v2 advert is the BLE service data AD (type 0x16) for UUID 0xFCD2: one device-info
byte (version 2 in bits 5-7, bit 0 set when encrypted), then objects in ascending id order,
each an id byte and a little-endian value of that id's fixed size and scale. Encrypted, the
objects are AES-CCM ciphertext followed by the 4-byte counter and the 4-byte MIC; the nonce
is the node's MAC + UUID + device-info byte + counter (see aes_ccm.py for why CCM is ours).
"""

import struct

from . import aes_ccm

# MicroPython has no typing module, so no `from typing import TYPE_CHECKING`: mypy treats any
# name TYPE_CHECKING as true, and the imports below only ever run in the type checker.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from .aes_ccm import BlockCipher

UUID16 = 0xFCD2
UUID_LE = b"\xd2\xfc"  # as it appears on air and in the nonce
DEVICE_INFO = 0x40  # BTHome version 2 in bits 5-7
FLAG_ENCRYPTED = 0x01
MAX_ADVERT = 31  # bytes of advertising data in a legacy BLE advert
FLAGS_AD = b"\x02\x01\x06"  # LE General Discoverable, BR/EDR not supported

# Object ids (https://bthome.io/format/), in the ascending order the format requires.
OBJ_PACKET_ID = 0x00  # uint8: lets a receiver drop repeats of one reading
OBJ_BATTERY = 0x01  # uint8, %
OBJ_TEMPERATURE = 0x02  # sint16, 0.01 °C
OBJ_HUMIDITY = 0x03  # uint16, 0.01 %
OBJ_PRESSURE = 0x04  # uint24, 0.01 hPa
OBJ_VOLTAGE = 0x0C  # uint16, 0.001 V
OBJ_MOTION = 0x21  # uint8, 1 = motion detected

# Dropped in this order when an advert would not fit (an encrypted advert has 8 bytes less).
OPTIONAL = ("pressure", "voltage")


class Readings:
    """One snapshot of what the node measured; None means not measured (left out)."""

    def __init__(
        self,
        temperature: float | None = None,
        humidity: float | None = None,
        pressure: float | None = None,
        battery: float | None = None,
        voltage: float | None = None,
        motion: bool | None = None,
    ) -> None:
        self.temperature = temperature
        self.humidity = humidity
        self.pressure = pressure
        self.battery = battery
        self.voltage = voltage
        self.motion = motion

    def without(self, name: str) -> "Readings":
        copy = Readings(
            self.temperature, self.humidity, self.pressure, self.battery, self.voltage, self.motion
        )
        setattr(copy, name, None)
        return copy


def _raw(name: str, value: float, scale: int, low: int, high: int) -> int:
    """Scale to the object's integer unit; refuse what the field cannot hold, never wrap."""
    try:
        raw = round(value * scale)
    except (ValueError, OverflowError):  # NaN, infinity: a sensor fault
        # Raised outside the handler: MicroPython warns about exception chaining.
        raw = None
    if raw is None:
        raise ValueError(f"{name} {value!r} is not a number")
    if not low <= raw <= high:
        raise ValueError(f"{name} {value!r} is outside {low / scale}..{high / scale}")
    return raw


def encode_objects(readings: Readings, packet_id: int) -> bytes:
    """The BTHome objects for these readings, in ascending object id order."""
    out = bytearray(struct.pack("<BB", OBJ_PACKET_ID, packet_id & 0xFF))
    if readings.battery is not None:
        out += struct.pack("<BB", OBJ_BATTERY, _raw("battery", readings.battery, 1, 0, 100))
    if readings.temperature is not None:
        raw = _raw("temperature", readings.temperature, 100, -32768, 32767)
        out += struct.pack("<Bh", OBJ_TEMPERATURE, raw)
    if readings.humidity is not None:
        out += struct.pack("<BH", OBJ_HUMIDITY, _raw("humidity", readings.humidity, 100, 0, 10000))
    if readings.pressure is not None:
        raw = _raw("pressure", readings.pressure, 100, 0, 0xFFFFFF)
        out += bytes([OBJ_PRESSURE]) + struct.pack("<I", raw)[:3]
    if readings.voltage is not None:
        out += struct.pack("<BH", OBJ_VOLTAGE, _raw("voltage", readings.voltage, 1000, 0, 0xFFFF))
    if readings.motion is not None:
        out += struct.pack("<BB", OBJ_MOTION, 1 if readings.motion else 0)
    return bytes(out)


def plain_service_data(objects: bytes) -> bytes:
    """Service data (after the UUID) for an unencrypted advert."""
    return bytes([DEVICE_INFO]) + objects


class Encryptor:
    """Seals objects for one node: its AES key (as a block cipher) and its BLE address.

    `mac` is the address the hub sees, most significant byte first (as `ble.config("mac")`
    returns it and as "A4:C1:38:..." reads); the decoder builds the nonce from it.
    """

    def __init__(self, cipher: "BlockCipher", mac: bytes) -> None:
        if len(mac) != 6:
            raise ValueError("a BLE address is 6 bytes")
        self.cipher = cipher
        self.mac = bytes(mac)

    def service_data(self, objects: bytes, counter: int) -> bytes:
        """Service data for an encrypted advert. Never reuse a counter with the same key."""
        if not 0 <= counter <= 0xFFFFFFFF:
            raise ValueError("the encryption counter is 4 bytes")
        info = DEVICE_INFO | FLAG_ENCRYPTED
        count = struct.pack("<I", counter)
        nonce = self.mac + UUID_LE + bytes([info]) + count
        ciphertext, mic = aes_ccm.encrypt(self.cipher, nonce, objects, tag_len=4)
        return bytes([info]) + ciphertext + count + mic


def advert(service_data: bytes) -> bytes:
    """Advertising data: the flags AD, then the BTHome service data AD."""
    body = UUID_LE + service_data
    data = FLAGS_AD + bytes([len(body) + 1, 0x16]) + body
    if len(data) > MAX_ADVERT:
        raise ValueError(f"advert is {len(data)} bytes, at most {MAX_ADVERT} fit")
    return data


def scan_response(name: str) -> bytes:
    """A scan response carrying the node's name (shortened to fit if need be)."""
    encoded = name.encode()
    if len(encoded) > MAX_ADVERT - 2:
        return bytes([MAX_ADVERT - 1, 0x08]) + encoded[: MAX_ADVERT - 2]  # shortened name
    return bytes([len(encoded) + 1, 0x09]) + encoded  # complete name


def build_advert(
    readings: Readings, counter: int, encryptor: Encryptor | None = None
) -> tuple[bytes, list[str]]:
    """The advertising data for one reading; also the optional values left out to fit.

    The packet id is the counter's low byte, so every new reading gets a new packet id and a
    receiver can drop the repeats of one reading that the node sends in a burst.
    """
    dropped: list[str] = []
    while True:
        objects = encode_objects(readings, counter & 0xFF)
        if encryptor is None:
            data = plain_service_data(objects)
        else:
            data = encryptor.service_data(objects, counter)
        if len(FLAGS_AD) + 4 + len(data) <= MAX_ADVERT:
            return advert(data), dropped
        for name in OPTIONAL:
            if getattr(readings, name) is not None:
                readings = readings.without(name)
                dropped.append(name)
                break
        else:
            raise ValueError("the readings do not fit one advert even without optional values")
