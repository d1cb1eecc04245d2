"""hearth doctor: each check green, amber and red with its fix, against real parts.

Bluetooth against the fake BlueZ on a private dbus-daemon; the buffer a real SQLite file made
by hub.store.Store; the council the real service under uvicorn on 127.0.0.1; systemctl and
bluetoothctl small scripts on PATH run by the doctor's real command runner; /dev a temp dir.
Only what cannot be arranged on a build machine (the kernel's NTP state, a nearly full disk,
GPIO permissions as root) is a function handed in through Environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import typer
from rich.console import Console
from typer.testing import CliRunner

from hub.config import HubConfig, parse_config
from hub.events import Quantity, Reading, Stamp
from hub.identity import KEY_FILENAME, HubIdentity
from hub.store import Store
from provisioning import doctor as dr
from provisioning.doctor import (
    Check,
    Context,
    DiskUsage,
    Environment,
    Finding,
    Level,
    Report,
    run_checks,
    run_doctor,
)
from provisioning.doctor_cmd import doctor, print_report
from tests import fakebluez
from tests.council_server import CouncilServer, running_council
from tests.fakebluez import running_fake_bluez

NOW = 1_764_316_800.0  # the doctor's "now" in these tests
GB = 1024**3
MB = 1024**2
CLIMATE_MAC = "A4:C1:38:00:00:01"

fake_bluez = fakebluez.fake_bluez  # the fixture


# -- building blocks -------------------------------------------------------------------------


def config_data(
    tmp_path: Path, sensors: Sequence[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {"hub": {"name": "Test home", "data_dir": str(tmp_path / "data")}}
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    if sensors:
        data["sensors"] = list(sensors)
    return data


def make_config(tmp_path: Path, sensors: Sequence[dict[str, Any]] = (), **extra: Any) -> HubConfig:
    return parse_config(tomli_w.dumps(config_data(tmp_path, sensors, **extra)), "test", tmp_path)


def write_config(tmp_path: Path, sensors: Sequence[dict[str, Any]] = (), **extra: Any) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(config_data(tmp_path, sensors, **extra)))
    return path


CLIMATE = {
    "id": "lounge-climate",
    "kind": "climate",
    "room": "lounge",
    "source": "ble",
    "address": CLIMATE_MAC,
    "family": "bthome",
}
BLE_MOTION = {
    "id": "hall-motion",
    "kind": "motion",
    "room": "hall",
    "source": "ble",
    "address": "A4:C1:38:00:00:02",
    "family": "bthome",
}
WIRED_MOTION = {
    "id": "kitchen-motion",
    "kind": "motion",
    "room": "kitchen",
    "source": "gpio",
    "pin": 17,
}
PULL_CORD = {"id": "pull-cord", "kind": "button", "room": "bathroom", "source": "gpio", "pin": 27}


def env(**changes: Any) -> Environment:
    """An environment whose clock and disk are fixed; the rest is the real machine."""
    values: dict[str, Any] = {
        "now": lambda: NOW,
        "clock_synced": lambda: True,
        "disk_usage": lambda _path: DiskUsage(32 * GB, 8 * GB, 24 * GB),
        "council_timeout_s": 10.0,
    }
    values.update(changes)
    return Environment(**values)


def run(check: Any, cfg: HubConfig | None, environment: Environment | None = None) -> Any:
    ctx = Context(cfg, Path("hub.toml"), environment or env())
    result = check(ctx)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def assert_finding(finding: Finding, level: Level, *words: str, fix: str | None = "") -> None:
    """`words` are in the summary; `fix` in the fix (None: there is no fix)."""
    assert finding.level is level, finding
    for word in words:
        assert word in finding.summary, finding
    if fix is None:
        assert finding.fix is None, finding
    else:
        assert finding.fix is not None and fix in finding.fix, finding


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH: commands exist only if a test puts them."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def script(bin_dir: Path, name: str, body: str) -> Path:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def reading_at(
    sensor: str, t: float, quantity: Quantity = Quantity.TEMPERATURE, value: float = 20.0
) -> Reading:
    return Reading(sensor, quantity, value, Stamp(t, True, 0.0))


def buffer_with(cfg: HubConfig, readings: Sequence[Reading], synced: bool = False) -> None:
    store = Store.open(cfg.store_path)
    try:
        seqs = store.commit(list(readings))
        if synced:
            store.mark_synced(seqs)
    finally:
        store.close()


# -- bluetooth -------------------------------------------------------------------------------


@pytest.mark.ci_required
def test_bluetooth_green_then_off_then_no_adapter_then_no_bluetoothd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bin_dir: Path
) -> None:
    script(bin_dir, "bluetoothctl", 'echo "bluetoothctl: 5.66"')
    cfg = make_config(tmp_path, [CLIMATE])
    with running_fake_bluez(monkeypatch) as fake:
        e = env(bus_address=fake.address)
        found = run(dr.check_bluetooth, cfg, e)
        assert_finding(found, Level.GREEN, "hci0", "BlueZ 5.66", "passive", fix=None)
        assert found.details["adapters"]["hci0"]["address"] == fake.adapter_address

        fake.power(False)
        assert_finding(
            run(dr.check_bluetooth, cfg, e), Level.AMBER, "switched off", fix="rfkill unblock"
        )
        fake.power(True)
        fake.remove_adapter()
        assert_finding(
            run(dr.check_bluetooth, cfg, e), Level.RED, "no Bluetooth adapter", fix="config.txt"
        )
        fake.stop_bluetoothd()
        assert_finding(
            run(dr.check_bluetooth, cfg, e),
            Level.RED,
            "bluetoothd",
            fix="sudo systemctl enable --now bluetooth",
        )


@pytest.mark.ci_required
def test_bluetooth_without_passive_scanning_is_amber(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bin_dir: Path
) -> None:
    cfg = make_config(tmp_path, [CLIMATE])
    with running_fake_bluez(monkeypatch, monitor_manager=False) as fake:
        found = run(dr.check_bluetooth, cfg, env(bus_address=fake.address))
    assert_finding(found, Level.AMBER, "passive scanning is not available", fix="--experimental")
    assert found.details["bluez_version"] is None  # no bluetoothctl on PATH: version unknown


def test_bluetooth_is_not_asked_when_no_ble_sensor_is_configured(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [PULL_CORD])
    nowhere = env(bus_address=f"unix:path={tmp_path / 'no-bus'}")
    assert_finding(run(dr.check_bluetooth, cfg, nowhere), Level.GREEN, "no BLE sensors", fix=None)


def test_bluetooth_without_a_system_bus_is_red(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [CLIMATE])
    nowhere = env(bus_address=f"unix:path={tmp_path / 'no-bus'}")
    assert_finding(run(dr.check_bluetooth, cfg, nowhere), Level.RED, "D-Bus", fix="reboot")


# -- gpio ------------------------------------------------------------------------------------


@pytest.fixture
def dev_dir(tmp_path: Path) -> Path:
    path = tmp_path / "dev"
    path.mkdir()
    return path


def with_chip(dev_dir: Path) -> Path:
    chip = dev_dir / "gpiochip0"
    chip.write_bytes(b"")
    return chip


def test_gpio_levels(tmp_path: Path, dev_dir: Path) -> None:
    wired = make_config(tmp_path, [PULL_CORD])
    ok = env(dev_dir=dev_dir, gpio_access=lambda _p: True, lgpio_available=lambda: True)
    assert_finding(
        run(dr.check_gpio, make_config(tmp_path, [CLIMATE]), ok), Level.GREEN, "no GPIO", fix=None
    )
    # No chip: a wired sensor cannot work (auto would quietly read mock pins).
    assert_finding(
        run(dr.check_gpio, wired, ok), Level.RED, "no GPIO pins", fix='pin_factory = "mock"'
    )
    mock = make_config(tmp_path, [PULL_CORD], gpio={"pin_factory": "mock"})
    assert_finding(run(dr.check_gpio, mock, ok), Level.GREEN, "mock pins", fix=None)

    with_chip(dev_dir)
    found = run(dr.check_gpio, wired, ok)
    assert_finding(found, Level.GREEN, "pins accessible", "gpiochip0", fix=None)
    assert found.details["chips"] == ["gpiochip0"]
    assert_finding(
        run(dr.check_gpio, mock, ok), Level.AMBER, "mock pins", fix='pin_factory = "auto"'
    )
    denied = env(dev_dir=dev_dir, gpio_access=lambda _p: False, lgpio_available=lambda: True)
    assert_finding(
        run(dr.check_gpio, wired, denied), Level.RED, "may not use the GPIO", fix="usermod -aG gpio"
    )
    no_lgpio = env(dev_dir=dev_dir, gpio_access=lambda _p: True, lgpio_available=lambda: False)
    assert_finding(run(dr.check_gpio, wired, no_lgpio), Level.RED, "lgpio", fix="python3-lgpio")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may open any file")
def test_gpio_access_is_read_from_the_device_files(tmp_path: Path, dev_dir: Path) -> None:
    chip = with_chip(dev_dir)
    chip.chmod(0o600)
    wired = make_config(tmp_path, [PULL_CORD])
    assert (
        run(dr.check_gpio, wired, env(dev_dir=dev_dir, lgpio_available=lambda: True)).level
        is Level.GREEN
    )
    chip.chmod(0o000)
    assert (
        run(dr.check_gpio, wired, env(dev_dir=dev_dir, lgpio_available=lambda: True)).level
        is Level.RED
    )


# -- clock -----------------------------------------------------------------------------------


def test_clock_synchronised_or_not() -> None:
    assert_finding(
        run(dr.check_clock, None, env(clock_synced=lambda: True)),
        Level.GREEN,
        "synchronised",
        fix=None,
    )
    assert_finding(
        run(dr.check_clock, None, env(clock_synced=lambda: False)),
        Level.AMBER,
        "unsynced",
        fix="timedatectl",
    )
    # The real kernel answers one way or the other, never a crash.
    assert run(dr.check_clock, None, Environment()).level in (Level.GREEN, Level.AMBER)


# -- disk and store --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "free", "level"),
    [
        (32 * GB, 16 * GB, Level.GREEN),
        (32 * GB, int(32 * GB * 0.08), Level.AMBER),  # under 10 %
        (1 * GB, 400 * MB, Level.AMBER),  # 40 %, but under 500 MB
        (32 * GB, int(32 * GB * 0.015), Level.RED),  # under 2 %
        (1 * GB, 50 * MB, Level.RED),  # under 100 MB
    ],
)
def test_disk_thresholds(tmp_path: Path, total: int, free: int, level: Level) -> None:
    seen: list[Path] = []

    def usage(path: Path) -> DiskUsage:
        seen.append(path)
        return DiskUsage(total, total - free, free)

    found = run(dr.check_disk, make_config(tmp_path), env(disk_usage=usage))
    assert_finding(found, level, "MB free", fix=None if level is Level.GREEN else "free space")
    assert seen == [tmp_path]  # the data dir does not exist yet: its nearest parent is measured


def test_disk_on_the_real_filesystem(tmp_path: Path) -> None:
    found = run(dr.check_disk, make_config(tmp_path), Environment())
    assert found.details["total_bytes"] == shutil.disk_usage(tmp_path).total


def test_store_missing_healthy_backlogged_and_damaged(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert_finding(
        run(dr.check_store, cfg), Level.AMBER, "no buffer yet", fix="hearth service install"
    )

    buffer_with(cfg, [reading_at("a", NOW - 600 + i) for i in range(3)])
    found = run(dr.check_store, cfg)
    assert_finding(found, Level.GREEN, "buffer OK", "3 event(s) waiting", "10 min ago", fix=None)
    assert found.details["queue_depth"]["routine"] == 3

    behind = make_config(tmp_path / "behind")
    buffer_with(behind, [reading_at("a", NOW - 2 * 86400)], synced=False)
    buffer_with(behind, [reading_at("a", NOW - 60)])
    assert_finding(
        run(dr.check_store, behind), Level.AMBER, "2 d ago", "over a day", fix="hearth sync now"
    )

    cfg.store_path.write_bytes(b"this is not an sqlite file, the SD card ate it" * 100)
    assert_finding(
        run(dr.check_store, cfg), Level.RED, "cannot be read", fix="systemctl restart hearth"
    )


def test_store_with_damaged_pages_is_red(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    buffer_with(cfg, [reading_at(f"s{i % 7}", NOW - i) for i in range(3000)])
    with cfg.store_path.open("r+b") as f:  # scribble over b-tree pages past the schema page
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)
    found = run(dr.check_store, cfg)
    assert_finding(found, Level.RED, "", fix="moves a damaged buffer aside")


# -- council ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def council(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CouncilServer]:
    root = tmp_path_factory.mktemp("council")
    with running_council(f"sqlite:///{root / 'council.db'}") as server:
        yield server


def enrolled(tmp_path: Path, council: CouncilServer, url: str | None = None) -> HubConfig:
    data_dir = tmp_path / "data"
    hub_id, _ = council.enroll(data_dir)
    return make_config(tmp_path, council={"url": url or council.url}, hub={"id": hub_id})


class OffsetClock:
    """The system clock, off by `offset` seconds (a Pi without a battery after a power cut)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def test_council_not_enrolled_is_amber(tmp_path: Path) -> None:
    assert_finding(
        run(dr.check_council, make_config(tmp_path)),
        Level.AMBER,
        "not enrolled",
        fix="hearth enroll --council",
    )


