"""The sensor-node firmware's pure modules, run on CPython.

What the node's encoder builds must decode through bthome-ble, the decoder the hub uses, to
the same values: plain and encrypted, with the decoder verifying the MIC and refusing a wrong
bindkey. The AES-ECB primitive that the node gets from MicroPython's cryptolib comes here
from `cryptography`, through the same one-method interface. The sensor drivers' conversions
run against a fake I2C bus (the edge of the machine).
"""

from __future__ import annotations

import math
import struct
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.bthome_v2_encryption import encrypt_payload
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from habluetooth import BluetoothServiceInfoBleak
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.firmware import config as shipped_config
from drivers.firmware.hearth_node import aes_ccm, battery, bme280, bthome, sht31
from drivers.firmware.hearth_node import settings as node_settings
from drivers.firmware.hearth_node.counter import AdvertCounter

ADDRESS = "A4:C1:38:0B:1E:57"
MAC = bytes.fromhex(ADDRESS.replace(":", ""))
BINDKEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"


class EcbCipher:
    """AES-ECB with cryptolib.aes's interface: encrypt(one 16-byte block) -> bytes."""

    def __init__(self, key: bytes) -> None:
        self._encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def encrypt(self, block: bytes, /) -> bytes:
        assert len(block) == 16
        return self._encryptor.update(block)


def encryptor(key: bytes = BINDKEY) -> bthome.Encryptor:
    return bthome.Encryptor(EcbCipher(key), MAC)


def ad_structures(adv: bytes) -> dict[int, bytes]:
    """Split advertising data into its AD structures (length, type, data), checking lengths."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(adv):
        length = adv[i]
        assert length > 0 and i + 1 + length <= len(adv), f"bad AD length at {i}: {adv.hex()}"
        found[adv[i + 1]] = adv[i + 2 : i + 1 + length]
        i += 1 + length
    return found


def service_info(adv: bytes, when: float) -> BluetoothServiceInfoBleak:
    """What bleak would hand the hub for this advert (service data keyed by 128-bit UUID)."""
    service = ad_structures(adv)[0x16]
    assert service[:2] == b"\xd2\xfc"
    return BluetoothServiceInfoBleak(
        name=ADDRESS,
        address=ADDRESS,
        rssi=-60,
        manufacturer_data={},
        service_data={BTHOME_UUID: service[2:]},
        service_uuids=[BTHOME_UUID],
        source="local",
        device=BLEDevice(ADDRESS, None, None),
        advertisement=None,
        connectable=False,
        time=when,
        tx_power=None,
    )


@dataclass
class Hub:
    """The hub's side: one bthome-ble decoder per device, as the BLE driver keeps it."""

    bindkey: bytes | None = None
    decoder: BTHomeBluetoothDeviceData = field(init=False)
    clock: float = 1_000.0

    def __post_init__(self) -> None:
        self.decoder = BTHomeBluetoothDeviceData(bindkey=self.bindkey)

    def receive(self, adv: bytes) -> dict[str, float | bool]:
        """The device's values as the decoder now holds them (it keeps the last accepted)."""
        self.clock += 60.0
        update = self.decoder.update(service_info(adv, self.clock))
        values: dict[str, float | bool] = {
            key.key: value.native_value
            for key, value in update.entity_values.items()
            if key.key != "signal_strength" and isinstance(value.native_value, int | float)
        }
        for key, binary in update.binary_entity_values.items():
            assert binary.native_value is not None
            values[key.key] = binary.native_value
        return values


def expected(readings: bthome.Readings, packet_id: int) -> dict[str, float | bool]:
    """The values the hub should get: each reading at its BTHome resolution."""
    values: dict[str, float | bool] = {"packet_id": packet_id}
    for name, digits in (
        ("temperature", 2),
        ("humidity", 2),
        ("pressure", 2),
        ("battery", 0),
        ("voltage", 3),
    ):
        value = getattr(readings, name)
        if value is not None:
            values[name] = round(value, digits)
    if readings.motion is not None:
        values["motion"] = readings.motion
    return values


