"""The BLE advert pipeline, decoders and reporting policy, on real payloads from each decoder
library's own test suite (tests/ble_vectors.py) and a clock the test moves by hand."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest

from drivers.ble import pipeline as pipeline_module
from drivers.ble.decoders import DeviceDecoder, decode_once, identify_family
from drivers.ble.pipeline import AdvertPipeline, PairedDevice, RateLimitedLog
from drivers.ble.policy import ReportPolicy
from hub.config import ReportSection
from hub.events import Quantity, Reading, Stamp
from tests import ble_vectors as V
from tests.factories import T0

Q = Quantity
HEARTBEAT_S = 900.0
SENSOR = "lounge-climate"


class ManualClock:
    """A Clock whose time moves only when the test says; counts how often it is read."""

    def __init__(self) -> None:
        self.t = 0.0
        self.reads = 0

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def monotonic(self) -> float:
        self.reads += 1
        return self.t

    def wall(self) -> float:
        self.reads += 1
        return T0 + self.t

    def stamp(self) -> Stamp:
        self.reads += 1
        return Stamp(T0 + self.t, True, self.t)

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class Rig:
    """One pipeline, its clock and everything it emitted."""

    def __init__(
        self,
        *devices: PairedDevice,
        policy: ReportPolicy | None = None,
        emit: Callable[[Reading], None] | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.readings: list[Reading] = []
        self.policy = policy or ReportPolicy(HEARTBEAT_S, {Q.TEMPERATURE: 0.2, Q.RSSI: 10.0})
        self.pipeline = AdvertPipeline(
            devices, emit or self.readings.append, self.clock, self.policy
        )

    def send(self, v: V.Vector, *, rssi: int | None = -60, **override: Any) -> list[Reading]:
        """Deliver one advert as the scanner would; return the Readings it produced."""
        before = len(self.readings)
        fields: dict[str, Any] = {
            "address": v.address,
            "name": v.name,
            "rssi": rssi,
            "manufacturer_data": dict(v.manufacturer_data),
            "service_data": dict(v.service_data),
            "service_uuids": list(v.service_uuids),
        }
        fields.update(override)
        self.pipeline.on_advert(**fields)
        return self.readings[before:]

    def values(self, quantity: Quantity) -> list[float]:
        return [r.value for r in self.readings if r.quantity is quantity]


def paired(v: V.Vector, *, family: str | None = "as vector", sensor: str = SENSOR) -> PairedDevice:
    return PairedDevice(sensor, v.address, v.family if family == "as vector" else family, v.bindkey)


def bthome(payload: bytes, name: str = "TEST DEVICE") -> V.Vector:
    """A BTHome v2 advert from the vectors' usual test address."""
    return V.Vector("custom", "bthome", "A4:C1:38:8D:18:B2", name, {}, {V.BTHOME_UUID: payload})


def bthome_temperature(celsius: float, packet_id: int) -> V.Vector:
    """The bthome-temp-humidity vector's layout with a packet id and another temperature."""
    raw = round(celsius * 100).to_bytes(2, "little", signed=True)
    return bthome(b"\x40\x00" + bytes([packet_id % 256]) + b"\x02" + raw)


# --- every family, real payloads ---------------------------------------------------------


def test_the_vectors_cover_every_family_and_encryption() -> None:
    assert {v.family for v in V.ALL} == set(V.FAMILIES)
    assert any(v.family == "bthome" and v.bindkey for v in V.ALL)
    assert any(v.family == "xiaomi" and v.bindkey for v in V.ALL)
    covered = {q for v in V.ALL for q in (*v.states, *v.events)}
    assert covered == set(Quantity) - {Q.RSSI}  # RSSI comes from the radio, not a payload


