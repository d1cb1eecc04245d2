"""Real BLE advert payloads for every decoder family, as data.

Each vector is a byte payload from the named decoder library's own test suite (the
Bluetooth-Devices repositories on GitHub), with the address, name and bindkey that test used
and the values that library decodes it to, written in our Quantity vocabulary. Where an
upstream test used a macOS-style UUID or 00:00:00:00:00:00 as the address we give a MAC
instead (the payloads below do not depend on it); where a payload carries its own MAC (Ruuvi)
that MAC is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.events import Quantity

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
MIBEACON_UUID = "0000fe95-0000-1000-8000-00805f9b34fb"
GOVEE_UUID = "0000ec88-0000-1000-8000-00805f9b34fb"
RUUVI_COMPANY = 0x0499

T, H, B = Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY


@dataclass(frozen=True)
class Vector:
    key: str
    family: str
    address: str
    name: str | None
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    bindkey: bytes | None = None
    states: dict[Quantity, float] = field(default_factory=dict)  # as stored, in our units
    events: tuple[Quantity, ...] = ()  # transient: a press, a motion trigger


States = dict[Quantity, float]


def _bthome(
    key: str,
    payload: bytes,
    *,
    name: str = "TEST DEVICE",
    address: str = "A4:C1:38:8D:18:B2",
    bindkey: bytes | None = None,
    states: States | None = None,
    events: tuple[Quantity, ...] = (),
) -> Vector:
    return Vector(
        key,
        "bthome",
        address,
        name,
        service_data={BTHOME_UUID: payload},
        bindkey=bindkey,
        states=states or {},
        events=events,
    )


def _xiaomi(
    key: str,
    address: str,
    payload: bytes,
    *,
    bindkey: bytes | None = None,
    states: States | None = None,
    events: tuple[Quantity, ...] = (),
) -> Vector:
    return Vector(
        key,
        "xiaomi",
        address,
        "Test",
        service_data={MIBEACON_UUID: payload},
        service_uuids=(MIBEACON_UUID,),
        bindkey=bindkey,
        states=states or {},
        events=events,
    )


def _govee(
    key: str,
    address: str,
    name: str,
    manufacturer_data: dict[int, bytes],
    *,
    service_uuids: tuple[str, ...] = (),
    states: States | None = None,
    events: tuple[Quantity, ...] = (),
) -> Vector:
    return Vector(
        key,
        "govee",
        address,
        name,
        manufacturer_data=manufacturer_data,
        service_uuids=service_uuids,
        states=states or {},
        events=events,
    )


def _ruuvi(key: str, address: str, payload_hex: str, *, states: States | None = None) -> Vector:
    return Vector(
        key,
        "ruuvitag",
        address,
        "Ruuvi",
        manufacturer_data={RUUVI_COMPANY: bytes.fromhex(payload_hex)},
        states=states or {},
    )


BTHOME_BINDKEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")

# --- bthome-ble, tests/test_parser_v2.py ------------------------------------------------------
BTHOME = [
    # test_bthome_temperature_humidity
    _bthome("bthome-temp-humidity", b"\x40\x02\xca\x09\x03\xbf\x13", name="ATC_8D18B2",
            states={T: 25.06, H: 50.55}),
    # test_shelly_blu_ht_display_zb (packet id 46; its "light" binary has no Quantity)
    _bthome("bthome-shelly-ht", b"\x40\x00\x2e\x01\x64\x1e\x01\x2e\x34\x45\x16\x01",
            name="SBHT-103C", address="54:48:E6:8F:80:A5", states={B: 100, T: 27.8, H: 52}),
    # test_mac_as_name (pressure in mbar, which is hPa)
    _bthome("bthome-pressure", b"\x40\x04\x13\x8a\x01", name="A4:C1:38:8D:18:B2",
            states={Quantity.PRESSURE: 1008.83}),
    # test_bthome_illuminance
    _bthome("bthome-illuminance", b"\x40\x05\x13\x8a\x14",
            states={Quantity.ILLUMINANCE: 13460.67}),
    # test_bthome_co2
    _bthome("bthome-co2", b"\x40\x12\xe2\x04", states={Quantity.CO2: 1250}),
    # test_bthome_pm (PM10 7170 has no Quantity)
    _bthome("bthome-pm", b"\x40\x0d\x12\x0c\x0e\x02\x1c", states={Quantity.PM25: 3090}),
    # test_bthome_voltage
    _bthome("bthome-voltage", b"\x40\x0c\x02\x0c", states={Quantity.VOLTAGE: 3.074}),
    # test_bthome_battery_wrong_oobject_id_humidity (humidity after the bad id is not read)
    _bthome("bthome-battery", b"\x40\x01\x5d\xfe\x5d\x09\x03\xb7\x18", states={B: 93}),
    # test_bthome_binary_sensor_opening (closed)
    _bthome("bthome-opening", b"\x40\x11\x00", states={Quantity.CONTACT: 0}),
    # test_bthome_binary_sensor_window (open)
    _bthome("bthome-window", b"\x40\x2d\x01", name="SBDW-002C", states={Quantity.CONTACT: 1}),
    # test_bthome_event_button_long_press
    _bthome("bthome-button", b"\x40\x3a\x04", name="SBBT-002C", events=(Quantity.BUTTON,)),
    # test_bindkey_correct: encrypted BTHome v2
    _bthome("bthome-encrypted",
            b"\x41\xa4\x72\x66\xc9\x5f\x73\x00\x11\x22\x33\x78\x23\x72\x14",
            name="SBHT-003C", address="54:48:E6:8F:80:A5", bindkey=BTHOME_BINDKEY,
            states={T: 25.06, H: 50.55}),
]  # fmt: skip

# test_increasing_encryption_counter / test_decreasing_encryption_counter: one device, same
# bindkey, encryption counters 1122867, 1122868, then 1122866 (a replay the decoder refuses
# once it has seen a higher counter). All three decrypt to 25.06 °C and 50.55 %.
BTHOME_COUNTER_ADDRESS = "54:48:E6:8F:80:A5"
BTHOME_COUNTER_1122867 = b"\x41\xe4\x45\xf3\xc9\x96\x2b\x33\x22\x11\x00\x6c\x7c\x45\x19"
BTHOME_COUNTER_1122868 = b"\x41\x3e\x93\x2c\xc7\x17\x5f\x34\x22\x11\x00\x55\x38\x76\xaf"
BTHOME_COUNTER_1122866 = b"\x41\x72\x3d\x30\x35\xfb\x88\x32\x22\x11\x00\x9e\x74\x14\xc0"

# --- xiaomi-ble, tests/test_parser.py ---------------------------------------------------------
XIAOMI = [
    # test_Xiaomi_LYWSDCGQ
    _xiaomi("xiaomi-lywsdcgq", "58:2D:34:35:93:21",
            b"P \xaa\x01\xda!\x9354-X\r\x10\x04\xfe\x00H\x02", states={T: 25.4, H: 58.4}),
    # test_Xiaomi_LYWSD03MMC_encrypted (MiBeacon v5, bindkey)
    _xiaomi("xiaomi-lywsd03mmc-encrypted", "A4:C1:38:02:83:F4",
            b"XX[\x05P\xf4\x83\x028\xc1\xa4\x95\xefXv<&\x00\x00\x97\xe2\xab\xb5",
            bindkey=bytes.fromhex("e9ea895fac7cca6d30532432a516f3a8"), states={H: 46}),
    # test_Xiaomi_MCCGQ02HL: encrypted door sensor, open ("door left open" has no Quantity)
    _xiaomi("xiaomi-mccgq02hl-door", "E4:AA:EC:81:21:AE",
            b"XX\x8b\t\xa3\xae!\x81\xec\xaa\xe4\x0e,U<\x04\x00\x00\xd2\x8aP\x0c",
            bindkey=bytes.fromhex("017e52d2684779298709b117c0a75a7b"),
            states={Quantity.CONTACT: 1}),
    # test_Xiaomi_CGH1: door/window sensor, opened
    _xiaomi("xiaomi-cgh1-door", "A4:C1:38:0A:03:D6",
            b"P@\xd6\x03\x01\xd6\x03\n8\xc1\xa4\x19\x10\x01\x00", states={Quantity.CONTACT: 1}),
    # test_Xiaomi_MJYD02YL: motion (its "light" binary has no Quantity)
    _xiaomi("xiaomi-mjyd02yl-motion", "A4:C1:38:07:F6:01",
            b"P@\xf6\x07\x01\x01\xf6\x078\xc1\xa4\x0f\x00\x03d\x00\x00",
            states={Quantity.MOTION: 1}),
    # test_Xiaomi_MUE4094RT: motion sent only as an event
    _xiaomi("xiaomi-mue4094rt-motion-event", "DE:70:E8:B2:39:0C",
            b"@0\xdd\x03$\x03\x00\x01\x01", events=(Quantity.MOTION,)),
    # Not from xiaomi-ble's own suite, which has no wet/dry vector: ble_monitor's
    # (custom-components/ble_monitor, tests/test_xiaomi_parser.py, test_Xiaomi_SJWS01LM),
    # the parser xiaomi-ble was derived from; the MiBeacon service data of its HCI packet.
    # Encrypted flood detector: water detected.
    _xiaomi("xiaomi-sjws01lm-leak", "54:EF:44:E0:27:BC",
            b"XYc\x08\x08\xbc'\xe0D\xefT\xf5\x8f\xe7\x04\x00\x00\x00\xfci\xd1\\",
            bindkey=bytes.fromhex("255e6cabb39b2eddd0de992b9fee2bf2"), states={Quantity.LEAK: 1}),
    # test_Xiaomi_SJWS01LM: the flood detector's button, pressed
    _xiaomi("xiaomi-sjws01lm-button", "A4:C1:38:08:63:01",
            b"P@c\x08\x01\x01c\x088\xc1\xa4\x01\x10\x03\x00\x00\x00", events=(Quantity.BUTTON,)),
]  # fmt: skip

# --- govee-ble, tests/test_parser.py ----------------------------------------------------------
GOVEE = [
    # GVH5075_SERVICE_INFO_2
    _govee("govee-h5075", "A4:C1:38:DD:DB:F8", "GVH5075_DBF8", {60552: b"\x00\x03M\xb2d\x00"},
           service_uuids=(GOVEE_UUID,), states={T: 21.6, H: 49.8, B: 100}),
    # GVH5179_SERVICE_INFO_2 (an iBeacon frame under Apple's id rides along)
    _govee("govee-h5179", "D1:06:03:06:63:19", "GV5179_6319",
           {1: b"\x01\x01\x03\xb3\x14d", 76: b"\x02\x15INTELLI_ROCKS_HWPu\xf2\xff\x0c"},
           service_uuids=(GOVEE_UUID,), states={T: 24.2, H: 45.2, B: 100}),
    # GVH5106_SERVICE_INFO: air quality
    _govee("govee-h5106-pm25", "CC:32:37:35:4E:05", "GVH5106_4E05", {1: b"\x01\x01\x0e\xd12\x98"},
           service_uuids=(GOVEE_UUID,), states={T: 24.8, H: 59.1, Quantity.PM25: 0}),
    # GVH5121_MOTION_SERVICE_INFO: encrypted motion sensor, a motion event
    _govee("govee-h5121-motion", "C1:37:37:32:0F:45", "GV5121195A",
           {61320: b"Y\x94\x00\x00\xf0\xb9\x197\xaeP\xb67,\x86j\xc2\xf3\xd0a\xe7\x17\xc0,\xef"},
           states={B: 100}, events=(Quantity.MOTION,)),
    # GVH5123_OPEN_SERVICE_INFO / GVH5123_CLOSED_SERVICE_INFO: door/window sensor
    _govee("govee-h5123-open", "C1:37:37:32:0F:45", "GV51230B3D",
           {61320: b"=\xec\x00\x00\xdeCw\xd5^U\xf9\x91In6\xbd\xc6\x7f\x8b,'\x06t\x97"},
           states={B: 100, Quantity.CONTACT: 1}),
    _govee("govee-h5123-closed", "C1:37:37:32:0F:45", "GV51230B3D",
           {61320: b"=\xec\x00\x01Y\xdbk\xd9\xbe\xd7\xaf\xf7*&\xaaK\xd7-\xfa\x94W>[\xe9"},
           states={B: 100, Quantity.CONTACT: 0}),
    # GVH5127_MOTION_SERVICE_INFO: presence sensor, present and moving
    _govee("govee-h5127-presence", "D0:C9:07:1B:5E:3F", "GVH51275E3F",
           {34819: b"\xec\x00\x01\x01\x01\x11"},
           states={Quantity.OCCUPANCY: 1, Quantity.MOTION: 1}),
    # GVH5130_ON_SERVICE_INFO: pressure mat, pressed
    _govee("govee-h5130-mat", "D3:21:C6:06:74:79", "GV51307479",
           {61320: b"Gu\x00\xaegP\xfa4GDQFI \x85\xc2v\x10\xea\x02\xb3\xa0\x06?"},
           states={B: 100, Quantity.OCCUPANCY: 1}),
    # GVH5122_BUTTON_0_SERVICE_INFO: button press
    _govee("govee-h5122-button", "C1:37:37:32:0F:45", "GV51225634",
           {60552: b"\x01\x08\xf3\n\xd2297V4\x01\x05",
            61320: b"\xf3\n\x00\x00d\x82H\xe8` b%\x88\xc0/\xd2X\xcb?\x1b\x85D\xd90"},
           states={B: 100}, events=(Quantity.BUTTON,)),
]  # fmt: skip

# --- ruuvitag-ble, tests/test_v5.py and tests/test_e1.py -----------------------------------
RUUVITAG = [
    # V5_OUTDOOR_SENSOR_DATA (battery 2395 mV)
    _ruuvi("ruuvitag-v5", "DE:AD:7B:3F:EF:AF",
           "0505a060a0c89afd34028cff006376726976dead7b3fefaf",
           states={T: 7.2, H: 61.84, Quantity.PRESSURE: 1013.54, Quantity.VOLTAGE: 2.395}),
    # E1_VALID_DATA (Ruuvi Air)
    _ruuvi("ruuvitag-e1-air", "CB:B8:33:4C:88:4F",
           "E1170C5668C79E0065007004BD11CA00C90A0213E0AC000000DECDEE110000000000CBB8334C884F",
           states={T: 29.5, H: 55.3, Quantity.PRESSURE: 1011.02, Quantity.PM25: 11.2,
                   Quantity.CO2: 201, Quantity.ILLUMINANCE: 13027.0}),
]  # fmt: skip

# E1_MAX_VALUES: every field at the top of its encoding (163.835 °C): no room reads that.
RUUVI_E1_MAX = _ruuvi(
    "ruuvitag-e1-max",
    "CB:B8:33:4C:88:4F",
    "E17FFF9C40FFFE27102710271027109C40FAFADC28F0000000FFFFFE3F0000000000CBB8334C884F",
)

ALL = BTHOME + XIAOMI + GOVEE + RUUVITAG
BY_KEY = {v.key: v for v in ALL}
FAMILIES = ("bthome", "xiaomi", "govee", "ruuvitag")