def assert_same(got: dict[str, float | bool], want: dict[str, float | bool]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


CASES = {
    "indoor": bthome.Readings(temperature=21.37, humidity=48.5, battery=87, motion=False),
    "freezing": bthome.Readings(temperature=-12.34, humidity=0.0, battery=0, motion=True),
    "deep-cold": bthome.Readings(temperature=-40.0, humidity=100.0),
    "extremes": bthome.Readings(temperature=-327.68, humidity=100.0, battery=100),
    "hot-damp": bthome.Readings(temperature=327.67, humidity=99.99, motion=True),
    "motion-only": bthome.Readings(motion=True),
    "no-motion": bthome.Readings(motion=False),
    "bme280": bthome.Readings(temperature=19.5, humidity=62.25, pressure=1013.25),
    "battery": bthome.Readings(battery=3, voltage=3.012),
    "nothing": bthome.Readings(),
}


# --- plain and encrypted round trips through bthome-ble ---------------------------------


@pytest.mark.parametrize("name", CASES)
def test_plain_advert_decodes_to_the_same_values(name: str) -> None:
    readings = CASES[name]
    adv, dropped = bthome.build_advert(readings, counter=7)
    assert dropped == []
    assert ad_structures(adv)[0x01] == b"\x06"  # flags
    assert ad_structures(adv)[0x16][2] == 0x40  # BTHome v2, not encrypted
    hub = Hub()
    assert_same(hub.receive(adv), expected(readings, 7))
    assert hub.decoder.encryption_scheme.value == "none"


@pytest.mark.parametrize("name", CASES)
def test_encrypted_advert_decodes_with_the_bindkey(name: str) -> None:
    readings = CASES[name]
    adv, dropped = bthome.build_advert(readings, counter=0x01020304, encryptor=encryptor())
    assert dropped == []
    hub = Hub(BINDKEY)
    assert_same(hub.receive(adv), expected(readings, 0x04))
    assert hub.decoder.bindkey_verified
    assert not hub.decoder.decryption_failed
    assert hub.decoder.encryption_counter == 0x01020304


def test_encrypted_advert_hides_the_values() -> None:
    readings = CASES["indoor"]
    plain, _ = bthome.build_advert(readings, counter=7)
    sealed, _ = bthome.build_advert(readings, counter=7, encryptor=encryptor())
    objects = ad_structures(plain)[0x16][3:]
    assert objects not in ad_structures(sealed)[0x16]
    assert ad_structures(sealed)[0x16][2] == 0x41  # v2, encrypted


def test_a_wrong_bindkey_is_refused() -> None:
    adv, _ = bthome.build_advert(CASES["indoor"], counter=1, encryptor=encryptor())
    hub = Hub(bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert hub.receive(adv) == {}
    assert hub.decoder.decryption_failed


def test_no_bindkey_at_the_hub_gets_no_values() -> None:
    adv, _ = bthome.build_advert(CASES["indoor"], counter=1, encryptor=encryptor())
    assert Hub(None).receive(adv) == {}


@pytest.mark.parametrize("offset", [-1, -4, -5, -8, 7, 8, 9])
def test_the_decoder_verifies_the_mic(offset: int) -> None:
    """A flipped bit in the MIC, the counter, the device info or the ciphertext is refused."""
    adv, _ = bthome.build_advert(CASES["freezing"], counter=500, encryptor=encryptor())
    tampered = bytearray(adv)
    tampered[offset] ^= 0x01
    hub = Hub(BINDKEY)
    assert hub.receive(bytes(tampered)) == {}
    assert hub.decoder.decryption_failed
    # The untouched advert still decodes: the refusal was the tampering, not the key.
    assert hub.receive(adv)["temperature"] == pytest.approx(-12.34)


def test_an_encrypted_node_at_another_address_fails_the_nonce() -> None:
    """The nonce includes the node's address: a MAC mix-up must not decode to garbage."""
    adv, _ = bthome.build_advert(
        CASES["indoor"], counter=1, encryptor=bthome.Encryptor(EcbCipher(BINDKEY), bytes(6))
    )
    assert Hub(BINDKEY).receive(adv) == {}


def test_counter_increases_across_adverts_and_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "counter.txt")
    hub = Hub(BINDKEY)
    seen: list[int] = []
    for boot in range(3):  # the node resets twice; the hub's decoder keeps running
        counter = AdvertCounter(path, block=4)
        for step in range(6):
            value = counter.next()
            readings = bthome.Readings(temperature=20 + boot + step / 10, motion=step % 2 == 0)
            adv, _ = bthome.build_advert(readings, value, encryptor())
            service = ad_structures(adv)[0x16]
            assert struct.unpack("<I", service[-8:-4])[0] == value
            got = hub.receive(adv)
            assert got["temperature"] == pytest.approx(readings.temperature)
            assert got["packet_id"] == value & 0xFF
            assert hub.decoder.encryption_counter == value
            seen.append(value)
    assert seen == sorted(set(seen)), "the counter must strictly increase, even over resets"


def test_the_decoder_drops_a_replayed_advert() -> None:
    """Why the counter must never go back: an older counter is refused as a replay."""
    hub = Hub(BINDKEY)
    old, _ = bthome.build_advert(bthome.Readings(motion=True), 1000, encryptor())
    new, _ = bthome.build_advert(bthome.Readings(motion=False), 1001, encryptor())
    assert hub.receive(old) == {"packet_id": 1000 & 0xFF, "motion": True}
    assert hub.receive(new) == {"packet_id": 1001 & 0xFF, "motion": False}
    assert hub.receive(old) == {"packet_id": 1001 & 0xFF, "motion": False}  # unchanged
    assert hub.decoder.encryption_counter == 1001


readings_strategy = st.builds(
    bthome.Readings,
    temperature=st.none() | st.decimals("-40", "85", places=2).map(float),
    humidity=st.none() | st.decimals("0", "100", places=2).map(float),
    pressure=st.none() | st.decimals("300", "1100", places=2).map(float),
    battery=st.none() | st.integers(0, 100),
    voltage=st.none() | st.decimals("0", "6", places=3).map(float),
    motion=st.none() | st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(readings=readings_strategy, counter=st.integers(0, 2**32 - 1), encrypted=st.booleans())
def test_any_reading_round_trips(readings: bthome.Readings, counter: int, encrypted: bool) -> None:
    adv, dropped = bthome.build_advert(readings, counter, encryptor() if encrypted else None)
    assert len(adv) <= bthome.MAX_ADVERT
    for name in dropped:
        readings = readings.without(name)
    got = Hub(BINDKEY if encrypted else None).receive(adv)
    assert_same(got, expected(readings, counter & 0xFF))


# --- advert size, ranges, names ----------------------------------------------------------


def test_everything_fits_plain_but_encryption_drops_the_optional_values() -> None:
    full = bthome.Readings(
        temperature=20.0, humidity=50.0, pressure=1000.0, battery=50, voltage=3.3, motion=True
    )
    plain, dropped = bthome.build_advert(full, 1)
    assert dropped == []
    assert len(plain) <= 31
    sealed, dropped = bthome.build_advert(full, 1, encryptor())
    assert dropped == ["pressure"]  # 8 bytes of counter and MIC leave no room for it
    assert len(sealed) == 31
    got = Hub(BINDKEY).receive(sealed)
    assert got.keys() == {"packet_id", "temperature", "humidity", "battery", "voltage", "motion"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 327.68),
        ("temperature", -327.69),
        ("humidity", -0.01),
        ("humidity", 100.01),
        ("battery", 101),
        ("battery", -1),
        ("voltage", 65.536),
        ("pressure", -1.0),
        ("temperature", math.nan),
        ("humidity", math.inf),
    ],
)
def test_a_value_the_field_cannot_hold_is_refused_not_wrapped(name: str, value: float) -> None:
    readings = bthome.Readings()
    setattr(readings, name, value)
    with pytest.raises(ValueError, match=name):
        bthome.encode_objects(readings, 0)


