"""`hearth setup`: the installer's guided session, driven through a pseudo-terminal.

The child process is the real command on a real pty (pexpect), talking to the real council
on loopback, the fake BlueZ on a private dbus-daemon (DBUS_SYSTEM_BUS_ADDRESS) and mock GPIO
pins. Nobody can drive a mock pin inside the child, so the pty session takes the GPIO test's
"not seen" path (the installer keeps the sensor untested); the "seen" path runs in-process
below with the same library and a pin the test drives.

HEARTH_SETUP_TRANSCRIPT=path writes the end-to-end session's terminal text there.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pexpect  # type: ignore[import-untyped]  # no type information shipped
import pytest

from hub.config import load_config
from provisioning.setup import (
    STATE_FILENAME,
    Options,
    ScriptedPrompter,
    Session,
    run_setup,
)
from sync.deferred import defer_enrollment, finish_deferred_enrollment
from tests import fakebluez
from tests.ble_vectors import BY_KEY, Vector
from tests.council_server import running_council
from tests.fakebluez import FakeBlueZ

pytestmark = pytest.mark.ci_required
fake_bluez = fakebluez.fake_bluez  # the fixture

WAIT_S = 30.0  # pexpect's patience for one answer; each is normally well under a second
THERMOMETER = BY_KEY["bthome-temp-humidity"]
ENCRYPTED = BY_KEY["bthome-encrypted"]
CHILD = "import typer; from provisioning.setup_cmd import setup; typer.run(setup)"


# -- helpers -------------------------------------------------------------------------------


@contextmanager
def sensors_on_air(fake: FakeBlueZ, vectors: Sequence[Vector]) -> Iterator[None]:
    """Sensors that advertise every 0.2 s, like real ones, for as long as the test runs; the
    fake radio drops adverts nobody scans for."""
    stop = threading.Event()

    def on_air() -> None:
        rssi = 0
        while not stop.is_set():
            if fake.listening:
                rssi = (rssi + 1) % 4
                for i, v in enumerate(vectors):
                    fake.advertise(
                        v.address,
                        name=v.name,
                        rssi=-50 - i - rssi,
                        service_data=v.service_data,
                        manufacturer_data=v.manufacturer_data,
                    )
            stop.wait(0.2)  # the advertising interval, not a wait for a condition

    thread = threading.Thread(target=on_air, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def spawn(args: Sequence[str], env: dict[str, str], log: io.StringIO) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-c", CHILD, *args],
        env=env,
        encoding="utf-8",
        timeout=WAIT_S,
        dimensions=(50, 160),
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    child.logfile_read = log
    return child


def answer(child: pexpect.spawn, prompt: str, reply: str) -> str:
    """Wait for the prompt, reply; returns what the child printed before the prompt."""
    child.expect_exact(prompt)
    before = str(child.before)
    child.sendline(reply)
    return before


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -(child.signalstatus or 0))


def child_env(fake: FakeBlueZ | None = None) -> dict[str, str]:
    env = {**os.environ, "TERM": "dumb", "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
    env.pop("HEARTH_CONFIG", None)
    if fake is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = fake.address
    return env


def number_of(listing: str, address: str) -> str:
    match = re.search(rf"(\d+)\) {re.escape(address)}", listing)
    assert match, listing
    return match.group(1)


@contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting is refused, like no network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def state_of(data_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((data_dir / STATE_FILENAME).read_text("utf-8"))
    return record


# -- the end-to-end session ----------------------------------------------------------------


def test_a_whole_session_on_a_pty(
    fake_bluez: FakeBlueZ, tmp_path: Path, council_db_url: str
) -> None:
    config, data = tmp_path / "hub.toml", tmp_path / "data"
    log = io.StringIO()
    wrong_key = "00" * 16
    assert ENCRYPTED.bindkey is not None
    with (
        running_council(council_db_url) as council,
        sensors_on_air(fake_bluez, [THERMOMETER, ENCRYPTED]),
    ):
        code = council.store.create_code(3600.0, note="setup test").code
        args = ["--config", str(config), "--data-dir", str(data)]
        child = spawn(
            [*args, "--scan-seconds", "1.5", "--wait-seconds", "2"], child_env(fake_bluez), log
        )
        answer(child, "The home's name (shown to the council's team):", "Flat 3, Elm Court")
        answer(child, f"Where the hub keeps its data [{data}]:", "")
        answer(child, "The council's address (Enter: skip for now):", council.url)
        answer(child, "The one-time enrollment code (XXXX-XXXX-XXXX):", code)
        child.expect(r"Enrolled as (\S+)\.")
        hub_id = child.match.group(1)
        answer(child, "The rooms, separated by commas [", "Lounge, Kitchen, Bedroom, Hallway")
        answer(child, "Scan for Bluetooth sensors now? (Y/n):", "")
        child.expect_exact("Pair which one? (number; r: scan again; Enter: done):")
        listing = str(child.before)
        # The first scan may miss an advert sent as it started: pick from a full list.
        while ENCRYPTED.address not in listing or THERMOMETER.address not in listing:
            child.sendline("r")
            child.expect_exact("Pair which one?")
            listing = str(child.before)
        # listing shows both: the encrypted one says it needs its key, the other its values
        assert "encrypted: needs its bindkey" in listing
        assert "humidity" in listing and "temperature" in listing
        child.sendline(number_of(listing, ENCRYPTED.address))
        answer(child, "Room (number or name) [Lounge]:", "1")
        answer(child, "Role of the room (", "")  # living_room, guessed from "Lounge"
        answer(child, "Kind of sensor (", "")  # climate
        answer(child, "Sensor id [lounge-climate]:", "")
        answer(child, "Its bindkey (32 hex digits; Enter: skip this sensor):", wrong_key)
        wrong = child.expect_exact("the bindkey does not decrypt them: the key is wrong")
        assert wrong == 0 and "Decryption failed" not in str(child.before)  # said once, plainly
        answer(
            child, "Its bindkey (32 hex digits; Enter: skip this sensor):", ENCRYPTED.bindkey.hex()
        )
        child.expect_exact("bindkey works: decoded humidity 50.55, temperature 25.06")
        child.expect_exact("added lounge-climate (climate in Lounge)")
        listing = answer(child, "Pair which one?", "")  # done
        assert ENCRYPTED.address not in listing  # paired now: no longer offered
        answer(child, "Add a sensor wired to a GPIO pin? (y/N):", "y")
        answer(child, "GPIO number (BCM, e.g. 17 is header pin 11) [17]:", "")
        answer(child, "Kind of sensor (", "")  # contact
        answer(child, "Room (number or name) [Lounge]:", "Hallway")
        answer(child, "Role (", "")  # exit_door for a contact
        answer(child, "Sensor id [hallway-contact]:", "front-door")
        child.expect_exact(">>> Open the front door now.")
        child.expect_exact("not seen within 2 s")
        child.expect_exact("check the sensor is wired to GPIO 17")
        answer(child, "t: test again, k: keep it untested, d: drop it [k]:", "")
        answer(child, "Add a sensor wired to a GPIO pin? (y/N):", "")
        answer(child, "Change any alert thresholds from the defaults? (y/N):", "y")
        answer(child, "Cold home warning below (°C) [18]:", "15")  # below the urgent 16
        answer(child, "No movement in the day for (hours) [4]:", "")
        child.expect_exact("must be below warning_below_c")
        answer(child, "Cold home warning below (°C) [18]:", "19")
        answer(child, "No movement in the day for (hours) [4]:", "3")
        child.expect_exact("Doctor overall:")
        child.expect_exact("Setup finished.")
        assert finish(child) == 0, log.getvalue()
        fleet = council.client(council.admin_token).get("/v1/fleet").text
    if path := os.environ.get("HEARTH_SETUP_TRANSCRIPT"):
        Path(path).write_text(log.getvalue(), "utf-8")

    cfg = load_config(config)
    assert cfg.hub.id == hub_id and hub_id in fleet
    assert cfg.hub.name == "Flat 3, Elm Court"
    by_id = {s.id: s for s in cfg.sensors}
    assert set(by_id) == {"lounge-climate", "front-door"}
    assert by_id["lounge-climate"].bindkey == ENCRYPTED.bindkey.hex()
    assert by_id["lounge-climate"].role.value == "living_room"
    assert by_id["front-door"].pin == 17 and by_id["front-door"].role.value == "exit_door"
    assert cfg.checks.cold_home.warning_below_c == 19
    assert cfg.checks.inactivity.ceiling_day_hours == 3
    state = state_of(data)
    assert state["rooms"] == ["Lounge", "Kitchen", "Bedroom", "Hallway"]
    assert state["steps"]["enroll"] == "done" and state["steps"]["service"] == "skipped"


def test_ctrl_c_keeps_the_config_valid_and_a_rerun_resumes(tmp_path: Path) -> None:
    config, data = tmp_path / "hub.toml", tmp_path / "data"
    args = ["--config", str(config), "--data-dir", str(data), "--wait-seconds", "1"]
    log = io.StringIO()
    with dead_port() as port:
        child = spawn(args, child_env(), log)
        answer(child, "The home's name (shown to the council's team):", "Flat 9")
        answer(child, "Where the hub keeps its data [", "")
        answer(child, "The council's address (Enter: skip for now):", f"http://127.0.0.1:{port}")
        answer(child, "The one-time enrollment code (XXXX-XXXX-XXXX):", "ABCD-EFGH-JKLM")
        child.expect_exact("enrollment deferred")
        answer(child, "The rooms, separated by commas [", "Kitchen, Bedroom")
        child.expect_exact("Scan for Bluetooth sensors now? (Y/n):")
        child.sendintr()  # the installer presses Ctrl-C
        child.expect_exact("Interrupted during 'pair Bluetooth sensors'")
        assert finish(child) == 130

    cfg = load_config(config)  # valid
    assert cfg.hub.name == "Flat 9" and cfg.hub.id is None
    state = state_of(data)
    assert state["steps"] == {"config": "done", "enroll": "deferred", "rooms": "done"}
    deferred = data / "enroll-deferred.json"
    assert deferred.stat().st_mode & 0o077 == 0  # the code is not world-readable

    log2 = io.StringIO()
    child = spawn(args, child_env(), log2)
    child.expect_exact("Resuming setup: continuing at step 4 of 8 (pair Bluetooth sensors).")
    answer(child, "Scan for Bluetooth sensors now? (Y/n):", "n")
    answer(child, "Add a sensor wired to a GPIO pin? (y/N):", "")
    answer(child, "Change any alert thresholds from the defaults? (y/N):", "")
    child.expect_exact("Setup finished.")
    assert finish(child) == 0
    assert "home's name" not in log2.getvalue() and "council's address" not in log2.getvalue()
    assert set(state_of(data)["steps"]) == {
        "config", "enroll", "rooms", "ble", "gpio", "thresholds", "doctor", "service"
    }  # fmt: skip

    child = spawn(args, child_env(), io.StringIO())
    child.expect_exact("Setup is already finished.")
    assert finish(child) == 0


# -- scripted installs and the library -----------------------------------------------------


def scripted(config: Path, options: Options) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_setup(Session(config, ScriptedPrompter(lines.append), options))
    return code, lines


def test_non_interactive_with_flags_enrolls_and_sets_thresholds(
    tmp_path: Path, council_db_url: str
) -> None:
    config, data = tmp_path / "hub.toml", tmp_path / "data"
    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0, note="scripted").code
        options = Options(
            council_url=council.url,
            code=code,
            name="Flat 12",
            data_dir=data,
            rooms="Kitchen, Lounge",
            cold_warning_c=17.5,
            no_service=True,
        )
        status, lines = scripted(config, options)
    assert status == 0, lines
    assert any("left for later (--no-service)" in line for line in lines)
    cfg = load_config(config)
    assert cfg.hub.id is not None and str(cfg.council.url).rstrip("/") == council.url
    assert cfg.checks.cold_home.warning_below_c == 17.5
    assert state_of(data)["rooms"] == ["Kitchen", "Lounge"]
    assert "Setup finished." in lines
    status, lines = scripted(config, options)
    assert status == 0 and lines[0].startswith("Setup is already finished.")


def test_non_interactive_stops_on_a_refused_code_and_says_why(
    tmp_path: Path, council_db_url: str
) -> None:
    config, data = tmp_path / "hub.toml", tmp_path / "data"
    with running_council(council_db_url) as council:
        options = Options(council_url=council.url, code="AAAA-BBBB-CCCC", data_dir=data)
        status, lines = scripted(config, options)
    assert status == 2
    assert any(line.startswith("Setup stopped at 'enroll with the council'") for line in lines)
    assert state_of(data)["steps"] == {"config": "done"}  # resumes at enrollment
    load_config(config)


def test_non_interactive_refuses_thresholds_the_config_rules_refuse(tmp_path: Path) -> None:
    options = Options(data_dir=tmp_path / "data", cold_warning_c=12.0)  # below urgent 16
    status, lines = scripted(tmp_path / "hub.toml", options)
    assert status == 2
    assert any("must be below warning_below_c" in line for line in lines), lines
    assert load_config(tmp_path / "hub.toml").checks.cold_home.warning_below_c == 18


def test_a_deferred_enrollment_is_finished_by_the_service_once_online(
    tmp_path: Path, council_db_url: str
) -> None:
    config, data = tmp_path / "hub.toml", tmp_path / "data"
    with dead_port() as port:
        status, _ = scripted(
            config, Options(council_url=f"http://127.0.0.1:{port}", code="X", data_dir=data)
        )
        assert status == 0
        assert state_of(data)["steps"]["enroll"] == "deferred"
        assert finish_deferred_enrollment(config, timeout_s=5) is None  # still offline
    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0, note="deferred").code
        defer_enrollment(data, council.url, code)  # what setup recorded, with a real code
        hub_id = finish_deferred_enrollment(config, timeout_s=5)
        assert hub_id is not None
        assert council.client(council.admin_token).get("/v1/fleet").text.count(hub_id) >= 1
    assert load_config(config).hub.id == hub_id
    assert not (data / "enroll-deferred.json").exists()
    assert finish_deferred_enrollment(config) is None  # nothing left to do


class Answers(ScriptedPrompter):
    """An interactive prompter that replies from a list, and calls `on_line` for each line."""

    interactive = True

    def __init__(self, replies: list[str], on_line: Any = None) -> None:
        self.lines: list[str] = []
        super().__init__(self.lines.append)
        self.replies = replies
        self.on_line = on_line

    def say(self, line: str = "") -> None:
        super().say(line)
        if self.on_line is not None:
            self.on_line(line)

    def ask(self, question: str, default: str) -> str:
        reply = self.replies.pop(0)
        self.lines.append(f"{question} [{default}]: {reply}")
        return reply or default

    def confirm(self, question: str, default: bool) -> bool:
        reply = self.ask(question, "y" if default else "n")
        return (reply or ("y" if default else "n")).lower().startswith("y")


def test_the_gpio_step_sees_the_door_open_on_a_driven_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "seen" path the pty session cannot take: the test opens the door (drives the
    mock pin) once the session has armed the pin and asked for it."""
    from drivers.gpio import mock_pin_factory
    from provisioning import sensors
    from provisioning.setup import SetupState, step_gpio

    config = tmp_path / "hub.toml"
    scripted(config, Options(data_dir=tmp_path / "data"))  # a finished scripted setup
    factory = mock_pin_factory()
    monkeypatch.setattr(sensors, "open_pin_factory", lambda _cfg: (factory, "test pins"))
    pin = factory.pin(27)
    pin.drive_low()  # the door is shut: the reed switch holds the line low
    opened = threading.Event()

    def open_the_door() -> None:
        pin.drive_high()
        opened.set()

    def installer(line: str) -> None:
        if line.endswith("Open the front door now."):  # the pin is armed: go and open it
            threading.Thread(target=open_the_door, daemon=True).start()

    io_ = Answers(["y", "27", "contact", "Hall", "", "", "n"], installer)
    session = Session(config, io_, Options(gpio_wait_s=20.0))
    session.state = SetupState(rooms=["Hall", "Kitchen"])
    session.reload()
    assert step_gpio(session) == "done"
    assert opened.is_set()
    assert any(line.startswith("  seen after ") and line.endswith("s: open") for line in io_.lines)
    sensor = {s.id: s for s in load_config(config).sensors}["hall-contact"]
    assert sensor.pin == 27 and sensor.role.value == "exit_door"