@pytest.mark.parametrize("family_known", [True, False], ids=["paired-family", "recognised"])
@pytest.mark.parametrize("v", V.ALL, ids=lambda v: v.key)
def test_real_payload_becomes_readings(v: V.Vector, family_known: bool) -> None:
    rig = Rig(paired(v, family=v.family if family_known else None))
    rig.clock.advance(42.0)

    out = rig.send(v, rssi=-61)

    expected = {**v.states, **{q: 1.0 for q in v.events}, Q.RSSI: -61.0}
    got = {r.quantity: r.value for r in out}
    assert got == pytest.approx(expected)
    assert len(out) == len(expected)  # one Reading per quantity, nothing unmapped leaks
    assert {r.sensor_id for r in out} == {SENSOR}
    assert {r.stamp for r in out} == {Stamp(T0 + 42.0, True, 42.0)}  # stamped at reception
    assert rig.pipeline.stats.decoded == 1
    assert rig.pipeline.health()[SENSOR].family == v.family


@pytest.mark.parametrize("v", V.ALL, ids=lambda v: v.key)
def test_identify_family_and_decode_once(v: V.Vector) -> None:
    args = (v.name, v.manufacturer_data, v.service_data, list(v.service_uuids))
    assert identify_family(*args) == v.family
    decoded = decode_once(v.address, v.name, -60, *args[1:], bindkey=v.bindkey)
    assert decoded is not None
    assert decoded.family == v.family
    assert decoded.values == pytest.approx({**v.states, **{q: 1.0 for q in v.events}})
    assert not decoded.needs_bindkey
    assert decoded.name  # the library's name for it, e.g. "Shelly BLU H&T 80A5"


@pytest.mark.parametrize("key", ["bthome-encrypted", "xiaomi-mccgq02hl-door"])
def test_encrypted_advert_without_its_bindkey(key: str) -> None:
    v = V.BY_KEY[key]
    decoded = decode_once(
        v.address, v.name, -60, v.manufacturer_data, v.service_data, list(v.service_uuids)
    )
    assert decoded is not None
    assert (decoded.family, decoded.values, decoded.needs_bindkey) == (v.family, {}, True)

    rig = Rig(PairedDevice(SENSOR, v.address, v.family, None))
    assert [r.quantity for r in rig.send(v)] == [Q.RSSI]  # heard, but nothing to decode
    assert rig.pipeline.stats.no_values == 1


def test_adverts_no_decoder_recognises(monkeypatch: pytest.MonkeyPatch) -> None:
    apple = {76: b"\x10\x05\x01\x18\x4a\x2b\x7c"}
    assert identify_family("iPhone", apple, {}, []) is None
    assert decode_once("4C:11:22:33:44:55", "iPhone", -70, apple, {}, []) is None
    assert decode_once("4C:11:22:33:44:55", None, None, {}, {}, []) is None

    tries: list[object] = []

    def counting_identify(*args: Any) -> str | None:
        tries.append(args)
        return identify_family(*args)

    monkeypatch.setattr(pipeline_module, "identify_family", counting_identify)
    unknown = V.Vector("phone", "bthome", "4C:11:22:33:44:55", "iPhone", apple)
    rig = Rig(paired(unknown, family=None))
    rig.send(unknown)
    rig.send(unknown)  # the same again: counted the same, not tried a second time
    assert len(tries) == 1
    assert rig.pipeline.stats.unrecognised == 2
    assert rig.pipeline.decoder(SENSOR) is None
    assert rig.values(Q.RSSI) == [-60.0]  # the paired address was heard all the same


# --- the hot path ------------------------------------------------------------------------


def test_unpaired_advert_is_dropped_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    v = V.BY_KEY["bthome-temp-humidity"]
    rig = Rig(paired(v))
    reads = rig.clock.reads
    calls: list[object] = []
    monkeypatch.setattr(DeviceDecoder, "decode", lambda *a: calls.append(a))
    monkeypatch.setattr(pipeline_module, "identify_family", lambda *a: calls.append(a))

    rig.send(v, address="A4:C1:38:00:00:01")
    rig.send(v, address=v.address.lower())  # bleak gives BlueZ's upper case; nothing else matches

    assert rig.pipeline.stats.unpaired == 2
    assert (rig.readings, calls, rig.clock.reads) == ([], [], reads)  # not even the clock
    assert rig.pipeline.health()[SENSOR].adverts == 0


