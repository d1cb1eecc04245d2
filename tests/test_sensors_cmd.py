"""`hearth sensors add|remove|list|test` on real config files, mock pins and the fake BlueZ.

Refusals are checked byte for byte against the file as it was: a refused change writes
nothing. Pins are driven from a thread once the command is watching them, and adverts are
sent once BlueZ has a scan running, so nothing waits on a fixed sleep.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer
from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]
from typer.testing import CliRunner, Result

import provisioning.sensors
from drivers.gpio.mockpin import DebouncedMockPin
from hub.config import load_config
from hub.events import Quantity, Reading, Stamp
from hub.store import Store
from provisioning.sensors import live_test_gpio
from tests import fakebluez
from tests.ble_vectors import BY_KEY, Vector
from tests.fakebluez import FakeBlueZ
from tests.test_sensors_scan import send

fake_bluez = fakebluez.fake_bluez  # the fixture
WAIT_S = 10.0

ENCRYPTED = BY_KEY["bthome-encrypted"]
SHELLY = BY_KEY["bthome-shelly-ht"]  # unencrypted, with a battery level
assert ENCRYPTED.bindkey is not None
KEY = ENCRYPTED.bindkey.hex()
WRONG_KEY = "00112233445566778899aabbccddeeff"

BASE = """\
[hub]
name = "Test flat"
data_dir = "{data}"

[gpio]
pin_factory = "mock"

[[sensors]]
id = "front-door"
kind = "contact"
room = "Hallway"
role = "exit_door"
source = "gpio"
pin = 17

[[sensors]]
id = "bath-climate"
kind = "climate"
room = "Bathroom"
role = "bathroom"
source = "ble"
address = "A4:C1:38:00:00:01"

