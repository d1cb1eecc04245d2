"""The config file: every bad file gets a specific, located, one-line message and exit code 2;
good files round-trip; writes are atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hub.config import (
    ConfigError,
    HubConfig,
    RoomRole,
    SensorKind,
    SensorSource,
    load_config,
    parse_config,
    starter_config,
    write_config,
)
from provisioning.config_cmd import config_app

HUB = '[hub]\nname = "Flat 3, Elm Court"\n'

GPIO_BUTTON = """
[[sensors]]
id = "pull-cord"
kind = "button"
room = "Bathroom"
role = "bathroom"
source = "gpio"
pin = 17
"""

BLE_CLIMATE = """
[[sensors]]
id = "bedroom-climate"
kind = "climate"
room = "Bedroom"
role = "bedroom"
source = "ble"
address = "a4:c1:38:00:00:01"
family = "bthome"
"""


def _sensor(**fields: object) -> str:
    lines = ["", "[[sensors]]"]
    for key, value in fields.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(config_app, name="config")
    return app


def _run(cli: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["config", *args])
    return result.exit_code, result.stdout, result.stderr


# (TOML text, the one problem line expected after "<file>: ")
MALFORMED = {
    "toml-syntax": (
        '[hub\nname = "x"\n',
        "line 1, column 5: invalid TOML: expected ']' at the end of a table declaration",
    ),
    "missing-hub-section": (
        "[store]\nretention_days = 30\n",
        "hub: required section [hub] is missing",
    ),
    "missing-hub-name": (
        '[hub]\ntimezone = "Europe/London"\n',
        "hub.name: required key is missing",
    ),
    "empty-hub-name": ('[hub]\nname = "  "\n', "hub.name: must not be empty"),
    "unknown-key-suggestion": (
        HUB + GPIO_BUTTON.replace("pin = 17", "pin = 17\npn = 4"),
        "sensors[0].pn: unknown key (did you mean 'pin'?)",
    ),
    "unknown-section-suggestion": (
        HUB + "[sensor]\nid = 'x'\n",
        "sensor: unknown key (did you mean 'sensors'?)",
    ),
    "wrong-type-int": (
        HUB + '[store]\nretention_days = "thirty"\n',
        "store.retention_days: expected a whole number, got the string 'thirty'",
    ),
    "wrong-type-bool": (
        HUB + GPIO_BUTTON + 'pull_up = "yes"\n',
        "sensors[0].pull_up: expected true or false, got the string 'yes'",
    ),
    "enum": (
        HUB + _sensor(id="hall", kind="thermostat", room="Hall", source="simulated"),
        "sensors[0].kind: 'thermostat' is not one of: motion, contact, button, pressure_mat,"
        " leak, climate, air_quality, thermometer (did you mean 'thermometer'?)",
    ),
    "range-low": (
        HUB + "[store]\nretention_days = 0\n",
        "store.retention_days: must be at least 1",
    ),
    "range-high": (
        HUB + "[store]\nretention_days = 5000\n",
        "store.retention_days: must be at most 3650",
    ),
    "range-float": (
        HUB + "[store]\ncommit_interval_s = 10\n",
        "store.commit_interval_s: must be at most 5",
    ),
    "not-a-finite-number": (
        HUB + "[store]\nquota_mb = nan\n",
        "store.quota_mb: must be a finite number, got the number nan",
    ),
    "gpio-pin-out-of-range": (
        HUB
        + BLE_CLIMATE
        + _sensor(
            id="front-door", kind="contact", room="Hall", role="exit_door", source="gpio", pin=4
        )
        + _sensor(id="mat", kind="pressure_mat", room="Bedroom", source="gpio", pin=41),
        "sensors[2].pin: 41 is not a GPIO pin on a Raspberry Pi (0-27)",
    ),
    "gpio-needs-pin": (
        HUB + _sensor(id="kitchen-motion", kind="motion", room="Kitchen", source="gpio"),
        "sensors[0].pin: required when source is 'gpio' (the GPIO number the sensor is wired to,"
        " 0-27)",
    ),
    "pin-on-ble": (
        HUB + BLE_CLIMATE + "pin = 5\n",
        "sensors[0].pin: only applies when source is 'gpio' (this sensor's source is 'ble')",
    ),
    "debounce-on-simulated": (
        HUB + _sensor(id="m", kind="motion", room="Hall", source="simulated", debounce_ms=20),
        "sensors[0].debounce_ms: only applies when source is 'gpio'"
        " (this sensor's source is 'simulated')",
    ),
    "ble-needs-address": (
        HUB + _sensor(id="bath", kind="climate", room="Bathroom", source="ble"),
        "sensors[0].address: required when source is 'ble' (the sensor's Bluetooth address,"
        " like 'A4:C1:38:12:34:56')",
    ),
    "bindkey-only-for-ble": (
        HUB + GPIO_BUTTON + 'bindkey = "00112233445566778899aabbccddeeff"\n',
        "sensors[0].bindkey: only applies when source is 'ble' (this sensor's source is 'gpio')",
    ),
    "bindkey-length": (
        HUB + BLE_CLIMATE + 'bindkey = "0011223344"\n',
        "sensors[0].bindkey: must be exactly 32 hexadecimal characters, got 10",
    ),
    "bindkey-unencrypted-family": (
        HUB
        + BLE_CLIMATE.replace("bthome", "govee")
        + 'bindkey = "00112233445566778899aabbccddeeff"\n',
        "sensors[0].bindkey: govee sensors are not encrypted; remove the bindkey",
    ),
    "gpio-wrong-kind": (
        HUB + _sensor(id="lounge", kind="climate", room="Lounge", source="gpio", pin=4),
        "sensors[0].source: a climate sensor cannot be wired to GPIO"
        " (gpio is only for: motion, contact, button, pressure_mat, leak)",
    ),
    "hold-only-for-button": (
        HUB + _sensor(id="m", kind="motion", room="Hall", source="gpio", pin=4, hold_s=2.0),
        "sensors[0].hold_s: only applies to button sensors (this one is 'motion')",
    ),
    "bad-mac": (
        HUB + BLE_CLIMATE.replace("a4:c1:38:00:00:01", "a4:c1:38:00:01"),
        "sensors[0].address: 'a4:c1:38:00:01' is not a Bluetooth address: expected six pairs of"
        " hex digits like 'A4:C1:38:12:34:56'",
    ),
    "bad-sensor-id": (
        HUB + _sensor(id="Living Room", kind="motion", room="Lounge", source="simulated"),
        "sensors[0].id: 'Living Room' is not a valid sensor id: use 1-40 lower-case letters,"
        " digits, '-' or '_', starting with a letter or digit",
    ),
    "duplicate-id": (
        HUB
        + GPIO_BUTTON
        + BLE_CLIMATE
        + _sensor(id="pull-cord", kind="button", room="Bedroom", source="simulated"),
        "sensors[2].id: sensor id 'pull-cord' is already used by sensors[0]",
    ),
    "duplicate-pin": (
        HUB
        + GPIO_BUTTON
        + _sensor(id="front-door", kind="contact", room="Hall", source="gpio", pin=17),
        "sensors[1].pin: GPIO 17 is already used by sensors[0] ('pull-cord')",
    ),
    "duplicate-address": (
        HUB
        + BLE_CLIMATE
        + BLE_CLIMATE.replace("bedroom-climate", "bedroom-2").replace("a4:c1", "A4:C1"),
        "sensors[1].address: BLE address A4:C1:38:00:00:01 is already used by sensors[0]"
        " ('bedroom-climate')",
    ),
    "sensors-not-an-array": (
        HUB + '[sensors]\nid = "x"\n',
        "sensors: expected an array of tables (one [[sensors]] per entry), got a table",
    ),
    "unknown-timezone": (
        '[hub]\nname = "x"\ntimezone = "Europe/Londn"\n',
        "hub.timezone: 'Europe/Londn' is not a known time zone (did you mean 'Europe/London'?)",
    ),
    "bad-hub-id": (
        '[hub]\nname = "x"\nid = "hub one"\n',
        "hub.id: 'hub one' is not a valid hub id: use 1-64 letters, digits, '-' or '_'",
    ),
    "council-url-scheme": (
        HUB + '[council]\nurl = "ftp://council.example"\n',
        "council.url: 'ftp://council.example' is not a web address: it must start with https://"
        " or http://",
    ),
    "council-url-no-host": (
        HUB + '[council]\nurl = "https://"\n',
        "council.url: 'https://' has no host name after https://",
    ),
    "bad-time": (
        HUB + '[checks.night]\nstart = "25:00"\n',
        "checks.night.start: '25:00' is not a time of day: use 24-hour HH:MM, e.g. '22:00'",
    ),
    "empty-night-window": (
        HUB + '[checks.overheating]\nnight_start = "07:00"\n',
        "checks.overheating.night_end: must differ from night_start (07:00): the window is empty",
    ),
    "cold-urgent-not-below-warning": (
        HUB + "[checks.cold_home]\nurgent_below_c = 18\n",
        "checks.cold_home.urgent_below_c: must be below warning_below_c (18)",
    ),
    "damp-very-high-not-above-high": (
        HUB + "[checks.damp]\nrh_very_high = 65\n",
        "checks.damp.rh_very_high: must be above rh_high (70)",
    ),
    "unknown-check-key": (
        HUB + "[checks.cold_home]\nwarning_below = 17\n",
        "checks.cold_home.warning_below: unknown key (did you mean 'warning_below_c'?)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), MALFORMED.values(), ids=MALFORMED.keys())
def test_check_reports_each_malformed_file(
    cli: typer.Typer, tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    code, stdout, stderr = _run(cli, "check", str(path))
    assert code == 2
    assert stdout == ""
    assert stderr.splitlines() == [f"{path}: {expected}"]


def test_every_malformed_message_is_distinct() -> None:
    messages = [expected.split(": ", 1)[1] for _, expected in MALFORMED.values()]
    assert len(set(messages)) == len(messages)


def test_check_lists_every_problem_and_no_pydantic_noise(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        '[hub]\nname = ""\ncolour = "red"\n[store]\nretention_days = 0\nquota_mb = "big"\n'
        + _sensor(id="a", kind="motion", room="Hall", source="gpio", pin=99)
        + _sensor(id="b", kind="motion", room="Hall", source="ble"),
        encoding="utf-8",
    )
    code, _, stderr = _run(cli, "check", str(path))
    assert code == 2
    assert stderr.splitlines() == [
        f"{path}: hub.name: must not be empty",
        f"{path}: hub.colour: unknown key (allowed here: name, id, timezone, data_dir)",
        f"{path}: store.quota_mb: expected a number, got the string 'big'",
        f"{path}: store.retention_days: must be at least 1",
        f"{path}: sensors[0].pin: 99 is not a GPIO pin on a Raspberry Pi (0-27)",
        f"{path}: sensors[1].address: required when source is 'ble' (the sensor's Bluetooth"
        " address, like 'A4:C1:38:12:34:56')",
    ]
    for noise in ("Traceback", "Input should", "Value error", "pydantic", "validation error"):
        assert noise not in stderr


def test_check_accepts_a_valid_file(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(HUB + GPIO_BUTTON + BLE_CLIMATE, encoding="utf-8")
    code, stdout, stderr = _run(cli, "check", str(path))
    assert (code, stdout, stderr) == (0, f"{path}: valid (2 sensors)\n", "")


def test_check_missing_file(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    code, stdout, stderr = _run(cli, "check", str(path))
    assert (code, stdout, stderr) == (2, "", f"{path}: no such file\n")


def test_check_directory_instead_of_file(cli: typer.Typer, tmp_path: Path) -> None:
    code, _, stderr = _run(cli, "check", str(tmp_path))
    assert code == 2
    assert stderr == f"{tmp_path}: is a directory, not a config file\n"


def test_check_not_utf8(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_bytes(b'[hub]\nname = "Caf\xe9"\n')
    code, _, stderr = _run(cli, "check", str(path))
    assert code == 2
    assert stderr == (
        f"{path}: line 2, column 12: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"
    )


def test_check_survives_an_unexpected_error(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> HubConfig:
        raise RuntimeError("boom")

    monkeypatch.setattr("hub.config.load_config", broken)
    path = tmp_path / "hub.toml"
    code, _, stderr = _run(cli, "check", str(path))
    assert code == 2
    assert stderr == f"{path}: could not check the file (RuntimeError: boom)\n"


def test_config_error_shape() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            '[hub]\nname = "x"\n[store]\nretention_days = 0\n', "/etc/hearth/hub.toml", Path("/")
        )
    error = caught.value
    assert error.source == "/etc/hearth/hub.toml"
    assert error.problems == ["store.retention_days: must be at least 1"]
    assert str(error) == "/etc/hearth/hub.toml: store.retention_days: must be at least 1"


def test_defaults_and_normalisation(tmp_path: Path) -> None:
    config = parse_config(
        HUB
        + '[checks.night]\nstart = 21:30:00\nend = "6:00"\n'
        + BLE_CLIMATE
        + 'bindkey = "00112233445566778899AABBCCDDEEFF"\n',
        "hub.toml",
        tmp_path,
    )
    assert config.hub.timezone == "Europe/London"
    assert config.hub.data_dir == Path("/var/lib/hearth")
    assert config.store_path == Path("/var/lib/hearth/hearth.db")
    assert (config.store.quota_mb, config.store.retention_days) == (512, 30)
    assert config.store.commit_interval_s == 1.0
    assert (config.checks.night.start, config.checks.night.end) == ("21:30", "06:00")
    assert config.checks.cold_home.warning_below_c == 18
    assert config.checks.cold_home.urgent_below_c == 16
    assert config.checks.overheating.night_end == "07:00"
    assert config.checks.daily_cap == 3
    sensor = config.sensors[0]
    assert sensor.address == "A4:C1:38:00:00:01"
    assert sensor.bindkey == "00112233445566778899aabbccddeeff"
    assert sensor.kind is SensorKind.CLIMATE
    assert sensor.role is RoomRole.BEDROOM


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "hub.toml"
    path.parent.mkdir()
    path.write_text(
        '[hub]\nname = "x"\ndata_dir = "data"\n[council]\nca_bundle = "ca.pem"\n'
        '[store]\npath = "buffer.db"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.hub.data_dir == tmp_path / "etc" / "data"
    assert config.council.ca_bundle == tmp_path / "etc" / "ca.pem"
    assert config.store_path == tmp_path / "etc" / "data" / "buffer.db"


def _full_config(tmp_path: Path) -> HubConfig:
    return parse_config(
        '[hub]\nname = "Flat 3"\nid = "hub-0042"\ntimezone = "Europe/London"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        '[council]\nurl = "https://hearth.council.example/api"\n'
        "[store]\nquota_mb = 256\nretention_days = 14\ncommit_interval_s = 0.5\n"
        "[checks]\ndaily_cap = 2\n[checks.cold_home]\nwarning_below_c = 17.5\n"
        + GPIO_BUTTON
        + "hold_s = 1.5\npull_up = false\nactive_high = true\n"
        + BLE_CLIMATE
        + 'bindkey = "00112233445566778899aabbccddeeff"\n'
        + _sensor(
            id="kitchen-motion", kind="motion", room="Kitchen", role="kitchen", source="simulated"
        ),
        "test",
        tmp_path,
    )


def test_round_trip(tmp_path: Path) -> None:
    config = _full_config(tmp_path)
    path = tmp_path / "hub.toml"
    write_config(path, config)
    assert load_config(path) == config
    # Writing what was loaded gives the same bytes: nothing drifts on a rewrite.
    first = path.read_bytes()
    write_config(path, load_config(path))
    assert path.read_bytes() == first


def test_round_trip_starter(tmp_path: Path) -> None:
    config = starter_config("Demo", tmp_path / "data", simulated=True)
    path = tmp_path / "hub.toml"
    write_config(path, config)
    assert load_config(path) == config


def test_bindkey_file_is_not_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    write_config(path, _full_config(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o600)
    write_config(path, _full_config(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_a_root_rewrite_keeps_the_files_owner_and_group(tmp_path: Path) -> None:
    """`sudo hearth sensors add` on a root:hearth 0640 config must not leave it root:root,
    unreadable by the service's user."""
    path = tmp_path / "hub.toml"
    write_config(path, _full_config(tmp_path))
    os.chown(path, 4321, 8765)
    write_config(path, _full_config(tmp_path))
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_write_config_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hub.toml"
    write_config(path, starter_config("Old", tmp_path, simulated=False))
    before = path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_config(path, starter_config("New", tmp_path, simulated=True))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.toml"]