def test_objects_are_in_ascending_id_order() -> None:
    full = bthome.Readings(
        temperature=1.0, humidity=2.0, pressure=3.0, battery=4, voltage=5.0, motion=True
    )
    objects = bthome.encode_objects(full, 9)
    ids = [objects[0], objects[2], objects[4], objects[7], objects[10], objects[14], objects[17]]
    assert ids == [0x00, 0x01, 0x02, 0x03, 0x04, 0x0C, 0x21]
    assert len(objects) == 19


def test_scan_response_carries_the_name_and_shortens_a_long_one() -> None:
    assert ad_structures(bthome.scan_response("hearth-node-1E57")) == {0x09: b"hearth-node-1E57"}
    long = bthome.scan_response("x" * 40)
    assert len(long) == 31
    assert ad_structures(long) == {0x08: b"x" * 29}


def test_encryptor_needs_a_six_byte_address() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        bthome.Encryptor(EcbCipher(BINDKEY), b"\x01\x02")


# --- AES-CCM against an independent implementation ---------------------------------------


def test_ccm_matches_the_bthome_ble_encryption_example() -> None:
    """The worked example shipped in bthome_ble/bthome_v2_encryption.py (its own vectors)."""
    data = bytes.fromhex("02CA0903BF13")
    counter = 1122867
    mac = bytes.fromhex("5448E68F80A5")
    reference = encrypt_payload(
        data=data,
        mac=mac,
        uuid16=b"\xd2\xfc",
        sw_version=b"\x41",
        count_id=counter.to_bytes(4, "little"),
        key=BINDKEY,
    )
    ours = bthome.Encryptor(EcbCipher(BINDKEY), mac).service_data(data, counter)
    assert ours == reference[2:]  # theirs starts with the UUID