[checks.rooms.Bathroom.damp]
rh_high = 80.0
"""


def cli() -> typer.Typer:
    from provisioning.sensors_cmd import sensors_app

    app = typer.Typer()
    app.add_typer(sensors_app, name="sensors")
    return app


def sensors(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli(), ["sensors", *args, "--config", str(config)], input=input)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(BASE.format(data=tmp_path / "data"))
    path.chmod(0o640)
    return path


def listed(config: Path) -> dict[str, dict[str, Any]]:
    result = sensors(config, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["id"]: row for row in rows}


# -- add, list, remove ---------------------------------------------------------------------


def test_add_list_remove_round_trip_keeps_the_file_valid_and_its_mode(config: Path) -> None:
    added = sensors(
        config,
        *("add", "--id", "pull-cord", "--kind", "button", "--room", "Bathroom"),
        *("--role", "bathroom", "--pin", "22", "--no-pull-up", "--hold-s", "1.5"),
    )
    assert added.exit_code == 0, added.output
    assert "added pull-cord (button in Bathroom, GPIO 22)" in added.stdout
    ble = sensors(
        config,
        *("add", "--id", "lounge", "--kind", "climate", "--room", "Lounge"),
        *("--address", "54-48-e6-8f-80-a5", "--family", "bthome", "--bindkey", KEY.upper()),
        "--no-verify",
    )
    assert ble.exit_code == 0, ble.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o640

    cfg = load_config(config)  # what `hearth run` would read
    cord = next(s for s in cfg.sensors if s.id == "pull-cord")
    assert (cord.pin, cord.pull_up, cord.hold_s, cord.role) == (22, False, 1.5, "bathroom")
    lounge = next(s for s in cfg.sensors if s.id == "lounge")
    assert (lounge.address, lounge.bindkey) == (ENCRYPTED.address, KEY)
    assert cfg.checks.rooms["Bathroom"].damp == {"rh_high": 80.0}  # untouched by the rewrite

    rows = listed(config)
    assert list(rows) == ["front-door", "bath-climate", "pull-cord", "lounge"]
    assert rows["pull-cord"] | {"last_heard": None} == {
        "id": "pull-cord",
        "kind": "button",
        "room": "Bathroom",
        "role": "bathroom",
        "source": "gpio",
        "pin": 22,
        "address": None,
        "family": None,
        "bindkey_set": False,
        "last_heard": None,
        "battery": None,
    }
    assert rows["lounge"]["bindkey_set"] is True and rows["lounge"]["family"] == "bthome"

    removed = sensors(config, "remove", "pull-cord")
    assert removed.exit_code == 0, removed.output
    assert "removed pull-cord (button in Bathroom)" in removed.stdout
    assert list(listed(config)) == ["front-door", "bath-climate", "lounge"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_a_bindkey_makes_a_world_readable_file_private(config: Path) -> None:
    config.chmod(0o644)
    result = sensors(
        config,
        *("add", "--id", "lounge", "--kind", "climate", "--room", "Lounge"),
        *("--address", ENCRYPTED.address, "--bindkey", "-", "--no-verify"),
        input=KEY + "\n",  # from standard input: never in the shell history
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert load_config(config).sensors[-1].bindkey == KEY


def test_list_shows_last_heard_and_battery_from_the_buffer_and_never_the_key(
    config: Path, tmp_path: Path
) -> None:
    added = sensors(
        config,
        *("add", "--id", "lounge", "--kind", "climate", "--room", "Lounge"),
        *("--address", ENCRYPTED.address, "--bindkey", KEY, "--no-verify"),
    )
    assert added.exit_code == 0, added.output
    cfg = load_config(config)
    store = Store.open(cfg.store_path)  # the hub has run; list reads its buffer read-only
    try:
        store.commit(
            [
                Reading("bath-climate", Quantity.TEMPERATURE, 19.5, Stamp(1_700_000_000, True, 0)),
                Reading("bath-climate", Quantity.BATTERY, 87.0, Stamp(1_700_000_100, True, 0)),
                Reading("front-door", Quantity.CONTACT, 1.0, Stamp(1_700_000_200, True, 0)),
            ]
        )
        rows = listed(config)  # while the store is open, as beside the running service
        table = sensors(config, "list")
    finally:
        store.close()
    assert rows["bath-climate"]["last_heard"] == 1_700_000_100
    assert rows["bath-climate"]["battery"] == 87.0
    assert rows["front-door"]["last_heard"] == 1_700_000_200
    assert rows["front-door"]["battery"] is None
    assert rows["lounge"]["last_heard"] is None
    assert table.exit_code == 0, table.output
    assert "87 %" in table.stdout and "never" in table.stdout and "set" in table.stdout
    for output in (table.output, json.dumps(rows)):
        assert KEY not in output.lower()


def test_list_without_a_buffer_says_the_hub_has_not_run(config: Path) -> None:
    result = sensors(config, "list")
    assert result.exit_code == 0, result.output
    assert "front-door" in result.stdout and "never" in result.stdout
    assert "the hub has not run" in result.stderr and "2 sensors" in result.stderr


GPIO = ("--kind", "contact", "--room", "Hallway")
BLE = ("--kind", "climate", "--room", "Lounge")


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (
            ("--id", "front-door", *GPIO, "--pin", "5"),
            ["--id: sensor id 'front-door' is already used by 'front-door' (contact in Hallway,"
             " GPIO 17)", "hearth sensors remove front-door"],
        ),
        (
            ("--id", "back-door", *GPIO, "--pin", "17"),
            ["--pin: GPIO 17 is already used by 'front-door' (contact in Hallway, GPIO 17)"],
        ),
        (
            ("--id", "lounge", *BLE, "--address", "a4-c1-38-00-00-01"),
            ["--address: A4:C1:38:00:00:01 is already paired as 'bath-climate' (climate in"
             " Bathroom, A4:C1:38:00:00:01)"],
        ),
        (
            ("--id", "Back Door", "--kind", "contcat", "--room", " ", "--pin", "31"),
            ["--id: 'Back Door' is not a valid sensor id", "--kind: 'contcat' is not one of:",
             "(did you mean 'contact'?)", "--room: must not be empty",
             "--pin: 31 is not a GPIO pin on a Raspberry Pi (0-27)"],
        ),
        (
            ("--id", "lounge", *BLE, "--pin", "5"),
            ["--pin: a climate sensor cannot be wired to GPIO (gpio is only for: motion,"],
        ),
        (
            ("--id", "back-door", *GPIO, "--pin", "5", "--hold-s", "2"),
            ["--hold-s: only applies to button sensors (this one is 'contact')"],
        ),
        (
            ("--id", "back-door", *GPIO, "--pin", "5", "--role", "exitdoor"),
            ["--role: 'exitdoor' is not one of:", "(did you mean 'exit_door'?)"],
        ),
        (
            ("--id", "lounge", *BLE, "--address", "A4:C1:38:00:00:02", "--bindkey", "abc1"),
            ["--bindkey: must be exactly 32 hexadecimal characters, got 4"],
        ),
        (
            ("--id", "lounge", *BLE, "--address", "A4:C1:38:00:00:02", "--family", "ruuvitag",
             "--bindkey", KEY),
            ["--bindkey: ruuvitag sensors are not encrypted; remove the bindkey"],
        ),
        (
            ("--id", "lounge", *BLE, "--address", "A4:C1:38:00:00:02", "--pull-up"),
            ["--pull-up/--no-pull-up: only applies when source is 'gpio'"],
        ),
        (("--id", "lounge", *BLE), ["give either --pin (a wired sensor) or --address"]),
        (
            ("--id", "lounge", *GPIO, "--pin", "5", "--address", "A4:C1:38:00:00:02"),
            ["give either --pin (a wired sensor) or --address"],
        ),
        (
            ("--id", "back-door", *GPIO, "--pin", "5", "--verify"),
            ["--verify is for Bluetooth sensors; test a wired one with: hearth sensors test"],
        ),
    ],
    ids=[
        "duplicate-id", "duplicate-pin", "duplicate-address", "several-bad-fields",
        "ble-kind-on-a-pin", "gpio-field-for-contact", "bad-role", "short-bindkey",
        "key-for-ruuvi",
        "gpio-flag-on-ble", "neither-pin-nor-address", "both", "verify-a-wired-sensor",
    ],
)  # fmt: skip
def test_add_refuses_bad_input_naming_the_flag_and_writes_nothing(
    config: Path, args: tuple[str, ...], messages: list[str]
) -> None:
    before = config.read_bytes()
    result = sensors(config, "add", *args)
    assert result.exit_code == 2, result.output
    for message in messages:
        assert message in result.stderr
    assert "Traceback" not in result.output
    assert config.read_bytes() == before


def test_add_to_a_broken_config_refuses_and_says_to_fix_it_first(config: Path) -> None:
    config.write_text(config.read_text() + "\n[store]\nquota_mb = -1\n")
    before = config.read_bytes()
    result = sensors(config, "add", "--id", "back-door", *GPIO, "--pin", "5")
    assert result.exit_code == 2
    assert "store.quota_mb: must be at least 1" in result.stderr
    assert f"fix the file first (hearth config check {config})" in result.stderr
    assert config.read_bytes() == before


def test_remove_an_unknown_sensor_suggests_the_close_one(config: Path) -> None:
    before = config.read_bytes()
    result = sensors(config, "remove", "front-dor")
    assert result.exit_code == 2
    assert (
        "no sensor 'front-dor'" in result.stderr and "did you mean 'front-door'?" in result.stderr
    )
    assert "sensors: front-door, bath-climate" in result.stderr
    assert config.read_bytes() == before


def test_removing_the_last_sensor_of_a_room_with_its_own_checks_is_refused_unless_asked(
    config: Path,
) -> None:
    before = config.read_bytes()
    refused = sensors(config, "remove", "bath-climate")
    assert refused.exit_code == 2
    assert "'bath-climate' is the last sensor in 'Bathroom', which has its own check" in (
        refused.stderr
    )
    assert "add the new one first" in refused.stderr and "--drop-room-checks" in refused.stderr
    assert config.read_bytes() == before

    dropped = sensors(config, "remove", "bath-climate", "--drop-room-checks")
    assert dropped.exit_code == 0, dropped.output
    assert "removed the check settings of room 'Bathroom'" in dropped.stdout
    cfg = load_config(config)
    assert [s.id for s in cfg.sensors] == ["front-door"] and cfg.checks.rooms == {}


def test_a_room_keeps_its_checks_while_another_sensor_is_in_it(config: Path) -> None:
    added = sensors(
        config, "add", "--id", "bath-motion", "--kind", "motion", "--room", "Bathroom",
        "--pin", "4",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    removed = sensors(config, "remove", "bath-climate")
    assert removed.exit_code == 0, removed.output
    assert load_config(config).checks.rooms["Bathroom"].damp == {"rh_high": 80.0}


# -- bindkey verification (fake BlueZ) -----------------------------------------------------


@contextmanager
def on_air(fake: FakeBlueZ, *vectors: Vector, rssi: int = -55) -> Iterator[None]:
    """The sensors advertise as soon as someone scans (a phone too, which nobody wants)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            fake.wait_until(lambda: fake.listening)
            fake.advertise("7C:11:22:33:44:55", rssi=-80, manufacturer_data={0x004C: b"\x10"})
            for v in vectors:
                send(fake, v, rssi)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    thread.join(WAIT_S)
    assert not failures, failures