def test_a_deferred_enrollment_is_named_without_its_code(tmp_path: Path) -> None:
    from sync.deferred import defer_enrollment

    config = make_config(tmp_path)
    config.hub.data_dir.mkdir(parents=True, exist_ok=True)
    defer_enrollment(config.hub.data_dir, "https://hearth.example.gov.uk", "AAAA-BBBB-CCCC")
    found = run(dr.check_council, config)
    assert_finding(found, Level.AMBER, "enrollment deferred", fix="give the hub a connection")
    assert "https://hearth.example.gov.uk" in found.summary
    assert "AAAA" not in f"{found.summary} {found.fix} {found.details}"


def test_council_reachable_and_signature_accepted(tmp_path: Path, council: CouncilServer) -> None:
    cfg = enrolled(tmp_path, council)
    found = run(dr.check_council, cfg)
    assert_finding(found, Level.GREEN, f"enrolled as {cfg.hub.id}", "signature accepted", fix=None)
    assert found.details["config_version"] >= 1  # the council numbers versions from 1
    assert abs(found.details["clock_offset_s"]) < 5


def test_council_notices_a_hub_clock_that_is_off(tmp_path: Path, council: CouncilServer) -> None:
    cfg = enrolled(tmp_path, council)
    # An hour ahead: the first request is refused for its timestamp, the retry with the
    # council's clock goes through; the doctor says the clock is off.
    found = run(dr.check_council, cfg, env(upload_clock=OffsetClock(3600.0)))
    assert_finding(found, Level.AMBER, "signature accepted", "3600 s ahead of", fix="timedatectl")


