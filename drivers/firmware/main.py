"""Hearth sensor node: read the sensors, broadcast the reading as BTHome v2, sleep, repeat.

MicroPython runs this file at boot (Raspberry Pi Pico W, or ESP32). The settings come from
config.py beside it; the encoding is in hearth_node/ (pure Python, tested on the hub).

Each cycle: read the I2C sensor, the PIR and the battery with the radio off, switch the
radio on, advertise the reading for BURST_MS, switch the radio off, sleep. A change of the
PIR ends the sleep early (at most once per MIN_GAP_S), so motion reaches the hub within
about MOTION_POLL_MS instead of waiting for the next interval.
"""

import struct
import sys
import time

import bluetooth
import config
import cryptolib
import machine
from hearth_node import battery, bme280, bthome, settings, sht31
from hearth_node.counter import AdvertCounter

COUNTER_FILE = "hearth_counter.txt"
_AES_ECB = 1  # cryptolib mode 1: the one mode every port has


def log(*parts: object) -> None:
    print("hearth:", *parts)


class ClimateReader:
    """The configured I2C sensor, whichever it is: (°C, % RH, hPa or None)."""

    def __init__(self, cfg: settings.Settings, i2c: machine.I2C) -> None:
        self.sht31 = None
        self.bme280 = None
        if cfg.sensor == "bme280":
            self.bme280 = bme280.BME280(i2c, time.sleep_ms, cfg.i2c_address or bme280.ADDRESS)
        else:
            self.sht31 = sht31.SHT31(i2c, time.sleep_ms, cfg.i2c_address or sht31.ADDRESS)

    def read(self) -> tuple[float, float, float | None]:
        if self.bme280 is not None:
            return self.bme280.read()
        if self.sht31 is not None:
            temperature, humidity = self.sht31.read()
            return temperature, humidity, None
        raise ValueError("no climate sensor configured")


class Sensors:
    """Everything the node measures, read while the radio is off."""

    def __init__(self, cfg: settings.Settings) -> None:
        self.cfg = cfg
        self.i2c = None
        self.climate: ClimateReader | None = None  # found on first use; retried after errors
        if cfg.sensor is not None:
            scl = machine.Pin(cfg.i2c_scl)
            sda = machine.Pin(cfg.i2c_sda)
            self.i2c = machine.I2C(cfg.i2c_id, scl=scl, sda=sda, freq=100_000)
        self.pir = None
        if cfg.pir_pin is not None:
            if cfg.pir_pull == "down":
                self.pir = machine.Pin(cfg.pir_pin, machine.Pin.IN, machine.Pin.PULL_DOWN)
            elif cfg.pir_pull == "up":
                self.pir = machine.Pin(cfg.pir_pin, machine.Pin.IN, machine.Pin.PULL_UP)
            else:
                self.pir = machine.Pin(cfg.pir_pin, machine.Pin.IN)
        self.adc = None
        if cfg.battery_adc_pin is not None:
            if sys.platform == "esp32":
                # 11 dB attenuation: the pin reads up to about 3.1 V.
                pin = machine.Pin(cfg.battery_adc_pin)
                self.adc = machine.ADC(pin, atten=machine.ADC.ATTN_11DB)
            else:
                self.adc = machine.ADC(machine.Pin(cfg.battery_adc_pin))

    def motion(self) -> bool | None:
        if self.pir is None:
            return None
        return self.pir.value() == (1 if self.cfg.pir_active_high else 0)

    def battery_volts(self) -> float | None:
        if self.adc is None:
            return None
        if sys.platform == "esp32":
            pin_volts = self.adc.read_uv() / 1_000_000  # calibrated by the chip's eFuse data
        else:
            pin_volts = self.adc.read_u16() * 3.3 / 65535
        return pin_volts * self.cfg.battery_divider

    def _climate(self) -> tuple[float | None, float | None, float | None]:
        if self.i2c is None:
            return None, None, None
        try:
            if self.climate is None:
                self.climate = ClimateReader(self.cfg, self.i2c)
            return self.climate.read()
        except (OSError, ValueError) as error:
            # A loose wire or a missing sensor: send what else we have, and look again next time.
            log("sensor", self.cfg.sensor, "failed:", error)
            self.climate = None
            return None, None, None

    def read(self) -> bthome.Readings:
        temperature, humidity, pressure = self._climate()
        volts = self.battery_volts()
        charge = None
        if volts is not None:
            charge = battery.percent(volts, self.cfg.battery_empty_v, self.cfg.battery_full_v)
        return bthome.Readings(
            temperature=temperature,
            humidity=humidity,
            pressure=pressure,
            battery=charge,
            voltage=volts,
            motion=self.motion(),
        )