def test_identical_payload_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    v = V.BY_KEY["bthome-shelly-ht"]
    rig = Rig(paired(v))
    decode_calls = 0
    real_decode = DeviceDecoder.decode

    def counting_decode(self: DeviceDecoder, *args: Any) -> Any:
        nonlocal decode_calls
        decode_calls += 1
        return real_decode(self, *args)

    monkeypatch.setattr(DeviceDecoder, "decode", counting_decode)

    for _ in range(5):
        rig.clock.advance(2.0)
        rig.send(v, rssi=-60)
    assert decode_calls == 1
    stats = rig.pipeline.stats
    assert (stats.decoded, stats.unchanged) == (1, 4)
    health = rig.pipeline.health()[SENSOR]
    assert (health.adverts, health.last_heard_monotonic) == (5, 10.0)  # heard every time

    changed = V.BY_KEY["bthome-shelly-ht"].service_data[V.BTHOME_UUID].replace(b"\x2e", b"\x2f", 1)
    rig.send(v, service_data={V.BTHOME_UUID: changed})  # next packet id: decoded
    assert decode_calls == 2


def test_a_caller_reusing_its_dicts_cannot_fake_a_repeat() -> None:
    v = V.BY_KEY["bthome-temp-humidity"]
    rig = Rig(paired(v))
    shared = dict(v.service_data)
    rig.send(v, service_data=shared)
    shared[V.BTHOME_UUID] = b"\x40\x02\x00\x08"  # 20.48 °C, same dict object mutated
    rig.send(v, service_data=shared)
    assert rig.pipeline.stats.decoded == 2
    assert rig.values(Q.TEMPERATURE) == [25.06, 20.48]


def test_one_decoder_per_device_keeps_its_encryption_counter() -> None:
    """The decoder remembers the highest BTHome encryption counter it has accepted, so a
    replayed older advert yields nothing. That only works if the device keeps its decoder."""
    device = PairedDevice(SENSOR, V.BTHOME_COUNTER_ADDRESS, "bthome", V.BTHOME_BINDKEY)
    replay = V.Vector("replay", "bthome", V.BTHOME_COUNTER_ADDRESS, "SBHT-003C", {},
                      {V.BTHOME_UUID: V.BTHOME_COUNTER_1122866})  # fmt: skip

    fresh = Rig(device)
    fresh.send(replay)  # on its own, the oldest advert decodes
    assert fresh.values(Q.TEMPERATURE) == [25.06]

    rig = Rig(device)
    decoder = rig.pipeline.decoder(SENSOR)
    for payload in (V.BTHOME_COUNTER_1122867, V.BTHOME_COUNTER_1122868):
        rig.send(replay, service_data={V.BTHOME_UUID: payload})
    rig.send(replay)  # counter 1122866 after 1122868: refused by the same decoder
    stats = rig.pipeline.stats
    assert (stats.decoded, stats.no_values) == (3, 1)
    assert rig.pipeline.decoder(SENSOR) is decoder


def test_decoders_are_per_device() -> None:
    a, b = V.BY_KEY["bthome-temp-humidity"], V.BY_KEY["bthome-shelly-ht"]
    rig = Rig(paired(a, sensor="a"), paired(b, sensor="b"))
    rig.send(a)
    rig.send(b)
    first, second = rig.pipeline.decoder("a"), rig.pipeline.decoder("b")
    assert first is not None and second is not None and first is not second
    assert (first.address, second.address) == (a.address, b.address)


# --- reporting policy through the pipeline ------------------------------------------------