def add_encrypted(config: Path, key: str, *extra: str) -> Result:
    return sensors(
        config,
        *("add", "--id", "lounge", *BLE, "--address", ENCRYPTED.address, "--bindkey", key),
        *extra,
    )


@pytest.mark.ci_required
def test_add_proves_the_bindkey_by_decoding_an_advert(fake_bluez: FakeBlueZ, config: Path) -> None:
    started = time.monotonic()
    with on_air(fake_bluez, ENCRYPTED):
        result = add_encrypted(config, KEY)  # verify is on by default with a key
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30, "it listened on after the advert decoded"
    assert "bindkey checked: decoded an advert from 54:48:E6:8F:80:A5" in result.stderr
    assert "humidity 50.55, temperature 25.06" in result.stderr
    assert load_config(config).sensors[-1].bindkey == KEY
    assert fake_bluez.discovering is False  # the scan was stopped


@pytest.mark.ci_required
def test_add_with_a_wrong_bindkey_is_refused_and_writes_nothing(
    fake_bluez: FakeBlueZ, config: Path
) -> None:
    before = config.read_bytes()
    with on_air(fake_bluez, ENCRYPTED):
        result = add_encrypted(config, WRONG_KEY, "--verify-seconds", "1.5")
    assert result.exit_code == 2
    assert "encrypted advert(s) from 54:48:E6:8F:80:A5 but the bindkey does not decrypt" in (
        result.stderr
    )
    assert "the key is wrong" in result.stderr and "nothing was written" in result.stderr
    assert WRONG_KEY not in result.output
    assert config.read_bytes() == before