@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    nonce=st.integers(7, 13).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    plaintext=st.binary(max_size=70),
    aad=st.binary(max_size=40),
    tag_len=st.sampled_from([4, 6, 8, 10, 12, 14, 16]),
)
def test_ccm_matches_cryptography(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes, tag_len: int
) -> None:
    ciphertext, mic = aes_ccm.encrypt(EcbCipher(key), nonce, plaintext, aad, tag_len)
    assert len(ciphertext) == len(plaintext)
    assert ciphertext + mic == AESCCM(key, tag_length=tag_len).encrypt(nonce, plaintext, aad)


@pytest.mark.parametrize(
    ("nonce_len", "tag_len", "message"),
    [(6, 4, "nonce"), (14, 4, "nonce"), (13, 5, "tag"), (13, 2, "tag"), (13, 18, "tag")],
)
def test_ccm_refuses_bad_parameters(nonce_len: int, tag_len: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aes_ccm.encrypt(EcbCipher(BINDKEY), bytes(nonce_len), b"x", tag_len=tag_len)


# --- the counter's reservations ----------------------------------------------------------


def test_counter_writes_flash_once_per_block(tmp_path: Path) -> None:
    path = tmp_path / "counter.txt"
    counter = AdvertCounter(str(path), block=100)
    assert path.read_text() == "100"  # reserved before the first advert
    assert [counter.next() for _ in range(100)] == list(range(100))
    assert path.read_text() == "100"  # no write inside the block
    assert counter.next() == 100
    assert path.read_text() == "200"
    assert not (tmp_path / "counter.txt.new").exists()


def test_counter_after_a_reset_skips_ahead_never_back(tmp_path: Path) -> None:
    path = str(tmp_path / "counter.txt")
    first = AdvertCounter(path, block=50)
    used = [first.next() for _ in range(7)]
    second = AdvertCounter(path, block=50)  # power cut: RAM lost
    assert second.next() == 50 > max(used)


def test_counter_carried_over_deep_sleep_costs_no_write(tmp_path: Path) -> None:
    path = tmp_path / "counter.txt"
    path.write_text("1024")
    counter = AdvertCounter(str(path), block=1024, carried=300)
    assert counter.next() == 300
    assert path.read_text() == "1024"
    beyond = AdvertCounter(str(path), block=1024, carried=5000)  # stale or foreign: not trusted
    assert beyond.next() == 1024
    assert path.read_text() == "2048"


def test_counter_starts_at_zero_on_a_missing_or_damaged_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "counter.txt"
    assert AdvertCounter(str(path)).next() == 0
    path.write_text("garbage")
    assert AdvertCounter(str(path)).next() == 0


def test_counter_wraps_at_four_bytes(tmp_path: Path) -> None:
    path = tmp_path / "counter.txt"
    path.write_text(str(2**32 - 2))
    counter = AdvertCounter(str(path), block=10)
    assert [counter.next() for _ in range(3)] == [2**32 - 2, 2**32 - 1, 0]


# --- sensor drivers through a fake I2C bus -----------------------------------------------


class FakeBus:
    """machine.I2C at the edge: registers in a dict, every write recorded."""

    def __init__(self, registers: dict[int, int] | None = None, answer: bytes = b"") -> None:
        self.registers = dict(registers or {})
        self.answer = answer
        self.writes: list[tuple[int, bytes]] = []
        self.status_polls = 0

    def writeto(self, addr: int, buf: bytes, /) -> int:
        self.writes.append((addr, bytes(buf)))
        return len(buf)

    def readfrom(self, addr: int, nbytes: int, /) -> bytes:
        return self.answer[:nbytes]

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, /) -> bytes:
        if memaddr == 0xF3:  # BME280 status: busy for the first two polls
            self.status_polls += 1
            return bytes([0x08 if self.status_polls <= 2 else 0x00])
        return bytes(self.registers.get(memaddr + i, 0) for i in range(nbytes))

    def writeto_mem(self, addr: int, memaddr: int, buf: bytes, /) -> None:
        self.writes.append((memaddr, bytes(buf)))


