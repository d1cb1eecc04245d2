"""`hearth service install|uninstall|status`: run the hub under systemd, unattended, for years.

The unit is rendered here (render_unit) rather than shipped as a file because three things in
it are only known on the hub: where hearth is installed, where the config is, and the data
directory that is the only place the service may write. Every directive is explained in the
rendered unit itself, so whoever opens the file on a hub sees why it is there.

External tools (systemctl, systemd-analyze, useradd) are looked up on PATH when used, so a
machine without systemd still gets the unit written and a clear line about what was skipped.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioning.exits import fail as _fail
from provisioning.exits import load_existing_config
from provisioning.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from hub.config import HubConfig

__all__ = [
    "ServiceState",
    "UnitSpec",
    "Verification",
    "render_unit",
    "service_app",
    "service_state",
    "unit_problems",
    "verify_unit",
]

UNIT_NAME = "hearth.service"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_USER = "hearth"
WATCHDOG_S = 60  # the hub pings every 30 s while healthy (hub/service.py)
RESTART_S = 10
# Groups that grant the hardware: `bluetooth` may talk to BlueZ on the system bus, `gpio`
# owns /dev/gpiochip* on Raspberry Pi OS. Only the ones that exist go into the unit: a missing
# supplementary group makes systemd refuse to start the service at all.
HARDWARE_GROUPS = ("bluetooth", "gpio")
# A path inside these is invisible to the service (ProtectHome=, PrivateTmp=).
_HIDDEN = {
    Path("/home"): "ProtectHome=yes hides /home from the service",
    Path("/root"): "ProtectHome=yes hides /root from the service",
    Path("/run/user"): "ProtectHome=yes hides /run/user from the service",
    Path("/tmp"): "PrivateTmp=yes gives the service its own empty /tmp",
    Path("/var/tmp"): "PrivateTmp=yes gives the service its own empty /var/tmp",
}
# Characters that need no quoting or %-escaping anywhere in a unit file.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

service_app = typer.Typer(help="Run the hub as a supervised systemd service.", no_args_is_help=True)


@dataclass(frozen=True)
class UnitSpec:
    """What varies between hubs; everything else in the unit is policy."""

    hearth_bin: Path
    config_path: Path
    data_dir: Path
    user: str = DEFAULT_USER
    group: str = DEFAULT_USER
    supplementary_groups: tuple[str, ...] = HARDWARE_GROUPS
    watchdog_s: int = WATCHDOG_S
    restart_s: int = RESTART_S


def unit_problems(spec: UnitSpec) -> list[str]:
    """Why `spec` would make a unit that cannot work, one line each (empty: fine)."""
    problems: list[str] = []
    for what, path in (
        ("the hearth executable", spec.hearth_bin),
        ("the config file", spec.config_path),
        ("the data directory", spec.data_dir),
    ):
        if not path.is_absolute():
            problems.append(f"{what} {path} is not an absolute path")
        elif not _SAFE_PATH.fullmatch(str(path)):
            problems.append(
                f"{what} {path}: use a path of letters, digits and . _ / + - only"
                " (spaces, quotes and % have special meanings in a systemd unit)"
            )
        else:
            for hidden, why in _HIDDEN.items():
                if path == hidden or path.is_relative_to(hidden):
                    problems.append(f"{what} {path} cannot be used by the service: {why}")
    for what, name in (("user", spec.user), ("group", spec.group)):
        if not _USER_NAME.fullmatch(name):
            problems.append(f"{what} {name!r}: use lower-case letters, digits, _ and -")
        elif name == "root":
            problems.append(f"{what} root: the hub runs as its own unprivileged user")
    return problems


def render_unit(spec: UnitSpec) -> str:
    """The unit file text for `spec` (check it with unit_problems first)."""
    groups = " ".join(spec.supplementary_groups)
    data = spec.data_dir
    return f"""\
# Written by `hearth service install`; run it again rather than editing this file.
[Unit]
Description=Hearth in-home sensor hub
# Ordering only, no dependency: the hub starts without Bluetooth or a network and its
# drivers and uploader retry. (No network-online.target: with no signal it would hold the
# start for minutes.)
After=bluetooth.service dbus.service
# Never stop restarting. With a start-rate limit, a few quick failures put the unit in
# "failed" for good and Restart= no longer applies, leaving a resident with no hub until
# someone visits. 0 turns the limit off; RestartSec= below paces the retries instead.
StartLimitIntervalSec=0

