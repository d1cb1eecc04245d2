"""Bosch BME280 temperature, humidity and pressure over I2C, in forced mode.

Forced mode takes one measurement when asked and then sleeps (about 0.1 µA), which suits a
node that wakes once a minute. The compensation is the datasheet's integer version (32-bit
for temperature and humidity, 64-bit for pressure): boards such as the Pico W have only
single-precision floats, which would lose the pressure's last digits.
"""

import struct

# MicroPython has no typing module, so no `from typing import TYPE_CHECKING`: mypy treats any
# name TYPE_CHECKING as true, and the imports below only ever run in the type checker.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from .bus import I2CBus, SleepMs

ADDRESS = 0x76  # 0x77 with SDO high
CHIP_ID = 0x60
_REG_CALIB_TP = 0x88  # 24 bytes: T1-T3, P1-P9
_REG_CALIB_H1 = 0xA1
_REG_ID = 0xD0
_REG_CALIB_H = 0xE1  # 7 bytes: H2-H6
_REG_CTRL_HUM = 0xF2
_REG_STATUS = 0xF3
_REG_CTRL_MEAS = 0xF4
_REG_CONFIG = 0xF5
_REG_DATA = 0xF7  # 8 bytes: pressure (20 bit), temperature (20 bit), humidity (16 bit)
_OVERSAMPLE_X1 = 0x01
_FORCED = 0x01
_MEASURING = 0x08
_MAX_POLLS = 20  # x1 oversampling takes at most ~10 ms; polled every 2 ms


def _div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero); Python's // floors."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _signed8(byte: int) -> int:
    return byte - 256 if byte & 0x80 else byte


class Calibration:
    """The per-chip trimming values read from the sensor's memory once."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h2: int

    def __init__(self, tp: bytes, h1: int, h: bytes) -> None:
        (
            self.t1,
            self.t2,
            self.t3,
            self.p1,
            self.p2,
            self.p3,
            self.p4,
            self.p5,
            self.p6,
            self.p7,
            self.p8,
            self.p9,
        ) = struct.unpack("<HhhHhhhhhhhh", tp)
        self.h1 = h1
        self.h2 = struct.unpack("<h", h[0:2])[0]
        self.h3 = h[2]
        # H4 and H5 are 12-bit, sharing 0xE5's nibbles; 0xE4 and 0xE6 are their signed tops.
        self.h4 = (_signed8(h[3]) << 4) | (h[4] & 0x0F)
        self.h5 = (_signed8(h[5]) << 4) | (h[4] >> 4)
        self.h6 = _signed8(h[6])


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
    """(°C, % RH, hPa) from raw readings, by the datasheet's integer formulas."""
    var1 = (((adc_t >> 3) - (cal.t1 << 1)) * cal.t2) >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    t_fine = var1 + var2
    temperature = ((t_fine * 5 + 128) >> 8) / 100

    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.p6
    var2 += (var1 * cal.p5) << 17
    var2 += cal.p4 << 35
    var1 = ((var1 * var1 * cal.p3) >> 8) + ((var1 * cal.p2) << 12)
    var1 = (((1 << 47) + var1) * cal.p1) >> 33
    if var1 == 0:
        raise ValueError("BME280 calibration is invalid (division by zero)")
    p = 1048576 - adc_p
    p = _div(((p << 31) - var2) * 3125, var1)
    var1 = (cal.p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.p8 * p) >> 19
    p = ((p + var1 + var2) >> 8) + (cal.p7 << 4)  # Pa in 1/256 units
    pressure = p / 25600

    h = t_fine - 76800
    h = ((((adc_h << 14) - (cal.h4 << 20) - (cal.h5 * h)) + 16384) >> 15) * (
        (
            ((((((h * cal.h6) >> 10) * (((h * cal.h3) >> 11) + 32768)) >> 10) + 2097152) * cal.h2)
            + 8192
        )
        >> 14
    )
    h -= ((((h >> 15) * (h >> 15)) >> 7) * cal.h1) >> 4
    h = min(max(h, 0), 419430400)
    humidity = (h >> 12) / 1024
    return temperature, humidity, pressure


class BME280:
    def __init__(self, i2c: "I2CBus", sleep_ms: "SleepMs", address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.sleep_ms = sleep_ms
        self.address = address
        chip = i2c.readfrom_mem(address, _REG_ID, 1)[0]
        if chip != CHIP_ID:
            # 0x58 is a BMP280: same footprint, no humidity.
            raise ValueError(f"not a BME280 at {address:#x} (chip id {chip:#x})")
        self.cal = Calibration(
            i2c.readfrom_mem(address, _REG_CALIB_TP, 24),
            i2c.readfrom_mem(address, _REG_CALIB_H1, 1)[0],
            i2c.readfrom_mem(address, _REG_CALIB_H, 7),
        )
        i2c.writeto_mem(address, _REG_CONFIG, b"\x00")  # no IIR filter, no standby timing

    def read(self) -> tuple[float, float, float]:
        """One forced measurement: (°C, % RH, hPa). OSError if the sensor does not answer."""
        # ctrl_hum only takes effect on the following write to ctrl_meas.
        self.i2c.writeto_mem(self.address, _REG_CTRL_HUM, bytes([_OVERSAMPLE_X1]))
        meas = (_OVERSAMPLE_X1 << 5) | (_OVERSAMPLE_X1 << 2) | _FORCED
        self.i2c.writeto_mem(self.address, _REG_CTRL_MEAS, bytes([meas]))
        for _ in range(_MAX_POLLS):
            self.sleep_ms(2)
            if not self.i2c.readfrom_mem(self.address, _REG_STATUS, 1)[0] & _MEASURING:
                break
        else:
            raise OSError("BME280 did not finish its measurement")
        d = self.i2c.readfrom_mem(self.address, _REG_DATA, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return compensate(self.cal, adc_t, adc_p, adc_h)