def test_write_config_cleans_up_when_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.toml"
    write_config(path, starter_config("Old", tmp_path, simulated=False))
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_config(path, starter_config("New", tmp_path, simulated=True))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.toml"]


def test_write_config_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    config = starter_config("Old", tmp_path, simulated=True)
    write_config(path, config)
    before = path.read_bytes()
    # model_copy does not validate; write_config must catch it before the disk does.
    sensors = list(config.sensors)
    sensors[1] = sensors[1].model_copy(update={"id": sensors[0].id})
    broken = config.model_copy(update={"sensors": tuple(sensors)})
    with pytest.raises(ConfigError) as caught:
        write_config(path, broken)
    assert caught.value.problems == [
        "sensors[1].id: sensor id 'living-room-climate' is already used by sensors[0]"
    ]
    assert path.read_bytes() == before


def test_starter_config_simulated() -> None:
    config = starter_config("Demo", Path("/var/lib/hearth"), simulated=True)
    assert all(s.source is SensorSource.SIMULATED for s in config.sensors)
    summary = {(s.kind.value, s.role.value) for s in config.sensors}
    assert summary == {
        ("climate", "living_room"),
        ("climate", "bedroom"),
        ("climate", "bathroom"),
        ("motion", "living_room"),
        ("motion", "bedroom"),
        ("motion", "kitchen"),
        ("motion", "bathroom"),
        ("motion", "hallway"),
        ("contact", "exit_door"),
        ("button", "bathroom"),
    }
    assert len(config.sensors) == 10
    assert starter_config("Demo", Path("/x"), simulated=False).sensors == ()