[Service]
# The hub says READY=1 once its buffer is open and its loops run, then pings WATCHDOG=1
# every WatchdogSec/2 only while every loop beats; a stuck loop stops the pings and
# systemd restarts the hub (hub/service.py).
Type=notify
NotifyAccess=main
WatchdogSec={spec.watchdog_s}
ExecStart={spec.hearth_bin} run --config {spec.config_path}
Restart=always
RestartSec={spec.restart_s}
# Opening a large buffer after a power cut can be slow on an SD card.
TimeoutStartSec=300
TimeoutStopSec=60
SyslogIdentifier=hearth
# A backstop, not a budget: the hub holds 60-65 MB for weeks (`make soak`). A slow leak
# found only after months would reach MemoryHigh (reclaimed and throttled, so it shows in
# `systemctl status`) and then MemoryMax, where the kernel ends it and Restart= brings it
# back within seconds with nothing lost (every event is in the buffer before it counts).
MemoryHigh=192M
MemoryMax=256M

User={spec.user}
Group={spec.group}
# bluetooth: bleak scans through BlueZ over D-Bus, and BlueZ's bus policy lets this group
# call org.bluez. gpio: owns /dev/gpiochip* on Raspberry Pi OS (lgpio opens the chip).
SupplementaryGroups={groups}
# No capabilities at all: bluetoothd does the raw HCI work with its own privileges; the hub
# only sends D-Bus messages (CAP_NET_RAW/CAP_NET_ADMIN would be needed only for raw HCI
# sockets, which the hub never opens). GPIO is file access granted by the gpio group.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes

# The whole filesystem read-only except the data directory (buffer, key, health file).
ProtectSystem=strict
ReadWritePaths={data}
WorkingDirectory={data}
# lgpio keeps its notification pipes in LG_WD (default: the working directory).
Environment=LG_WD={data}
PrivateTmp=yes
ProtectHome=yes
UMask=0027
# Not PrivateDevices= (it would hide /dev/gpiochip*), not ProtectClock= (it blocks the
# adjtimex call the hub uses to read whether the clock is synchronised).
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# AF_UNIX: D-Bus and sd_notify; AF_INET/6: the council; AF_NETLINK: name resolution.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Verification:
    ok: bool
    output: str  # what systemd-analyze said (problems found), empty when clean


def verify_unit(text: str) -> Verification | None:
    """Check unit text with `systemd-analyze verify`; None when that tool is not installed.

    systemd-analyze exits 0 after mere warnings such as an unknown key or a value it could
    not parse (and ignores), so any line about our unit counts as a failure too.
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="hearth-unit-") as scratch:
        path = Path(scratch) / UNIT_NAME  # verify wants a real unit name
        path.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run(
                [tool, "verify", str(path)], capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Verification(False, f"systemd-analyze could not run: {exc}")
    said = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(path) in line or line.startswith(UNIT_NAME)
    ]
    output = "\n".join(said) or (done.stdout + done.stderr).strip()
    return Verification(done.returncode == 0 and not said, output)


@dataclass
class ServiceState:
    """What `hearth service status` (and doctor) report."""

    unit_path: str
    installed: bool
    systemctl: bool  # whether systemctl could be asked at all
    active: str | None = None  # ActiveState: active, activating, failed, inactive...
    sub: str | None = None  # SubState: running, auto-restart...
    watchdog: str | None = None  # WatchdogUSec as systemctl shows it; "0" when not armed
    status_text: str | None = None  # the hub's last STATUS=
    restarts: int | None = None  # NRestarts since the unit was loaded
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.active == "active"

    @property
    def watchdog_armed(self) -> bool:
        return self.watchdog not in (None, "", "0", "infinity")


def service_state(unit_dir: Path = DEFAULT_UNIT_DIR) -> ServiceState:
    path = unit_dir / UNIT_NAME
    state = ServiceState(str(path), path.exists(), systemctl=False)
    tool = shutil.which("systemctl")
    if tool is None:
        return state
    state.systemctl = True
    props = "ActiveState,SubState,WatchdogUSec,StatusText,NRestarts"
    try:
        done = subprocess.run(
            [tool, "show", UNIT_NAME, f"--property={props}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        state.error = str(exc)
        return state
    if done.returncode != 0:
        state.error = done.stderr.strip() or f"systemctl show exited {done.returncode}"
        return state
    shown = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    state.active = shown.get("ActiveState") or None
    state.sub = shown.get("SubState") or None
    state.watchdog = shown.get("WatchdogUSec") or None
    state.status_text = shown.get("StatusText") or None
    restarts = shown.get("NRestarts", "")
    state.restarts = int(restarts) if restarts.isdigit() else None
    return state


# --- the commands ---------------------------------------------------------------------------


def _say(line: str) -> None:
    typer.echo(line)


def _is_root() -> bool:
    return os.geteuid() == 0


def _account(user: str) -> tuple[int, int, str] | None:
    """(uid, gid, primary group name) of `user`, or None when there is no such user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return entry.pw_uid, entry.pw_gid, group


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _hearth_executable() -> Path | None:
    """The `hearth` script of the install running now: beside the interpreter in a venv or
    a pip prefix, else the first on PATH."""
    beside = Path(sys.executable).with_name("hearth")
    if os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which("hearth")
    return Path(found).absolute() if found else None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def _hardware_groups(config: HubConfig) -> tuple[str, ...]:
    """The hardware groups that exist here; a missing one the config needs is explained."""
    from hub.config import SensorSource

    needs = {
        "bluetooth": (SensorSource.BLE, "install BlueZ (apt install bluez), which creates it"),
        "gpio": (
            SensorSource.GPIO,
            "Raspberry Pi OS creates it; elsewhere make it and give it /dev/gpiochip*",
        ),
    }
    kept: list[str] = []
    for name in HARDWARE_GROUPS:
        if _group_exists(name):
            kept.append(name)
            continue
        source, fix = needs[name]
        if any(sensor.source is source for sensor in config.sensors):
            _say(
                f"warning: group {name} does not exist, so {source.value} sensors"
                f" cannot be read: {fix}"
            )
        else:
            _say(f"note: group {name} does not exist; left out (no {source.value} sensors)")
    return tuple(kept)


