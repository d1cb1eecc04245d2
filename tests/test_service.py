"""`hearth service`: the rendered systemd unit and its installation.

systemctl, useradd and (where it is not installed) systemd-analyze are fakes on PATH that
record their arguments; the real systemd-analyze checks the unit when this machine has it.
Whether we run as root, and the service user's account, are injected, so the tests behave the
same as root and as a normal user and never create a real user.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.config import starter_config, write_config
from provisioning import service_cmd
from provisioning.service_cmd import (
    UNIT_NAME,
    UnitSpec,
    render_unit,
    service_app,
    unit_problems,
    verify_unit,
)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert key not in current, f"{key} set twice"
        current[key] = value
    return sections


SPEC = UnitSpec(
    hearth_bin=Path("/opt/hearth/venv/bin/hearth"),
    config_path=Path("/etc/hearth/hub.toml"),
    data_dir=Path("/srv/hearth-data"),
)


def test_the_unit_has_every_directive_the_issue_asks_for() -> None:
    unit = parse_unit(render_unit(SPEC))
    service = unit["Service"]
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"  # restarts never give up
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "60"
    assert service["Restart"] == "always"
    assert int(service["RestartSec"]) > 0
    assert service["User"] == "hearth" and service["Group"] == "hearth"
    assert service["SupplementaryGroups"].split() == ["bluetooth", "gpio"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/srv/hearth-data"  # the data dir and nothing else
    assert service["MemoryMax"] == "256M"  # a leak found after months restarts, never swaps
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""  # BLE via D-Bus, GPIO via group: none
    assert service["AmbientCapabilities"] == ""
    program, *args = service["ExecStart"].split()
    assert program == "/opt/hearth/venv/bin/hearth"
    assert args == ["run", "--config", "/etc/hearth/hub.toml"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_groups_and_timings_follow_the_spec() -> None:
    spec = replace(SPEC, user="hub", group="hubgrp", supplementary_groups=("gpio",))
    service = parse_unit(render_unit(spec))["Service"]
    assert (service["User"], service["Group"], service["SupplementaryGroups"]) == (
        "hub",
        "hubgrp",
        "gpio",
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"data_dir": Path("data")}, "not an absolute path"),
        ({"data_dir": Path("/tmp/hearth")}, "PrivateTmp"),
        ({"config_path": Path("/home/pi/hub.toml")}, "ProtectHome"),
        ({"hearth_bin": Path("/root/.venv/bin/hearth")}, "ProtectHome"),
        ({"data_dir": Path("/srv/my data")}, "spaces, quotes and %"),
        ({"data_dir": Path("/srv/100%")}, "spaces, quotes and %"),
        ({"user": "root"}, "own unprivileged user"),
        ({"user": "Bad User"}, "lower-case"),
    ],
)
def test_a_unit_that_could_not_work_is_refused(change: dict[str, object], complaint: str) -> None:
    assert unit_problems(SPEC) == []
    (problem,) = unit_problems(replace(SPEC, **change))  # type: ignore[arg-type]
    assert complaint in problem


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path: Path) -> None:
    hearth = tmp_path / "hearth"
    hearth.write_text("#!/bin/sh\n")
    hearth.chmod(0o755)
    text = render_unit(replace(SPEC, hearth_bin=hearth))
    checked = verify_unit(text)
    assert checked is not None
    assert checked.ok, checked.output
    # ...and would notice a mistake: verify exits 0 on an unparsable value, we do not.
    broken = verify_unit(text.replace("Restart=always", "Restart=sometimes"))
    assert broken is not None and not broken.ok
    assert "sometimes" in broken.output


# --- install, uninstall, status -------------------------------------------------------------


@dataclass
class Machine:
    base: Path  # outside /tmp and /home, which the unit would hide from the service
    bin: Path  # the only directory on PATH
    calls: Path  # what the fake tools were called with, one line per call
    config: Path
    data_dir: Path
    unit_dir: Path
    hearth: Path

    def tool(self, name: str, body: str = "") -> None:
        path = self.bin / name
        path.unlink(missing_ok=True)  # replace, never write through, what was there
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.calls}"\n{body}\n')
        path.chmod(0o755)

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def systemctl_calls(self) -> list[str]:
        return [call for call in self.called() if call.startswith("systemctl")]

    def unit_files(self) -> list[str]:
        return sorted(p.name for p in self.unit_dir.iterdir())


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("needs a writable /dev/shm for paths the unit does not hide")
    base = Path(tempfile.mkdtemp(prefix="hearth_service_", dir="/dev/shm"))
    try:
        m = Machine(
            base=base,
            bin=base / "bin",
            calls=base / "calls.txt",
            config=base / "etc" / "hub.toml",
            data_dir=base / "data",
            unit_dir=base / "units",
            hearth=base / "venv" / "hearth",
        )
        for directory in (m.bin, m.config.parent, m.unit_dir, m.hearth.parent):
            directory.mkdir(parents=True)
        m.hearth.write_text("#!/bin/sh\n")
        m.hearth.chmod(0o755)
        write_config(m.config, starter_config("Test flat", m.data_dir, simulated=False))
        m.tool("systemctl")
        if SYSTEMD_ANALYZE is not None:  # the real one, behind a wrapper (not a symlink)
            m.tool("systemd-analyze", f'exec "{SYSTEMD_ANALYZE}" "$@"')
        monkeypatch.setenv("PATH", str(m.bin))
        monkeypatch.setattr(service_cmd, "_is_root", lambda: True)
        account = (os.getuid(), os.getgid(), "hearth")  # chown to ourselves works unprivileged
        monkeypatch.setattr(service_cmd, "_account", lambda user: account)
        yield m
    finally:
        shutil.rmtree(base)


def run(m: Machine, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(service_app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def install(m: Machine, *extra: str) -> tuple[int, str]:
    return run(
        m,
        "install",
        "--config",
        str(m.config),
        "--unit-dir",
        str(m.unit_dir),
        "--hearth-bin",
        str(m.hearth),
        *extra,
    )


def test_install_writes_the_unit_atomically_and_starts_it(machine: Machine) -> None:
    code, output = install(machine)
    assert code == 0, output
    assert machine.unit_files() == [UNIT_NAME]  # no temporary file left behind
    unit_path = machine.unit_dir / UNIT_NAME
    assert stat.S_IMODE(unit_path.stat().st_mode) == 0o644
    service = parse_unit(unit_path.read_text())["Service"]
    assert service["ReadWritePaths"] == str(machine.data_dir)
    assert service["ExecStart"] == f"{machine.hearth} run --config {machine.config}"
    assert service["Group"] == "hearth"
    # only the hardware groups that exist here (a missing one would stop the unit starting)
    for group in ("bluetooth", "gpio"):
        listed = group in service.get("SupplementaryGroups", "").split()
        assert listed == service_cmd._group_exists(group)
    assert machine.data_dir.is_dir()
    assert machine.systemctl_calls() == [
        "systemctl daemon-reload",
        f"systemctl enable --now {UNIT_NAME}",
    ]
    if SYSTEMD_ANALYZE is not None:
        assert "verify: systemd-analyze verify found no problems" in output
    assert "start: enabled and started" in output


def test_a_failed_verification_leaves_the_old_unit_intact(machine: Machine) -> None:
    unit_path = machine.unit_dir / UNIT_NAME
    unit_path.write_text("# the unit that works today\n")
    machine.tool("systemd-analyze", f'echo "{UNIT_NAME}:7: Unknown key" >&2\nexit 1')
    code, output = install(machine)
    assert code == 1
    assert "systemd-analyze verify found problems; nothing written" in output
    assert "Unknown key" in output
    assert unit_path.read_text() == "# the unit that works today\n"
    assert machine.unit_files() == [UNIT_NAME]
    (verify,) = machine.called()  # verified in a scratch directory, then nothing else
    assert verify.startswith("systemd-analyze verify /") and verify.endswith(UNIT_NAME)


def test_a_replaced_unit_is_swapped_in_whole(machine: Machine) -> None:
    unit_path = machine.unit_dir / UNIT_NAME
    unit_path.write_text("# old\n")
    inode = unit_path.stat().st_ino
    code, output = install(machine, "--no-start")
    assert code == 0, output
    assert unit_path.stat().st_ino != inode  # renamed over, not rewritten in place
    assert "Type=notify" in unit_path.read_text()
    assert machine.unit_files() == [UNIT_NAME]


def test_without_systemd_tools_the_unit_is_written_and_the_skips_said(machine: Machine) -> None:
    for tool in machine.bin.iterdir():
        tool.unlink()
    code, output = install(machine)
    assert code == 0, output
    assert "systemd-analyze is not installed here; unit not verified" in output
    assert "systemctl is not on PATH" in output
    assert "systemctl enable --now hearth.service" in output  # what to run on the hub
    assert machine.unit_files() == [UNIT_NAME]


def test_no_start_writes_but_does_not_touch_systemd(machine: Machine) -> None:
    code, output = install(machine, "--no-start")
    assert code == 0, output
    assert "start: skipped (--no-start)" in output
    assert machine.systemctl_calls() == []


def test_a_failing_systemctl_is_reported_with_where_to_look(machine: Machine) -> None:
    machine.tool("systemctl", 'echo "Unit hearth.service has a bad setting." >&2\nexit 1')
    code, output = install(machine)
    assert code == 1
    assert "systemctl daemon-reload failed (1): Unit hearth.service has a bad setting." in output
    assert "journalctl -u hearth.service" in output


def test_a_missing_user_is_created_as_a_system_user(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine.tool("useradd")

    def account(user: str) -> tuple[int, int, str] | None:
        made = any(call.startswith("useradd") for call in machine.called())
        return (os.getuid(), os.getgid(), user) if made else None

    monkeypatch.setattr(service_cmd, "_account", account)
    code, output = install(machine, "--user", "hearth-hub")
    assert code == 0, output
    useradd = next(call for call in machine.called() if call.startswith("useradd"))
    assert useradd.split() == [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        str(machine.data_dir),
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Hearth",
        "hub",
        "service",
        "hearth-hub",
    ]
    assert "user: created system user hearth-hub" in output
    assert parse_unit((machine.unit_dir / UNIT_NAME).read_text())["Service"]["User"] == (
        "hearth-hub"
    )


def test_not_root_prints_what_to_run_and_starts_nothing(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_cmd, "_is_root", lambda: False)
    monkeypatch.setattr(service_cmd, "_account", lambda user: None)
    code, output = install(machine)
    assert code == 0, output
    assert "as root, run: useradd --system --user-group" in output
    assert f"chown -R hearth:hearth {machine.data_dir}" in output
    assert "start: skipped, not root" in output
    assert machine.systemctl_calls() == []


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--config", "/dev/shm/no-such-dir/hub.toml"], "no config at"),
        (["--user", "root"], "own unprivileged user"),
        (["--user", "Not A User"], "lower-case letters"),
        (["--hearth-bin", "/dev/shm/no-such-hearth"], "not an executable file"),
    ],
)
def test_bad_input_exits_2_with_a_clear_line(
    machine: Machine, args: list[str], complaint: str
) -> None:
    code, output = install(machine, *args)
    assert code == 2
    assert complaint in output
    assert machine.unit_files() == []
    assert machine.called() == []


def test_a_data_dir_the_service_cannot_see_is_refused(machine: Machine, tmp_path: Path) -> None:
    write_config(machine.config, starter_config("Flat", tmp_path / "data", simulated=False))
    code, output = install(machine)
    assert code == 2
    assert "PrivateTmp=yes gives the service its own empty /tmp" in output
    assert machine.unit_files() == []


def test_a_bad_config_exits_2(machine: Machine) -> None:
    machine.config.write_text("[hub]\nname = 'x'\nbogus = 1\n")
    code, output = install(machine)
    assert code == 2
    assert "bogus" in output


def test_uninstall_stops_disables_and_removes(machine: Machine) -> None:
    assert install(machine, "--no-start")[0] == 0
    code, output = run(machine, "uninstall", "--unit-dir", str(machine.unit_dir))
    assert code == 0, output
    assert machine.unit_files() == []
    assert machine.systemctl_calls() == [
        f"systemctl disable --now {UNIT_NAME}",
        "systemctl daemon-reload",
    ]
    code, output = run(machine, "uninstall", "--unit-dir", str(machine.unit_dir))
    assert code == 0 and "not installed" in output


def test_status_reports_state_watchdog_and_the_hubs_own_words(machine: Machine) -> None:
    machine.tool(
        "systemctl",
        "printf 'ActiveState=active\\nSubState=running\\nWatchdogUSec=1min\\n"
        "StatusText=stuck: uploader silent 330 s\\nNRestarts=3\\n'",
    )
    code, output = run(machine, "status", "--unit-dir", str(machine.unit_dir))
    assert code == 0, output
    assert "state: active (running)" in output
    assert "watchdog: armed, 1min" in output
    assert "hub says: stuck: uploader silent 330 s" in output
    assert "restarts: 3" in output
    assert machine.called()[-1].startswith(f"systemctl show {UNIT_NAME} --property=")

    machine.tool("systemctl", "printf 'ActiveState=failed\\nSubState=failed\\nWatchdogUSec=0\\n'")
    code, output = run(machine, "status", "--unit-dir", str(machine.unit_dir), "--json")
    assert code == 1
    assert '"running": false' in output and '"active": "failed"' in output
