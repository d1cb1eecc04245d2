"""The `hearth` command as an installer or the service manager runs it: the real entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HEARTH = [sys.executable, "-m", "provisioning"]


def hearth(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    done = hearth(
        "config",
        "init",
        str(path),
        "--name",
        "Test flat",
        "--data-dir",
        str(tmp_path / "data"),
        "--simulated",
    )
    assert done.returncode == 0, done.stderr
    return path


def test_help_and_version() -> None:
    assert "run" in hearth("--help").stdout
    version = hearth("--version")
    assert version.returncode == 0 and version.stdout.startswith("hearth ")


def test_run_on_a_simulated_clock_then_status(demo_config: Path) -> None:
    done = hearth(
        "run",
        "-c",
        str(demo_config),
        "--speed",
        "3600",
        "--for",
        "2h",
        "--start",
        "2026-01-15T06:00:00+00:00",
    )
    assert done.returncode == 0, done.stderr
    assert "hub stopped:" in done.stderr and "Traceback" not in done.stderr
    status = json.loads(hearth("status", "-c", str(demo_config), "--json").stdout)
    assert status["queue_depth"]["routine"] > 50
    assert status["queue_depth"]["system"] == 1  # hub_started
    assert status["last_sync_at"] is None and status["open_alerts"] == []
    assert status["total_events"] == status["last_seq"]
    human = hearth("status", "-c", str(demo_config))
    assert human.returncode == 0 and "Oldest unsynced" in human.stdout


def test_sigterm_stops_the_service_cleanly_with_everything_committed(demo_config: Path) -> None:
    proc = subprocess.Popen(
        [*HEARTH, "run", "-c", str(demo_config), "--speed", "600"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until it is running, then ask it to stop
        if "hub running" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    readings = int(rest.split("hub stopped: ")[1].split(" readings")[0])
    status = json.loads(hearth("status", "-c", str(demo_config), "--json").stdout)
    assert status["total_events"] == readings + 1  # every reading taken, plus hub_started


def test_status_without_a_buffer_says_so(demo_config: Path) -> None:
    done = hearth("status", "-c", str(demo_config))
    assert done.returncode == 2 and "has the hub run yet" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--for", "soon"], "'soon' is not a duration"),
        (["run", "--start", "2026-01-01T00:00:00"], "--start needs --speed"),
    ],
)
def test_bad_options_get_a_clear_message(demo_config: Path, args: list[str], message: str) -> None:
    done = hearth(*args, "-c", str(demo_config))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_config_stops_run_with_the_problem_named(tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text('[hub]\nname = "x"\n\n[store]\nretention_days = "thirty"\n')
    done = hearth("run", "-c", str(bad))
    assert done.returncode == 2
    assert f"{bad}: store.retention_days:" in done.stderr and "Traceback" not in done.stderr


def test_config_check_through_the_real_entry_point(tmp_path: Path, demo_config: Path) -> None:
    assert hearth("config", "check", str(demo_config)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[hub]\nname = "x"\n\n[[sensors]]\nid = "door"\nkind = "contact"\nroom = "Hall"\n'
        'source = "gpio"\npin = 41\n'
    )
    done = hearth("config", "check", str(bad))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"{bad}: sensors[0].pin: 41 is not a GPIO pin on a Raspberry Pi (0-27)"
    )


def test_the_installed_console_script_works() -> None:
    script = Path(sys.executable).with_name("hearth")  # what `pip install` put on the PATH
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == 0


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-smart-home"


def test_replay_of_a_casas_log_into_a_kept_buffer(tmp_path: Path) -> None:
    casas = Path(__file__).parent / "fixtures" / "casas_sample.txt"
    db = tmp_path / "replay.db"
    done = hearth("replay", str(casas), "--format", "casas", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "inferred" in done.stderr and "replayed" in done.stderr
    status = json.loads(hearth("status", "--db", str(db), "--json").stdout)
    replayed = int(done.stderr.split("replayed ")[-1].split(" readings")[0])
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(
        {"check", "severity", "state", "room", "sensor", "time", "evidence"} <= a.keys()
        for a in alerts
    )
    assert replayed > 0 and status["total_events"] == replayed + len(alerts) + 1  # + started


# Not ci_required: the shared data sits beside the checkout, outside the repository, and a
# clone without it must still pass; the replay and checks suites skip the same way.
def test_replay_of_the_open_smart_home_bathroom(tmp_path: Path) -> None:
    """Real data: Open Smart Home Data Set (Fraunhofer IBP, CC BY-SA 4.0), read in place."""
    source = SHARED_DATA / "Bathroom_Humidity.csv"
    if not source.exists():
        pytest.skip(f"{source} is not here (the shared data folder)")
    lines = sum(1 for line in source.read_text().splitlines() if line.strip())
    done = hearth("replay", str(source), "--format", "series")
    assert done.returncode == 0, done.stderr
    assert f"replayed {lines} readings" in done.stderr


def test_replay_refuses_a_bad_speed_and_an_existing_buffer(tmp_path: Path) -> None:
    casas = Path(__file__).parent / "fixtures" / "casas_sample.txt"
    assert "use 'max' or a positive number" in hearth("replay", str(casas), "--speed", "-3").stderr
    (tmp_path / "x.db").write_text("")
    done = hearth("replay", str(casas), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2 and "exists" in done.stderr