@pytest.mark.ci_required
def test_add_of_a_sensor_not_heard_is_refused_with_the_reasons(
    fake_bluez: FakeBlueZ, config: Path
) -> None:
    before = config.read_bytes()
    result = add_encrypted(config, KEY, "--verify-seconds", "1")
    assert result.exit_code == 2
    assert "nothing heard from 54:48:E6:8F:80:A5 in 1 s" in result.stderr
    assert "within range" in result.stderr and "check the address" in result.stderr
    assert config.read_bytes() == before


@pytest.mark.ci_required
def test_without_an_adapter_the_key_is_added_unchecked_unless_verify_was_asked(
    fake_bluez: FakeBlueZ, config: Path
) -> None:
    fake_bluez.remove_adapter()
    before = config.read_bytes()
    asked = add_encrypted(config, KEY, "--verify")
    assert asked.exit_code == 2
    assert "cannot check the sensor: no Bluetooth adapter found" in asked.stderr
    assert "--no-verify" in asked.stderr
    assert config.read_bytes() == before

    default = add_encrypted(config, KEY)
    assert default.exit_code == 0, default.output
    assert "warning: bindkey not checked (no Bluetooth adapter found" in default.stderr
    assert load_config(config).sensors[-1].id == "lounge"


# -- live test: GPIO -----------------------------------------------------------------------