def test_council_refuses_a_key_it_does_not_know(tmp_path: Path, council: CouncilServer) -> None:
    cfg = enrolled(tmp_path, council)
    HubIdentity.generate(cfg.hub.data_dir, overwrite=True)  # a new key the council never saw
    found = run(dr.check_council, cfg)
    assert_finding(found, Level.RED, "did not accept this hub's key", fix="hearth enroll --force")
    assert found.details["status"] == 401

    stranger = make_config(tmp_path, council={"url": council.url}, hub={"id": "no-such-hub"})
    assert_finding(
        run(dr.check_council, stranger), Level.RED, "unknown hub", fix="hearth enroll --force"
    )


def test_council_key_file_missing_or_readable_by_others(
    tmp_path: Path, council: CouncilServer
) -> None:
    cfg = enrolled(tmp_path, council)
    key = cfg.hub.data_dir / KEY_FILENAME
    key.chmod(0o644)
    assert_finding(run(dr.check_council, cfg), Level.RED, "not usable", fix=f"chmod 600 {key}")
    key.unlink()
    assert_finding(run(dr.check_council, cfg), Level.RED, "no hub key", fix="hearth enroll --force")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nobody listens there


@pytest.mark.parametrize(
    ("url", "level", "words", "fix", "failure"),
    [
        ("http://127.0.0.1:{closed}", Level.AMBER, "cannot be reached", "Wi-Fi", "no_connection"),
        ("https://council.invalid", Level.AMBER, "DNS", "spelt right", "dns"),
        ("https://127.0.0.1:{council}", Level.RED, "secure (TLS) connection", "https://", "tls"),
        ("{url}/wrong-prefix", Level.RED, "404", "council address", None),
    ],
)
def test_council_connection_failures_are_told_apart(
    tmp_path: Path,
    council: CouncilServer,
    url: str,
    level: Level,
    words: str,
    fix: str,
    failure: str | None,
) -> None:
    target = url.format(closed=free_port(), council=council.url.rsplit(":", 1)[1], url=council.url)
    cfg = enrolled(tmp_path, council, url=target)
    found = run(dr.check_council, cfg)
    assert_finding(found, level, words, fix=fix)
    assert found.details.get("failure") == failure