def test_init_writes_a_valid_file(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "etc" / "hub.toml"
    code, stdout, stderr = _run(
        cli, "init", str(path), "--name", "Flat 3", "--data-dir", str(tmp_path), "--simulated"
    )
    assert (code, stderr) == (0, "")
    assert stdout == f"{path}: wrote a starter config (10 sensors)\n"
    config = load_config(path)
    assert config.hub.name == "Flat 3"
    assert config.hub.data_dir == tmp_path
    code, stdout, _ = _run(cli, "check", str(path))
    assert (code, stdout) == (0, f"{path}: valid (10 sensors)\n")


def test_init_refuses_to_overwrite(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("# the installer's own file\n", encoding="utf-8")
    code, stdout, stderr = _run(cli, "init", str(path), "--name", "Flat 3")
    assert code == 2
    assert stdout == ""
    assert stderr == f"{path}: already exists; not replacing it (use --force to overwrite it)\n"
    assert path.read_text(encoding="utf-8") == "# the installer's own file\n"

    code, _, _ = _run(
        cli, "init", str(path), "--name", "Flat 3", "--data-dir", str(tmp_path), "--force"
    )
    assert code == 0
    assert load_config(path).hub.name == "Flat 3"


def test_init_rejects_an_empty_name(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    code, _, stderr = _run(cli, "init", str(path), "--name", " ")
    assert (code, stderr) == (2, "--name must not be empty\n")
    assert not path.exists()