def test_deadband_is_measured_from_the_last_stored_value() -> None:
    rig = Rig(PairedDevice(SENSOR, "A4:C1:38:8D:18:B2", "bthome", None))
    for i, celsius in enumerate([21.1, 21.2, 21.29, 21.3, 21.45, 21.5, 21.0, 20.9]):
        rig.clock.advance(2.0)
        rig.send(bthome_temperature(celsius, i))
    # 21.2 and 21.29 are within 0.2 of 21.1; 21.3 is exactly 0.2 away (float noise and
    # all); 21.45 is within 0.2 of 21.3; 21.5 is 0.2 from 21.3; 21.0 is 0.5 below 21.5.
    assert rig.values(Q.TEMPERATURE) == [21.1, 21.3, 21.5, 21.0]
    assert rig.pipeline.stats.decoded == 8


def test_heartbeat_stores_a_steady_value_and_unchanged_adverts_still_count() -> None:
    v = V.BY_KEY["bthome-temp-humidity"]
    rig = Rig(paired(v))
    for _ in range(1800):  # one hour, an advert every 2 s, the same payload throughout
        rig.send(v, rssi=-60)
        rig.clock.advance(2.0)
    times = [r.stamp.monotonic for r in rig.readings if r.quantity is Q.TEMPERATURE]
    assert times == [0.0, 900.0, 1800.0, 2700.0]
    assert [r.stamp.monotonic for r in rig.readings if r.quantity is Q.RSSI] == times
    assert rig.pipeline.stats.decoded == 1 and rig.pipeline.stats.unchanged == 1799


