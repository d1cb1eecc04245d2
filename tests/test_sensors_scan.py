"""`hearth sensors scan` against the fake BlueZ: what an installer sees, and its errors.

The command is mounted on a throwaway Typer here as `sensors` (the real CLI mounts the same
app). Adverts are sent from a thread as soon as BlueZ has a scan running, so each scan hears
them within its few seconds; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from drivers.ble.pipeline import PairedDevice
from drivers.ble.scan import ScanResult, scan_nearby
from tests import fakebluez
from tests.ble_vectors import BY_KEY, Vector
from tests.fakebluez import FakeBlueZ, run_with_fresh_bleak

pytestmark = pytest.mark.ci_required
fake_bluez = fakebluez.fake_bluez  # the fixture
WAIT_S = 10.0
SCAN_S = "1.5"  # long enough to hear adverts sent the moment the scan starts

THERMOMETER = BY_KEY["bthome-temp-humidity"]
ENCRYPTED = BY_KEY["bthome-encrypted"]
RUUVI = BY_KEY["ruuvitag-v5"]
PHONE = "7C:11:22:33:44:55"  # an Apple advert: nobody's sensor


def cli() -> typer.Typer:
    from provisioning.sensors_cmd import sensors_app

    app = typer.Typer()
    app.add_typer(sensors_app, name="sensors")
    return app


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli(), ["sensors", "scan", *args])


def send(fake: FakeBlueZ, v: Vector, rssi: int = -60) -> None:
    fake.advertise(
        v.address,
        name=v.name,
        rssi=rssi,
        manufacturer_data=v.manufacturer_data,
        service_data=v.service_data,
        service_uuids=v.service_uuids,
    )


@contextmanager
def advertising(fake: FakeBlueZ, vectors: Sequence[Vector]) -> Iterator[None]:
    """Sensors (and a phone) that advertise as soon as someone scans."""
    failures: list[BaseException] = []

    def on_air() -> None:
        try:
            fake.wait_until(lambda: fake.listening)
            fake.advertise(PHONE, rssi=-80, manufacturer_data={0x004C: b"\x10\x05\x01"})
            for i, v in enumerate(vectors):
                send(fake, v, rssi=-50 - i)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=on_air, daemon=True)
    thread.start()
    yield
    thread.join(WAIT_S)
    assert not failures, failures


def config_file(tmp_path: Path, *, bindkey: bytes | None) -> Path:
    key = f'bindkey = "{bindkey.hex()}"\n' if bindkey else ""
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\nname = "Test flat"\ndata_dir = "{tmp_path}"\n\n'
        f'[[sensors]]\nid = "lounge-climate"\nkind = "climate"\nroom = "Lounge"\n'
        f'source = "ble"\naddress = "{ENCRYPTED.address}"\nfamily = "bthome"\n{key}'
    )
    return path


def json_lines(result: Result) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {row["address"]: row for row in rows}


# -- the command ---------------------------------------------------------------------------


def test_json_gives_one_object_per_device_with_family_values_rssi_and_pairing(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    with advertising(fake_bluez, [THERMOMETER, RUUVI, ENCRYPTED]):
        result = invoke("--json", "--seconds", SCAN_S)
    rows = json_lines(result)
    assert set(rows) == {THERMOMETER.address, RUUVI.address, ENCRYPTED.address, PHONE}
    thermometer = rows[THERMOMETER.address]
    assert {k: thermometer[k] for k in ("name", "family", "rssi", "paired")} == {
        "name": "ATC_8D18B2",
        "family": "bthome",
        "rssi": -50,
        "paired": False,
    }
    assert thermometer["values"] == pytest.approx({"temperature": 25.06, "humidity": 50.55})
    assert rows[RUUVI.address]["family"] == "ruuvitag"
    assert rows[RUUVI.address]["values"]["pressure"] == pytest.approx(1013.54)
    # Encrypted and not paired: recognised, but its values need the bindkey.
    assert rows[ENCRYPTED.address]["family"] == "bthome"
    assert rows[ENCRYPTED.address]["values"] == {}
    assert rows[ENCRYPTED.address]["needs_bindkey"] is True
    assert rows[PHONE]["family"] is None and rows[PHONE]["values"] == {}


def test_config_marks_paired_sensors_and_decrypts_them_with_their_bindkey(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    config = config_file(tmp_path, bindkey=ENCRYPTED.bindkey)
    with advertising(fake_bluez, [ENCRYPTED, THERMOMETER]):
        result = invoke("--json", "--seconds", SCAN_S, "--config", str(config))
    rows = json_lines(result)
    paired = rows[ENCRYPTED.address]
    assert paired["paired"] is True and paired["sensor_id"] == "lounge-climate"
    assert paired["values"] == pytest.approx({"temperature": 25.06, "humidity": 50.55})
    assert rows[THERMOMETER.address]["paired"] is False


def test_without_json_and_without_a_terminal_the_table_is_printed_once(
    fake_bluez: FakeBlueZ,
) -> None:
    with advertising(fake_bluez, [THERMOMETER]):
        result = invoke("--seconds", SCAN_S)
    assert result.exit_code == 0, result.output
    assert "BLE devices nearby (listened 1.5 s)" in result.stdout
    assert THERMOMETER.address in result.stdout and "temperature 25.06" in result.stdout
    assert "2 devices heard, 1 recognised, 0 paired" in result.stderr


def test_on_a_terminal_the_table_updates_live(fake_bluez: FakeBlueZ) -> None:
    """Run as an installer would, on a pseudo-terminal: the live table shows the device
    while still listening, then the final one."""
    code = "from provisioning.sensors_cmd import sensors_app; sensors_app(['scan', '-s', '1.5'])"
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    with advertising(fake_bluez, [THERMOMETER]):
        process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=secondary, stderr=secondary, env=env
        )
        os.close(secondary)
        screen = _read_all(primary)
        assert process.wait(WAIT_S) == 0, screen
    assert "(listening)" in screen and THERMOMETER.address in screen
    assert screen.rfind("(listened 1.5 s)") > screen.rfind("(listening)")  # the final frame
    assert "1 recognised" in screen


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda fake: fake.remove_adapter(), "no Bluetooth adapter found"),
        (lambda fake: fake.stop_bluetoothd(), "bluetoothd is not running"),
    ],
    ids=["no-adapter", "no-bluetoothd"],
)
def test_a_missing_adapter_or_bluetoothd_is_one_clear_line_and_exit_code_2(
    fake_bluez: FakeBlueZ, break_it: Any, message: str
) -> None:
    break_it(fake_bluez)
    result = invoke("--json", "--seconds", "1")
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hearth: ") and message in line


def test_no_dbus_at_all_is_one_clear_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing-here'}")
    result = invoke("--seconds", "1")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hearth: cannot connect to the system D-Bus (unix:path=")


def test_a_bad_config_is_reported_without_scanning(fake_bluez: FakeBlueZ, tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nname = "x"\nbogus = 1\n')
    result = invoke("--config", str(config))
    assert result.exit_code == 2
    assert "unknown key" in result.stderr and "Traceback" not in result.stderr
    assert fake_bluez.count("StartDiscovery") == 0


def test_the_adapter_vanishing_mid_scan_is_reported(fake_bluez: FakeBlueZ) -> None:
    def unplug_when_scanning() -> None:
        fake_bluez.wait_until(lambda: fake_bluez.listening)
        fake_bluez.remove_adapter()

    thread = threading.Thread(target=unplug_when_scanning, daemon=True)
    thread.start()
    result = invoke("--json", "--seconds", "30")  # ends at once, when the adapter goes
    thread.join(WAIT_S)
    assert result.exit_code == 2
    assert "Bluetooth adapter hci0 was removed during the scan" in result.stderr


# -- the library ---------------------------------------------------------------------------


def test_scan_nearby_reports_progress_and_returns_every_device(fake_bluez: FakeBlueZ) -> None:
    updates: list[list[ScanResult]] = []
    key = ENCRYPTED.bindkey
    paired = {ENCRYPTED.address: PairedDevice("lounge", ENCRYPTED.address, "bthome", key)}

    with advertising(fake_bluez, [THERMOMETER, ENCRYPTED]):
        results = run_with_fresh_bleak(
            scan_nearby(1.5, paired, on_update=updates.append, update_every_s=0.1)
        )
    assert results[0].address == ENCRYPTED.address  # paired first
    assert {r.address for r in results} == {THERMOMETER.address, ENCRYPTED.address, PHONE}
    assert updates and updates[-1] == results
    assert fake_bluez.discovering is False  # the scan was stopped