class WatchedPin(DebouncedMockPin):
    """A mock pin that tells the test when someone starts watching it for edges."""

    watched: threading.Event

    def _enable_event_detect(self) -> None:
        super()._enable_event_detect()
        self.watched.set()


@pytest.fixture
def pins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The project's debounced mock pins, handed to the command as the configured factory."""
    factory = MockFactory(pin_class=WatchedPin)
    monkeypatch.setattr(WatchedPin, "watched", threading.Event(), raising=False)
    monkeypatch.setattr(
        provisioning.sensors, "open_pin_factory", lambda cfg: (factory, "test pins")
    )
    yield factory
    factory.close()


def act_when_watched(action: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        if WatchedPin.watched.wait(WAIT_S):
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_gpio_test_sees_the_door_open(config: Path, pins: Any) -> None:
    pin = pins.pin(17)
    pin.drive_low()  # the door is shut: the reed switch holds the line low
    thread = act_when_watched(pin.drive_high)  # the installer opens it
    started = time.monotonic()
    result = sensors(config, "test", "front-door", "--seconds", "60")
    thread.join(WAIT_S)
    assert time.monotonic() - started < 30, "it waited on after the door opened"
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("front-door: contact on GPIO 17 (header pin 11), pull-up, active high")
    assert "Open the front door now." in lines
    assert lines[-1].startswith("seen after ") and lines[-1].endswith(" s: open (line high)")


def test_gpio_test_not_seen_on_an_unwired_pin_points_at_the_wiring(config: Path) -> None:
    """The configured mock pins (no injection): nothing drives GPIO 17, the pull-up holds it."""
    result = sensors(config, "test", "front-door", "--seconds", "1")
    assert result.exit_code == 1, result.output
    assert "not seen within 1 s" in result.stdout
    assert "hint: the line stayed high (open) the whole time" in result.stdout
    assert "check the sensor is wired to GPIO 17 (BCM numbering; header pin 11)" in result.stdout
    assert "note: mock pins (mock pins requested in the config)" in result.stderr


def test_gpio_test_not_seen_with_the_line_held_says_what_holds_it(config: Path, pins: Any) -> None:
    pins.pin(17).drive_low()  # held low against the pull-up, and nobody opens the door
    result = sensors(config, "test", "front-door", "--seconds", "1")
    assert result.exit_code == 1, result.output
    assert "hint: the line stayed low (closed) the whole time" in result.stdout
    assert "something holds the line low against the pull-up" in result.stdout


def test_gpio_test_on_a_busy_pin_says_the_service_holds_it(config: Path, pins: Any) -> None:
    service = DigitalInputDevice(17, pin_factory=pins)  # the running hub has the line
    try:
        result = sensors(config, "test", "front-door", "--seconds", "1")
    finally:
        service.close()
    assert result.exit_code == 2
    assert "GPIO 17 is busy: the hub service is probably reading it" in result.stderr
    assert "sudo systemctl stop hearth" in result.stderr


def test_live_test_gpio_prompts_by_kind_and_times_the_pull(config: Path) -> None:
    """The library `hearth setup` calls: the pin is driven only after the prompt is out."""
    from drivers.gpio import mock_pin_factory
    from hub.config import SensorConfig, SensorKind, SensorSource

    cord = SensorConfig(
        id="pull-cord",
        kind=SensorKind.BUTTON,
        room="Bathroom",
        source=SensorSource.GPIO,
        pin=22,
        pull_up=True,
    )
    factory = mock_pin_factory()
    prompted: list[str] = []
    asked = threading.Event()

    def on_armed(prompt: str) -> None:
        prompted.append(prompt)
        asked.set()

    pin = factory.pin(22)
    thread = threading.Thread(target=lambda: asked.wait(WAIT_S) and pin.drive_low(), daemon=True)
    thread.start()
    try:
        result = live_test_gpio(cord, 10.0, factory, on_armed)
    finally:
        factory.close()
    thread.join(WAIT_S)
    assert prompted == ["Pull the cord (or press the button) of pull-cord (Bathroom) now."]
    assert result.seen and result.after_s is not None and result.after_s < WAIT_S
    assert (result.level_before, result.level_after, result.state_after) == (
        True,
        False,
        "pulled",
    )


def test_testing_an_unknown_sensor_is_bad_input(config: Path) -> None:
    result = sensors(config, "test", "back-door")
    assert result.exit_code == 2
    assert "no sensor 'back-door'" in result.stderr


# -- live test: BLE ------------------------------------------------------------------------


def ble_config(config: Path, v: Vector, key: str | None) -> Path:
    text = config.read_text().replace('address = "A4:C1:38:00:00:01"', f'address = "{v.address}"')
    if key:
        text = text.replace(f'address = "{v.address}"\n', f'address = "{v.address}"\n'
                            f'bindkey = "{key}"\n')  # fmt: skip
    config.write_text(text)
    return config


@pytest.mark.ci_required
def test_ble_test_shows_the_decoded_values_rssi_and_battery(
    fake_bluez: FakeBlueZ, config: Path
) -> None:
    ble_config(config, SHELLY, None)
    started = time.monotonic()
    with on_air(fake_bluez, SHELLY, rssi=-67):
        result = sensors(config, "test", "bath-climate", "--seconds", "60")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30, "it listened on after the advert decoded"
    out = result.stdout
    assert "bath-climate: listening for 54:48:E6:8F:80:A5" in out
    assert "seen after " in out and ": bthome SBHT-103C, RSSI -67 dBm, battery 100 %" in out
    assert "values: battery 100, humidity 52, temperature 27.8" in out


@pytest.mark.ci_required
def test_ble_test_decrypts_with_the_configured_key(fake_bluez: FakeBlueZ, config: Path) -> None:
    ble_config(config, ENCRYPTED, KEY)
    with on_air(fake_bluez, ENCRYPTED):
        result = sensors(config, "test", "bath-climate", "--seconds", "10")
    assert result.exit_code == 0, result.output
    assert "values: humidity 50.55, temperature 25.06" in result.stdout


@pytest.mark.ci_required
def test_ble_test_with_a_wrong_key_says_so(fake_bluez: FakeBlueZ, config: Path) -> None:
    ble_config(config, ENCRYPTED, WRONG_KEY)
    with on_air(fake_bluez, ENCRYPTED):
        result = sensors(config, "test", "bath-climate", "--seconds", "1.5")
    assert result.exit_code == 1, result.output
    assert "not seen within 1.5 s" in result.stdout
    assert "the bindkey does not decrypt them: the key is wrong" in result.stdout


@pytest.mark.ci_required
def test_ble_test_of_a_silent_sensor_points_at_range_and_address(
    fake_bluez: FakeBlueZ, config: Path
) -> None:
    with on_air(fake_bluez, SHELLY):  # someone else's sensor; ours is silent
        result = sensors(config, "test", "bath-climate", "--seconds", "1")
    assert result.exit_code == 1, result.output
    assert "hint: nothing heard from A4:C1:38:00:00:01 in 1 s" in result.stdout
    assert "within range" in result.stdout