def test_a_day_of_a_thermometer_every_2s_is_not_43200_rows() -> None:
    rig = Rig(
        PairedDevice(SENSOR, "A4:C1:38:8D:18:B2", "bthome", None),
        policy=ReportPolicy.from_config(ReportSection()),  # the shipped defaults
    )
    for i in range(43_200):
        celsius = 20.0 + 1.5 * math.sin(i / 43_200 * 2 * math.pi)  # a slow daily swing
        rig.send(bthome_temperature(round(celsius, 2), i), rssi=-60 - (i // 600) % 3)
        rig.clock.advance(2.0)
    rows = len(rig.readings)
    assert rig.pipeline.stats.decoded == 43_200
    temperatures = len(rig.values(Q.TEMPERATURE))
    assert 80 <= temperatures <= 96 + 40  # about one per heartbeat, plus 0.2 °C steps
    assert rows < 300, rig.pipeline.stats


def test_binary_states_are_stored_on_each_change_and_on_heartbeat() -> None:
    opened, closed = bthome(b"\x40\x00\x01\x11\x01"), bthome(b"\x40\x00\x02\x11\x00")
    rig = Rig(PairedDevice(SENSOR, opened.address, "bthome", None))
    sequence = [closed, closed, opened, opened, closed]
    for i, v in enumerate(sequence):
        rig.clock.advance(1.0)
        payload = bytearray(v.service_data[V.BTHOME_UUID])
        payload[2] = 10 + i  # a new packet id each time, as a real device sends
        rig.send(v, service_data={V.BTHOME_UUID: bytes(payload)})
    assert rig.values(Q.CONTACT) == [0.0, 1.0, 0.0]
    rig.clock.advance(HEARTBEAT_S)
    rig.send(v, service_data={V.BTHOME_UUID: bytes(payload)})  # unchanged, but due
    assert rig.values(Q.CONTACT) == [0.0, 1.0, 0.0, 0.0]


def test_events_bypass_the_policy_and_are_never_repeated_by_a_heartbeat() -> None:
    rig = Rig(PairedDevice(SENSOR, "A4:C1:38:8D:18:B2", "bthome", None))
    press_1, press_2 = bthome(b"\x40\x00\x01\x3a\x01"), bthome(b"\x40\x00\x02\x3a\x01")
    rig.send(press_1)
    rig.clock.advance(1.0)
    rig.send(press_2)  # a second press straight after: both reach the store
    assert rig.values(Q.BUTTON) == [1.0, 1.0]
    for _ in range(4):
        rig.clock.advance(HEARTBEAT_S)
        rig.send(press_2)  # the same advert heard again: not another press
    assert rig.values(Q.BUTTON) == [1.0, 1.0]
    assert rig.pipeline.stats.events == 2


def test_battery_and_rssi_are_health_and_readings() -> None:
    v = V.BY_KEY["bthome-shelly-ht"]
    rig = Rig(paired(v))
    assert rig.pipeline.health()[SENSOR].last_heard_monotonic is None
    rig.clock.advance(5.0)
    rig.send(v, rssi=-60)
    for rssi in (-65, -69, -71, -90, -127, None):  # -127 and None: no RSSI in the advert
        rig.clock.advance(2.0)
        rig.send(v, rssi=rssi)
    health = rig.pipeline.health()[SENSOR]
    assert (health.last_rssi, health.last_battery) == (-90, 100)
    assert (health.last_heard_monotonic, health.last_heard_wall) == (17.0, T0 + 17.0)
    assert health.adverts == 7 and health.family == "bthome" and health.address == v.address
    assert rig.values(Q.RSSI) == [-60.0, -71.0, -90.0]  # 10 dB deadband
    assert rig.values(Q.BATTERY) == [100.0]


# --- bad input -----------------------------------------------------------------------------


def test_implausible_values_make_a_bad_advert_that_changes_nothing() -> None:
    v = V.RUUVI_E1_MAX  # 163.8 °C: the top of every field's encoding
    rig = Rig(paired(v))
    rig.send(v)
    rig.send(v)  # the same again: counted again, not decoded again
    stats = rig.pipeline.stats
    assert (stats.bad_adverts, stats.decoded, stats.internal_errors) == (2, 0, 0)
    assert rig.readings == []
    health = rig.pipeline.health()[SENSOR]
    assert (health.adverts, health.last_heard_monotonic, health.last_rssi) == (0, None, None)


def test_a_decoder_that_raises_is_a_bad_advert() -> None:
    v = V.BY_KEY["ruuvitag-v5"]
    rig = Rig(paired(v))
    rig.send(v, manufacturer_data={V.RUUVI_COMPANY: b"\x05\x01\x02"})  # truncated: ValueError
    rig.send(v, manufacturer_data={V.RUUVI_COMPANY: b""})  # IndexError in the library
    assert rig.pipeline.stats.bad_adverts == 2
    assert rig.readings == []
    rig.send(v)  # the device recovers: a good advert is decoded as usual
    assert rig.values(Q.TEMPERATURE) == [7.2]


def test_bad_adverts_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    v = V.RUUVI_E1_MAX
    rig = Rig(paired(v))
    payload = bytearray(v.manufacturer_data[V.RUUVI_COMPANY])
    with caplog.at_level(logging.INFO):
        for i in range(2000):
            payload[20] = i % 256  # a different corrupt payload each time
            payload[21] = i // 256
            rig.send(v, manufacturer_data={V.RUUVI_COMPANY: bytes(payload)})
    assert rig.pipeline.stats.bad_adverts == 2000
    ours = [r for r in caplog.records if r.name == "drivers.ble.pipeline"]
    assert 1 <= len(ours) <= 5


def test_decoder_library_logs_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    """bthome-ble warns on every advert that fails to decrypt: a wrong key, or noise."""
    v = V.BY_KEY["bthome-encrypted"]
    rig = Rig(PairedDevice(SENSOR, v.address, "bthome", bytes(16)))  # the wrong key
    payload = bytearray(v.service_data[V.BTHOME_UUID])
    with caplog.at_level(logging.INFO):
        for i in range(500):
            payload[-5] = i % 256  # change the MIC: a new advert each time
            rig.send(v, service_data={V.BTHOME_UUID: bytes(payload)})
    library = [r for r in caplog.records if r.name.startswith("bthome_ble")]
    assert len(library) <= 11  # one window's budget (10), maybe one summary line
    assert rig.pipeline.stats.no_values == 500


def test_rate_limited_log_says_how_many_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), per_window=2, window_s=60.0,
                         now=lambda: now[0])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for _ in range(10):
            log.warning("noise %d", 1)
        now[0] = 61.0
        log.warning("noise %d", 2)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "noise 1",
        "noise 1",
        "8 more like this in the last 61 s were not logged",
        "noise 2",
    ]