def test_council_refusals_explained() -> None:
    details: dict[str, Any] = {}
    url = "https://council.example.org"
    skew = dr._refusal_finding(401, "hub signature (timestamp): +900 s", url, details)
    assert_finding(skew, Level.RED, "clock", fix="syncs its time")
    down = dr._refusal_finding(503, "database unavailable", url, details)
    assert_finding(down, Level.AMBER, "503", fix="wait in the buffer")


# -- service ---------------------------------------------------------------------------------


def systemctl(bin_dir: Path, output: str, rc: int = 0, stderr: str = "") -> Path:
    args = bin_dir / "args"
    script(
        bin_dir,
        "systemctl",
        # Shell builtins only: PATH holds nothing but this directory.
        f"echo \"$@\" > {args}\nprintf '%s\\n' '{output}'\necho '{stderr}' >&2\nexit {rc}",
    )
    return args


def props(
    active: str = "active",
    sub: str = "running",
    watchdog: str = "30s",
    restarts: int = 0,
    load: str = "loaded",
) -> str:
    return (
        f"LoadState={load}\nActiveState={active}\nSubState={sub}\n"
        f"WatchdogUSec={watchdog}\nNRestarts={restarts}"
    )


@pytest.mark.parametrize(
    ("output", "level", "words", "fix"),
    [
        (props(), Level.GREEN, "running, watchdog 30s, 0 restart(s)", None),
        (props(watchdog="0"), Level.AMBER, "without its watchdog", "hearth service install"),
        (props(restarts=7), Level.AMBER, "crashing", "journalctl -u hearth.service"),
        (
            props(active="inactive", sub="dead", watchdog="0", load="not-found"),
            Level.AMBER,
            "not installed",
            "sudo hearth service install",
        ),
        (props(active="failed", sub="failed"), Level.RED, "not running", "systemctl enable --now"),
        (
            props(active="activating", sub="auto-restart", restarts=4),
            Level.RED,
            "keeps restarting",
            "journalctl",
        ),
    ],
)
def test_service_states(
    bin_dir: Path, output: str, level: Level, words: str, fix: str | None
) -> None:
    args = systemctl(bin_dir, output)
    assert_finding(run(dr.check_service, None), level, words, fix=fix)
    asked = args.read_text().split()
    assert asked[:2] == ["show", "hearth.service"]
    assert set(asked[3].split(",")) >= {"ActiveState", "SubState", "WatchdogUSec", "NRestarts"}