class Radio:
    """The BLE radio, on only while advertising."""

    def __init__(self, cfg: settings.Settings) -> None:
        self.cfg = cfg
        self.ble = bluetooth.BLE()
        self.mac = b""

    def on(self) -> bytes:
        """Switch on; return the address the hub will see (most significant byte first)."""
        self.ble.active(True)
        if not self.mac:
            addr_type, mac = self.ble.config("mac")
            self.mac = bytes(mac)
            log("address", ":".join(f"{b:02X}" for b in self.mac))
            if addr_type != 0:
                log("warning: not a public address; it may change on reset (pair again)")
        return self.mac

    def advertise(self, adv: bytes, response: bytes) -> None:
        interval_us = self.cfg.advert_interval_ms * 1000
        self.ble.gap_advertise(interval_us, adv, resp_data=response, connectable=False)
        time.sleep_ms(self.cfg.burst_ms)

    def off(self) -> None:
        self.ble.active(False)  # stops advertising and powers the radio down


def broadcast(
    cfg: settings.Settings, sensors: Sensors, radio: Radio, counter: AdvertCounter
) -> bool | None:
    """Read and advertise one reading; return the motion state it carried."""
    readings = sensors.read()
    try:
        mac = radio.on()
        encryptor = None
        if cfg.bindkey is not None:
            encryptor = bthome.Encryptor(cryptolib.aes(cfg.bindkey, _AES_ECB), mac)
        adv, dropped = bthome.build_advert(readings, counter.next(), encryptor)
        if dropped:
            log("left out to fit the advert:", ", ".join(dropped))
        name = f"{cfg.name}-{mac[4]:02X}{mac[5]:02X}"
        radio.advertise(adv, bthome.scan_response(name))
    finally:
        radio.off()
    return readings.motion


def sleep_light(cfg: settings.Settings, sensors: Sensors, sent_motion: bool | None) -> None:
    """Light sleep until the interval is up, or the PIR differs from what was last sent."""
    start = time.ticks_ms()
    interval = cfg.interval_s * 1000
    while True:
        elapsed = time.ticks_diff(time.ticks_ms(), start)
        if elapsed >= interval:
            return
        if sensors.pir is None:
            machine.lightsleep(interval - elapsed)
            continue
        if elapsed >= cfg.min_gap_s * 1000 and sensors.motion() != sent_motion:
            return
        # PIR modules hold their output for seconds, so polling does not miss a detection;
        # a GPIO interrupt would not wake an RP2040 from lightsleep anyway.
        machine.lightsleep(min(cfg.motion_poll_ms, interval - elapsed))


def sleep_deep(
    cfg: settings.Settings, sensors: Sensors, counter: AdvertCounter, sent_motion: bool | None
) -> None:
    """ESP32 only: deep sleep, waking on the timer or when the PIR differs from what was sent.

    RAM is lost, so the counter goes to RTC memory (no flash write) and main() starts over.
    """
    if sys.platform == "esp32":
        import esp32

        machine.RTC().memory(struct.pack("<I", counter.value))
        if sensors.pir is not None:
            if cfg.min_gap_s:
                machine.lightsleep(cfg.min_gap_s * 1000)
            # Wake on the level opposite to the one sent: if the PIR already changed during
            # the gap, the node wakes at once and sends it.
            active = sent_motion == cfg.pir_active_high
            level = esp32.WAKEUP_ALL_LOW if active else esp32.WAKEUP_ANY_HIGH
            esp32.wake_on_ext0(sensors.pir, level)
        machine.deepsleep(cfg.interval_s * 1000)


def carried_counter() -> int | None:
    """The counter kept in RTC memory over a deep sleep (ESP32), if that is how we woke."""
    if sys.platform == "esp32" and machine.reset_cause() == machine.DEEPSLEEP_RESET:
        memory = machine.RTC().memory()
        if len(memory) == 4:
            return int(struct.unpack("<I", memory)[0])
    return None


def load_settings() -> settings.Settings:
    """The checked settings; a bad config.py is reported every 10 s until it is fixed."""
    while True:
        try:
            return settings.from_module(config)
        except ValueError as error:
            log(error)
            time.sleep(10)


def main() -> None:
    cfg = load_settings()
    if cfg.sleep_mode == "deep" and sys.platform != "esp32":
        log("SLEEP_MODE 'deep' needs an ESP32; using light sleep")
        cfg.sleep_mode = "light"
    carried = carried_counter()
    if carried is None and cfg.startup_wait_s:
        # After a reset (not a wake from deep sleep): time for Ctrl-C before any sleep.
        log("starting in", cfg.startup_wait_s, "s; press Ctrl-C to stop")
        time.sleep(cfg.startup_wait_s)
    counter = AdvertCounter(COUNTER_FILE, carried=carried)
    sensors = Sensors(cfg)
    radio = Radio(cfg)
    log("encrypted" if cfg.bindkey else "NOT encrypted (no BINDKEY)", "every", cfg.interval_s, "s")
    while True:
        try:
            sent_motion = broadcast(cfg, sensors, radio, counter)
        except Exception as error:  # never stop broadcasting over one bad cycle
            log("cycle failed:", repr(error))
            sent_motion = None
        if cfg.sleep_mode == "deep":
            sleep_deep(cfg, sensors, counter, sent_motion)
        sleep_light(cfg, sensors, sent_motion)


main()