def test_sht31_crc_matches_the_datasheet_example() -> None:
    assert sht31.crc8(b"\xbe\xef") == 0x92  # Sensirion SHT3x datasheet, CRC example


def sht31_frame(raw_t: int, raw_rh: int) -> bytes:
    t, rh = struct.pack(">H", raw_t), struct.pack(">H", raw_rh)
    return t + bytes([sht31.crc8(t)]) + rh + bytes([sht31.crc8(rh)])


def test_sht31_reads_and_converts_a_measurement() -> None:
    raw_t, raw_rh = 0x6666, 0x8000  # 40 % and 50 % of full scale
    frame = sht31_frame(raw_t, raw_rh)
    waits: list[int] = []
    sensor = sht31.SHT31(FakeBus(answer=frame), waits.append)
    temperature, humidity = sensor.read()
    assert temperature == pytest.approx(-45 + 175 * 0x6666 / 65535)
    assert humidity == pytest.approx(100 * 0x8000 / 65535)
    assert sensor.i2c.writes == [(0x44, b"\x24\x00")]  # type: ignore[attr-defined]
    assert waits and waits[0] >= 16  # waited out the measurement before reading


def test_sht31_refuses_a_corrupted_answer() -> None:
    frame = bytes([0x66, 0x66, 0x00, 0x80, 0x00, 0x00])
    with pytest.raises(ValueError, match="CRC"):
        sht31.convert(frame)


def test_sht31_extremes_of_the_scale() -> None:
    assert sht31.convert(sht31_frame(0, 0)) == (-45.0, 0.0)
    assert sht31.convert(sht31_frame(0xFFFF, 0xFFFF)) == (130.0, 100.0)


# The BMP280 datasheet's worked example (the BME280 uses the same temperature and pressure
# compensation): these trimming values and raw readings give 25.08 °C and 100653.27 Pa.
BMP280_EXAMPLE_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)


def calibration_registers(
    tp: tuple[int, ...], h1: int, h2: int, h3: int, h4: int, h5: int, h6: int
) -> dict[int, int]:
    """A BME280's trimming registers laid out as the datasheet's table 16 has them."""
    regs: dict[int, int] = {}
    for i, byte in enumerate(struct.pack("<HhhHhhhhhhhh", *tp)):
        regs[0x88 + i] = byte
    regs[0xA1] = h1
    e1e2 = struct.pack("<h", h2)
    regs[0xE1], regs[0xE2], regs[0xE3] = e1e2[0], e1e2[1], h3
    regs[0xE4] = (h4 >> 4) & 0xFF
    regs[0xE5] = ((h5 & 0x0F) << 4) | (h4 & 0x0F)
    regs[0xE6] = (h5 >> 4) & 0xFF
    regs[0xE7] = h6 & 0xFF
    regs[0xD0] = 0x60
    return regs


def calibration(h4: int = 313, h5: int = 50, h6: int = 30) -> bme280.Calibration:
    regs = calibration_registers(BMP280_EXAMPLE_TP, 75, 362, 0, h4, h5, h6)
    tp = bytes(regs[0x88 + i] for i in range(24))
    h = bytes(regs[0xE1 + i] for i in range(7))
    return bme280.Calibration(tp, regs[0xA1], h)


def test_bme280_temperature_and_pressure_match_the_datasheet_example() -> None:
    temperature, _, pressure = bme280.compensate(calibration(), 519888, 415148, 30000)
    assert temperature == 25.08
    assert pressure * 100 == pytest.approx(100653.27, abs=0.05)


def test_bme280_calibration_sign_extends_the_twelve_bit_values() -> None:
    cal = calibration(h4=-17, h5=-300, h6=-5)
    assert (cal.h4, cal.h5, cal.h6) == (-17, -300, -5)