def test_service_without_systemd(bin_dir: Path) -> None:
    assert_finding(
        run(dr.check_service, None),
        Level.AMBER,
        "not installed as a service",
        fix="sudo hearth service install",
    )
    systemctl(
        bin_dir, "", rc=1, stderr="System has not been booted with systemd as init system (PID 1)."
    )
    assert_finding(
        run(dr.check_service, None),
        Level.AMBER,
        "not been booted with systemd",
        fix="hearth service install",
    )


# -- sensors ---------------------------------------------------------------------------------


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def test_sensors_heard_silent_and_batteries(tmp_path: Path) -> None:
    climate2 = {**CLIMATE, "id": "bed-climate", "room": "bedroom", "address": "A4:C1:38:00:00:03"}
    climate3 = {**CLIMATE, "id": "bath-climate", "room": "bathroom", "address": "A4:C1:38:00:00:04"}
    climate4 = {**CLIMATE, "id": "loft-climate", "room": "loft", "address": "A4:C1:38:00:00:05"}
    cfg = make_config(
        tmp_path,
        [CLIMATE, climate2, climate3, climate4, BLE_MOTION, WIRED_MOTION, PULL_CORD],
        checks={"sensor_silent": {"battery_low_pct": 15}},
    )
    buffer_with(
        cfg,
        [
            reading_at("lounge-climate", NOW - 600),
            reading_at("lounge-climate", NOW - 590, Quantity.BATTERY, 80),
            reading_at("bed-climate", NOW - 3 * 3600),  # 3 h: over 3 x the 15 min heartbeat
            reading_at("bath-climate", NOW - 100, Quantity.BATTERY, 20),
            reading_at("hall-motion", NOW - 2 * 3600, Quantity.MOTION, 1),
            reading_at("kitchen-motion", NOW - 2 * 86400, Quantity.MOTION, 1),
            # Written later but stamped by a clock that was ahead: the latest by arrival wins.
            reading_at("bath-climate", NOW + 86400, Quantity.BATTERY, 90),
            reading_at("bath-climate", NOW - 60, Quantity.BATTERY, 10),
        ],
    )
    found = by_name(run(dr.check_sensors, cfg))
    assert_finding(
        found["sensor lounge-climate"], Level.GREEN, "10 min ago", "battery 80 %", fix=None
    )
    assert_finding(found["sensor bed-climate"], Level.RED, "last heard 3 h ago", fix="within range")
    assert_finding(
        found["sensor bath-climate"],
        Level.RED,
        "battery 10 % (low)",
        fix="replace the battery of bath-climate",
    )
    assert_finding(
        found["sensor loft-climate"], Level.RED, "never heard", fix="at least every 15 min"
    )
    assert_finding(
        found["sensor hall-motion"], Level.AMBER, "2 h ago", fix="only send when something happens"
    )
    assert_finding(
        found["sensor kitchen-motion"],
        Level.AMBER,
        "2 d ago",
        fix="only reports when something changes",
    )
    assert_finding(
        found["sensor pull-cord"], Level.GREEN, "not used yet", fix="hearth sensors test pull-cord"
    )
    assert found["sensor bath-climate"].details["battery"] == 10