def _useradd_argv(user: str, data_dir: Path) -> list[str]:
    return [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        str(data_dir),
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Hearth hub service",
        user,
    ]


def _ensure_account(user: str, data_dir: Path) -> tuple[int, int, str] | None:
    """The service user, made with useradd when missing and we are root. None when it is
    missing and we cannot make it (the command to run has been printed)."""
    found = _account(user)
    if found is not None:
        _say(f"user: {user} exists")
        return found
    argv = _useradd_argv(user, data_dir)
    if not _is_root():
        _say(f"user: {user} does not exist; as root, run: {' '.join(argv)}")
        return None
    tool = shutil.which("useradd")
    if tool is None:
        _fail(
            f"user {user} does not exist and useradd is not on PATH; create it, then run this again"
        )
    done = _run([tool, *argv[1:]])
    if done.returncode != 0:
        _fail(f"useradd failed ({done.returncode}): {(done.stderr or done.stdout).strip()}", 1)
    found = _account(user)
    if found is None:
        _fail(f"useradd reported success but there is no user {user}", 1)
    _say(f"user: created system user {user}")
    return found


def _own_data(data_dir: Path, account: tuple[int, int, str] | None, user: str) -> None:
    """The service must own its data: the hub's key is refused unless its owner runs hearth,
    and files written by root during setup (buffer, key) would otherwise be read-only."""
    if account is None or not _is_root():
        group = account[2] if account else user
        _say(f"data: as root, run: mkdir -p {data_dir} && chown -R {user}:{group} {data_dir}")
        return
    uid, gid, group = account
    try:
        data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chown(data_dir, uid, gid)
        for root, dirs, files in os.walk(data_dir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    except OSError as exc:
        _fail(f"cannot give {data_dir} to {user}: {exc}", 1)
    _say(f"data: {data_dir} owned by {user}:{group}")


def _config_readable(config_path: Path, account: tuple[int, int, str] | None) -> None:
    """The service reads the config; a file holding bindkeys is not world-readable, so
    it is given to the service's group (read only) rather than opened to everyone."""
    if account is None:
        return
    uid, gid, group = account
    st = config_path.stat()
    if st.st_uid == uid or st.st_mode & 0o004 or (st.st_gid == gid and st.st_mode & 0o040):
        return
    if not _is_root():
        _say(f"config: as root, run: chgrp {group} {config_path} && chmod g+r {config_path}")
        return
    try:
        os.chown(config_path, -1, gid)
        os.chmod(config_path, (st.st_mode & 0o7777) | 0o040)
    except OSError as exc:
        _fail(f"cannot let group {group} read {config_path}: {exc}", 1)
    _say(f"config: {config_path} readable by group {group}")


def _write_unit(path: Path, text: str) -> None:
    from hub.fsutil import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, mode=0o644)
    except OSError as exc:
        hint = "; run as root (sudo)" if isinstance(exc, PermissionError) else ""
        _fail(f"cannot write {path}: {exc.strerror or exc}{hint}")


def _systemctl(*args: str) -> None:
    tool = shutil.which("systemctl")
    assert tool is not None
    done = _run([tool, *args])
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        _fail(
            f"systemctl {' '.join(args)} failed ({done.returncode}): {said}\n"
            f"see: journalctl -u {UNIT_NAME} -n 50",
            1,
        )


UnitDirOption = Annotated[Path, typer.Option("--unit-dir", help="Where systemd units live.")]


