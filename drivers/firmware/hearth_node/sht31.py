"""Sensirion SHT3x (SHT30, SHT31, SHT35) temperature and humidity over I2C.

Single-shot measurements (command 0x2400: high repeatability, no clock stretching), so the
sensor idles between readings at about 0.2 µA. Every answer is checked against its CRC: a
loose wire must give a missing reading, never a wrong one.
"""

# MicroPython has no typing module, so no `from typing import TYPE_CHECKING`: mypy treats any
# name TYPE_CHECKING as true, and the imports below only ever run in the type checker.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from .bus import I2CBus, SleepMs

ADDRESS = 0x44  # 0x45 with the ADDR pin high
_MEASURE = b"\x24\x00"
_MEASURE_MS = 16  # datasheet: at most 15.5 ms at high repeatability


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8: polynomial 0x31, initial value 0xFF, no reflection."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def convert(frame: bytes) -> tuple[float, float]:
    """(°C, % RH) from the sensor's 6-byte answer: T msb, lsb, crc, RH msb, lsb, crc."""
    if len(frame) != 6:
        raise ValueError("SHT31 answered with the wrong length")
    if crc8(frame[0:2]) != frame[2] or crc8(frame[3:5]) != frame[5]:
        raise ValueError("SHT31 answer failed its CRC check")
    raw_t = (frame[0] << 8) | frame[1]
    raw_rh = (frame[3] << 8) | frame[4]
    return -45 + 175 * raw_t / 65535, 100 * raw_rh / 65535


class SHT31:
    def __init__(self, i2c: "I2CBus", sleep_ms: "SleepMs", address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.sleep_ms = sleep_ms
        self.address = address

    def read(self) -> tuple[float, float]:
        """One measurement: (°C, % RH). OSError if the sensor does not answer."""
        self.i2c.writeto(self.address, _MEASURE)
        self.sleep_ms(_MEASURE_MS)
        return convert(self.i2c.readfrom(self.address, 6))