def reference_humidity(cal: bme280.Calibration, adc_t: int, adc_h: int) -> float:
    """The datasheet's floating-point humidity formula: independent of the integer one."""
    var1 = (adc_t / 16384.0 - cal.t1 / 1024.0) * cal.t2
    var2 = (adc_t / 131072.0 - cal.t1 / 8192.0) ** 2 * cal.t3
    h = var1 + var2 - 76800.0
    h = (adc_h - (cal.h4 * 64.0 + cal.h5 / 16384.0 * h)) * (
        cal.h2 / 65536.0 * (1.0 + cal.h6 / 67108864.0 * h * (1.0 + cal.h3 / 67108864.0 * h))
    )
    h *= 1.0 - cal.h1 * h / 524288.0
    return min(max(h, 0.0), 100.0)


@pytest.mark.parametrize("adc_t", [400000, 519888, 600000])
@pytest.mark.parametrize("adc_h", [0, 20000, 27000, 35000, 45000, 65535])
def test_bme280_humidity_agrees_with_the_float_formula(adc_t: int, adc_h: int) -> None:
    cal = calibration()
    _, humidity, _ = bme280.compensate(cal, adc_t, 415148, adc_h)
    assert humidity == pytest.approx(reference_humidity(cal, adc_t, adc_h), abs=0.01)
    assert 0.0 <= humidity <= 100.0


def test_bme280_forced_measurement_through_the_bus() -> None:
    regs = calibration_registers(BMP280_EXAMPLE_TP, 75, 362, 0, 313, 50, 30)
    adc_p, adc_t, adc_h = 415148, 519888, 30000
    data = [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4]
    data += [adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4, adc_h >> 8, adc_h & 0xFF]
    regs.update({0xF7 + i: byte for i, byte in enumerate(data)})
    bus = FakeBus(regs)
    waits: list[int] = []
    sensor = bme280.BME280(bus, waits.append)
    temperature, humidity, pressure = sensor.read()
    assert (temperature, humidity, pressure) == bme280.compensate(sensor.cal, adc_t, adc_p, adc_h)
    assert temperature == 25.08
    registers_written = [reg for reg, _ in bus.writes]
    # Humidity oversampling must be set before ctrl_meas starts the forced measurement.
    assert registers_written == [0xF5, 0xF2, 0xF4]
    assert bus.writes[-1] == (0xF4, bytes([0x25]))
    assert len(waits) == 3  # polled until the status register said done


def test_bme280_refuses_another_chip() -> None:
    regs = calibration_registers(BMP280_EXAMPLE_TP, 75, 362, 0, 313, 50, 30)
    regs[0xD0] = 0x58  # a BMP280: no humidity
    with pytest.raises(ValueError, match="not a BME280"):
        bme280.BME280(FakeBus(regs), lambda ms: None)


# --- settings and battery ----------------------------------------------------------------


def test_the_shipped_config_is_valid() -> None:
    cfg = node_settings.from_module(shipped_config)
    assert cfg.bindkey is None  # the template ships without a key: each node gets its own
    assert cfg.sensor == "sht31"
    assert cfg.sleep_mode == "light"


def test_settings_report_every_problem_at_once_without_echoing_the_key() -> None:
    module = types.SimpleNamespace(
        BINDKEY="zz" * 16, SENSOR="dht22", INTERVAL_S=1, PIR_ACTIVE_HIGH="yes"
    )
    with pytest.raises(ValueError) as caught:
        node_settings.from_module(module)
    message = str(caught.value)
    for name in ("BINDKEY", "SENSOR", "INTERVAL_S", "PIR_ACTIVE_HIGH"):
        assert name in message
    assert "zz" * 16 not in message


def test_settings_refuse_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="BIND_KEY"):
        node_settings.from_module(types.SimpleNamespace(BIND_KEY="00" * 16))


def test_settings_take_a_bindkey_and_pins() -> None:
    module = types.SimpleNamespace(BINDKEY=BINDKEY.hex().upper(), PIR_PIN=15, SENSOR=None)
    cfg = node_settings.from_module(module)
    assert cfg.bindkey == BINDKEY
    assert cfg.pir_pin == 15
    assert cfg.sensor is None


@pytest.mark.parametrize(
    ("volts", "percent"), [(2.5, 0), (3.0, 0), (3.75, 50), (4.5, 100), (5.0, 100)]
)
def test_battery_percent_is_clamped_to_the_range(volts: float, percent: int) -> None:
    assert battery.percent(volts, 3.0, 4.5) == percent