def test_a_failing_emit_never_escapes() -> None:
    def broken(reading: Reading) -> None:
        raise OSError("queue closed")

    v = V.BY_KEY["bthome-temp-humidity"]
    rig = Rig(paired(v), emit=broken)
    rig.send(v)
    stats = rig.pipeline.stats
    assert (stats.emit_errors, stats.readings_emitted, stats.decoded) == (3, 0, 1)


def test_every_paired_advert_is_accounted_for_once() -> None:
    keys = ["bthome-shelly-ht", "xiaomi-lywsdcgq", "govee-h5075", "ruuvitag-v5"]
    rig = Rig(*(paired(v, sensor=v.key) for v in [*(V.BY_KEY[k] for k in keys), V.RUUVI_E1_MAX]))
    sent = 0
    for v in [*V.ALL, V.RUUVI_E1_MAX] * 3:
        rig.send(v)
        sent += 1
    s = rig.pipeline.stats
    assert s.unpaired + s.unchanged + s.unrecognised + s.bad_adverts + s.decoded == sent
    assert s.unchanged > 0 and s.bad_adverts == 3 and s.unpaired > 0


# --- configuration --------------------------------------------------------------------------


def test_pairing_mistakes_are_refused() -> None:
    v = V.BY_KEY["bthome-temp-humidity"]
    with pytest.raises(ValueError, match="both paired to A4:C1:38:8D:18:B2"):
        Rig(paired(v, sensor="a"), PairedDevice("b", v.address.lower(), None, None))
    with pytest.raises(ValueError, match="unknown BLE family"):
        Rig(PairedDevice(SENSOR, v.address, "ibeacon", None))
    with pytest.raises(ValueError, match="paired twice"):
        Rig(paired(v), PairedDevice(SENSOR, "A4:C1:38:00:00:01", None, None))


def test_policy_from_config() -> None:
    report = ReportSection.model_validate({"heartbeat_min": 5, "deadband": {"humidity": 3.0}})
    policy = ReportPolicy.from_config(report)
    assert policy.heartbeat_s == 300.0
    assert policy.should_store("s", Q.HUMIDITY, 50.0, 0.0)
    assert not policy.should_store("s", Q.HUMIDITY, 52.9, 1.0)
    assert policy.should_store("s", Q.HUMIDITY, 53.0, 2.0)
    assert policy.should_store("s", Q.TEMPERATURE, 20.0, 3.0)
    assert not policy.should_store("s", Q.TEMPERATURE, 20.1, 4.0)  # default 0.2 °C
    assert policy.due_at("s") == 2.0 + 300.0
    assert policy.due_at("never-seen") == math.inf


def test_policy_edges() -> None:
    policy = ReportPolicy(60.0, {Q.MOTION: 5.0})  # a deadband on a binary state is ignored
    assert policy.should_store("s", Q.MOTION, 0.0, 0.0)
    assert policy.should_store("s", Q.MOTION, 1.0, 1.0)
    assert not policy.should_store("s", Q.MOTION, 1.0, 2.0)
    assert policy.should_store("s", Q.MOTION, 1.0, 61.0)  # heartbeat
    assert not policy.should_store("s", Q.CO2, math.nan, 0.0)
    assert policy.should_store("s", Q.CO2, 400.0, 0.0)
    assert policy.should_store("s", Q.CO2, 401.0, 1.0)  # no deadband given: any change
    assert not policy.should_store("s", Q.CO2, 401.0, 2.0)  # but not no change
    assert policy.should_store("other", Q.CO2, 401.0, 2.0)  # per sensor
    policy.forget("s")
    assert policy.due_at("s") == math.inf
    with pytest.raises(ValueError):
        ReportPolicy(0.0, {})
    with pytest.raises(ValueError):
        ReportPolicy(60.0, {Q.TEMPERATURE: -1.0})