@service_app.command("install")
def install(
    config: ConfigOption = DEFAULT_CONFIG,
    user: Annotated[
        str, typer.Option("--user", help="The unprivileged user the hub runs as.")
    ] = DEFAULT_USER,
    unit_dir: UnitDirOption = DEFAULT_UNIT_DIR,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Write the unit but do not enable or start it.")
    ] = False,
    hearth_bin: Annotated[
        Path | None,
        typer.Option("--hearth-bin", help="The hearth executable (default: this one)."),
    ] = None,
) -> None:
    """Write, check, enable and start the systemd unit for `hearth run`."""
    config_path = config.absolute()
    cfg = load_existing_config(config_path)
    binary = hearth_bin.absolute() if hearth_bin is not None else _hearth_executable()
    if binary is None:
        _fail("cannot find the installed hearth executable; pass --hearth-bin PATH")
    if not os.access(binary, os.X_OK):
        _fail(f"--hearth-bin {binary}: not an executable file")
    existing = _account(user)
    spec = UnitSpec(
        hearth_bin=binary,
        config_path=config_path,
        data_dir=cfg.hub.data_dir.absolute(),
        user=user,
        group=existing[2] if existing else user,
        supplementary_groups=_hardware_groups(cfg),
    )
    if problems := unit_problems(spec):
        _fail("\n".join(problems))
    text = render_unit(spec)
    checked = verify_unit(text)
    if checked is None:
        _say("verify: systemd-analyze is not installed here; unit not verified")
    elif not checked.ok:
        _fail(f"systemd-analyze verify found problems; nothing written:\n{checked.output}", 1)
    else:
        _say("verify: systemd-analyze verify found no problems")
    account = _ensure_account(user, spec.data_dir)
    _own_data(spec.data_dir, account, user)
    _config_readable(config_path, account)
    unit_path = unit_dir.absolute() / UNIT_NAME
    _write_unit(unit_path, text)
    _say(f"unit: wrote {unit_path}")
    start = f"systemctl daemon-reload && systemctl enable --now {UNIT_NAME}"
    if no_start:
        _say(f"start: skipped (--no-start); to start it: {start}")
    elif shutil.which("systemctl") is None:
        _say(f"start: skipped, systemctl is not on PATH (no systemd?); on the hub run: {start}")
    elif not _is_root():
        _say(f"start: skipped, not root; run: sudo sh -c '{start}'")
    elif account is None:
        _say(f"start: skipped until user {user} exists; then run: {start}")
    else:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
        _say(f"start: enabled and started {UNIT_NAME}; check it with: hearth service status")


@service_app.command("uninstall")
def uninstall(unit_dir: UnitDirOption = DEFAULT_UNIT_DIR) -> None:
    """Stop and disable the service and remove its unit; the user and the data stay."""
    unit_path = unit_dir.absolute() / UNIT_NAME
    has_systemctl = shutil.which("systemctl") is not None
    if has_systemctl and _is_root():
        tool = shutil.which("systemctl")
        assert tool is not None
        done = _run([tool, "disable", "--now", UNIT_NAME])
        if done.returncode != 0:  # e.g. never enabled: removing the file is what matters
            _say(f"systemctl disable --now: {(done.stderr or done.stdout).strip()}")
        else:
            _say(f"stopped and disabled {UNIT_NAME}")
    elif has_systemctl:
        _say(f"not root: stop it first with: sudo systemctl disable --now {UNIT_NAME}")
    if not unit_path.exists():
        _say(f"{unit_path}: not installed")
        return
    try:
        unit_path.unlink()
    except OSError as exc:
        _fail(f"cannot remove {unit_path}: {exc.strerror or exc}")
    _say(f"removed {unit_path}")
    if has_systemctl and _is_root():
        _systemctl("daemon-reload")
    _say("the hub's user and data directory are kept")


@service_app.command("status")
def status(
    unit_dir: UnitDirOption = DEFAULT_UNIT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Is the service installed and running, with its watchdog armed? Exit 0 when running."""
    state = service_state(unit_dir.absolute())
    if as_json:
        _say(json.dumps({**asdict(state), "running": state.running}, indent=2))
    else:
        _say(f"unit: {state.unit_path} ({'installed' if state.installed else 'not installed'})")
        if not state.systemctl:
            _say("systemctl is not on PATH: cannot tell whether the service runs")
        elif state.error is not None:
            _say(f"systemctl: {state.error}")
        else:
            _say(f"state: {state.active} ({state.sub})")
            armed = f"armed, {state.watchdog}" if state.watchdog_armed else "not armed"
            _say(f"watchdog: {armed}")
            _say(f"hub says: {state.status_text or '-'}")
            _say(f"restarts: {state.restarts if state.restarts is not None else '-'}")
    raise typer.Exit(0 if state.running else 1)