def test_sensor_battery_thresholds_follow_the_config(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [CLIMATE], checks={"sensor_silent": {"battery_low_pct": 20}})
    for pct, level in [(30, Level.GREEN), (24, Level.AMBER), (19, Level.RED)]:
        buffer_with(cfg, [reading_at("lounge-climate", NOW - 60, Quantity.BATTERY, pct)])
        [found] = run(dr.check_sensors, cfg)
        assert found.level is level, (pct, found)


def test_sensors_before_the_hub_has_run(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [CLIMATE, PULL_CORD])
    assert all(
        f.level is Level.AMBER and "has not run" in f.summary for f in run(dr.check_sensors, cfg)
    )
    assert_finding(
        run(dr.check_sensors, make_config(tmp_path))[0],
        Level.AMBER,
        "no sensors",
        fix="hearth sensors add",
    )


# -- the runner ------------------------------------------------------------------------------


def boom(ctx: Context) -> Finding:
    raise KeyError("no such thing")


async def hangs(ctx: Context) -> Finding:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def fine(ctx: Context) -> Finding:
    return Finding("fine", Level.GREEN, "all good")


def test_a_failing_or_hanging_check_does_not_stop_the_others(tmp_path: Path) -> None:
    checks = [
        Check("boom", boom),
        Check("hangs", hangs),
        Check("fine", fine),
        Check("clock", dr.check_clock),
    ]
    report = asyncio.run(
        run_checks(Context(make_config(tmp_path), tmp_path, env(check_timeout_s=0.2)), checks)
    )
    assert [f.name for f in report.findings] == ["boom", "hangs", "fine", "clock"]
    failed, hung, ok, clock = report.findings
    assert_finding(failed, Level.RED, "KeyError", fix="hearth doctor --json")
    assert failed.details["exception"] == "KeyError"
    assert_finding(hung, Level.RED, "did not finish within 0.2 s", fix="again")
    assert ok.level is Level.GREEN and clock.level is Level.GREEN
    assert report.level is Level.RED


def test_a_broken_config_runs_only_what_needs_no_config(tmp_path: Path, bin_dir: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nname = "x"\ncolour = "blue"\n')
    report = asyncio.run(run_doctor(path, env()))
    assert [f.name for f in report.findings] == ["config", "clock", "service"]
    assert_finding(report.findings[0], Level.RED, "colour", fix=f"hearth config check {path}")
    assert report.level.exit_code == 2


# -- the command -----------------------------------------------------------------------------


def doctor_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(doctor)
    return app


def invoke(args: list[str], environment: Environment) -> Any:
    return CliRunner().invoke(doctor_app(), args, obj=environment)


@pytest.fixture
def healthy_hub(
    tmp_path: Path, council: CouncilServer, bin_dir: Path, dev_dir: Path
) -> tuple[Path, Environment]:
    """An enrolled hub with a wired pull cord, a fresh buffer and a service that runs."""
    hub_id, _ = council.enroll(tmp_path / "data")
    path = write_config(tmp_path, [PULL_CORD], hub={"id": hub_id}, council={"url": council.url})
    buffer_with(make_config(tmp_path), [reading_at("other", NOW - 5)])
    systemctl(bin_dir, props())
    with_chip(dev_dir)
    return path, env(dev_dir=dev_dir, gpio_access=lambda _p: True, lgpio_available=lambda: True)


def test_json_shape_and_exit_codes(healthy_hub: tuple[Path, Environment]) -> None:
    path, healthy = healthy_hub
    result = invoke(["--config", str(path), "--json"], healthy)
    body = json.loads(result.stdout)
    assert result.exit_code == 0, body
    assert body["level"] == "green" and body["exit_code"] == 0
    names = [f["name"] for f in body["findings"]]
    assert names == [
        "config",
        "bluetooth",
        "gpio",
        "clock",
        "disk",
        "store",
        "council",
        "service",
        "sensor pull-cord",
    ]
    for finding in body["findings"]:
        assert set(finding) == {"name", "level", "summary", "fix", "details"}
        assert finding["level"] in ("green", "amber", "red")
        assert isinstance(finding["details"], dict)

    unsynced = invoke(
        ["--config", str(path), "--json"], replace(healthy, clock_synced=lambda: False)
    )
    assert unsynced.exit_code == 1
    assert json.loads(unsynced.stdout)["level"] == "amber"

    missing = invoke(["--config", str(path.with_name("nope.toml")), "--json"], healthy)
    assert missing.exit_code == 2
    assert json.loads(missing.stdout)["findings"][0]["fix"].startswith(
        "write one: hearth config init"
    )


def test_human_output_shows_levels_and_fixes_as_written(
    tmp_path: Path, bin_dir: Path, dev_dir: Path
) -> None:
    with_chip(dev_dir)
    path = write_config(tmp_path, [PULL_CORD], gpio={"pin_factory": "mock"})
    result = invoke(["--config", str(path)], env(dev_dir=dev_dir, clock_synced=lambda: False))
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())  # the table wraps long lines
    assert "● amber gpio" in text
    assert "under [gpio]" in text  # not eaten as rich markup
    assert "→ connect the hub to the internet" in text
    assert "overall: amber" in text


def test_print_report_counts_levels() -> None:
    console = Console(width=200, record=True, color_system=None)
    print_report(
        Report([Finding("a", Level.GREEN, "ok"), Finding("b", Level.RED, "bad", "do this")]),
        console,
    )
    text = console.export_text()
    assert "● red" in text and "bad" in text
    assert "→ do this" in text
    assert "overall: red (needs fixing: see the red lines; 1 green, 0 amber, 1 red)" in text


def test_sensors_on_an_unreadable_buffer_point_at_the_store(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [CLIMATE])
    cfg.store_path.parent.mkdir(parents=True)
    cfg.store_path.write_bytes(b"this is not an sqlite file, the SD card ate it" * 100)
    [found] = run(dr.check_sensors, cfg)
    assert_finding(found, Level.RED, "buffer cannot be read", fix="store line")


def test_latest_by_sensor_looks_past_the_newest_rows_only_when_it_must(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    buffer_with(
        cfg,
        [
            reading_at("a", NOW - 500, Quantity.BATTERY, 55),  # a's battery: only long ago
            reading_at("c", NOW - 400),  # c: heard only long ago
            reading_at("a", NOW - 300, Quantity.BATTERY, 60),
            *[reading_at("a", NOW - 100 + i) for i in range(5)],
            reading_at("b", NOW - 10),
        ],
    )
    wanted = ["a", "b", "c", "never"]
    conn = dr.connect_readonly(cfg.store_path)
    try:
        windowed = dr.latest_by_sensor(conn, wanted, recent_rows=3)
        whole = dr.latest_by_sensor(conn, wanted, recent_rows=10**9)
    finally:
        conn.close()
    assert windowed == whole
    assert windowed["a"] == dr.Heard(NOW - 96, 60, NOW - 300)
    assert windowed["b"] == dr.Heard(NOW - 10)
    assert windowed["c"] == dr.Heard(NOW - 400)
    assert windowed["never"] == dr.Heard()
