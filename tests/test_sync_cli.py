"""`hearth enroll` and `hearth sync now` end to end: a config written by the starter, the
real council service on loopback, the real buffer. The commands are registered here as the
lead registers them in provisioning/cli.py (`enroll` at the top, `now` under `sync`)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hub.config import load_config, starter_config, write_config
from hub.identity import KEY_FILENAME
from hub.store import Store
from provisioning import sync_cmd
from tests.council_server import running_council
from tests.factories import alert, reading

app = typer.Typer()
app.command("enroll")(sync_cmd.enroll)
app.add_typer(sync_cmd.sync_app, name="sync")
runner = CliRunner()


def hearth(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    write_config(path, starter_config("Flat 3", tmp_path / "data", simulated=True))
    return path


def test_enroll_needs_a_config_first(tmp_path: Path) -> None:
    code, _, err = hearth(
        "enroll", "--council", "https://c.test", "--code", "X", "-c", str(tmp_path / "none.toml")
    )
    assert code == 2 and "hearth config init" in err


def test_enroll_refuses_a_bad_address_before_making_a_key(config_path: Path) -> None:
    code, _, err = hearth(
        "enroll", "--council", "council.test", "--code", "X", "-c", str(config_path)
    )
    assert code == 2 and "--council" in err and "https://" in err
    assert not (load_config(config_path).hub.data_dir / KEY_FILENAME).exists()


def test_enroll_then_sync_now_against_the_real_council(
    config_path: Path, council_db_url: str
) -> None:
    with running_council(council_db_url) as council:
        council.store.set_default_hub_config({"report": {"heartbeat_min": 20.0}})
        enrollment = council.store.create_code(3600.0).code
        code, out, err = hearth(
            "enroll", "--council", council.url, "--code", enrollment, "-c", str(config_path)
        )
        assert code == 0, err
        cfg = load_config(config_path)
        assert cfg.hub.id is not None and out.startswith(f"enrolled as {cfg.hub.id}")
        assert cfg.council.url == council.url and cfg.council.config_version == 1
        assert cfg.report.heartbeat_min == 20.0  # the council's section, applied
        assert cfg.hub.name == "Flat 3" and len(cfg.sensors) > 0  # the installer's parts kept
        key = cfg.hub.data_dir / KEY_FILENAME
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert "warning" not in err  # plain http on loopback is allowed, without a warning

        # Enrolling again is refused; nothing is asked of the council.
        again = council.store.create_code(3600.0).code
        code, _, err = hearth(
            "enroll", "--council", council.url, "--code", again, "-c", str(config_path)
        )
        assert code == 2 and f"already enrolled as {cfg.hub.id}" in err

        code, out, _ = hearth("sync", "now", "-c", str(config_path))
        assert code == 0 and "nothing to send" in out  # the hub has not run yet

        store = Store.open(cfg.store_path)
        store.commit([reading(float(i), value=20.0 + i / 100) for i in range(1200)])
        store.commit([alert(5000.0, check="leak")])
        store.close()
        code, out, err = hearth("sync", "now", "-c", str(config_path))
        assert code == 0, err
        assert "sent 1201 events in 3 batches" in out and "outbox empty" in out
        assert council.store.count_events(cfg.hub.id) == 1201

        code, out, _ = hearth("sync", "now", "-c", str(config_path), "--json")
        assert code == 0
        report = json.loads(out)
        assert report["report"]["ok"] is True and report["report"]["events"] == 0
        assert report["status"]["council_config_version"] is None  # no upload was needed
        url = council.url

    # The council is gone: the command says so and exits 1; nothing is lost.
    store = Store.open(cfg.store_path)
    store.commit([reading(9000.0)])
    store.close()
    code, out, _ = hearth("sync", "now", "-c", str(config_path))
    assert code == 1
    assert "stopped: no connection to the council" in out and "1 event still waiting" in out
    assert url  # (the address the hub still has)
    # ... and `hearth status` shows the failure until a sync succeeds again.
    from provisioning.cli import app as hearth_app

    status = runner.invoke(hearth_app, ["status", "-c", str(config_path), "--json"])
    assert status.exit_code == 0, status.stderr
    out = status.stdout
    problem = json.loads(out)["sync_problem"]
    assert problem is not None and "no connection to the council" in problem["message"]


def test_council_settings_the_hub_refuses_leave_it_enrolled_with_its_own(
    config_path: Path, council_db_url: str
) -> None:
    with running_council(council_db_url) as council:
        council.store.set_default_hub_config({"report": {"heartbeat_min": -5}, "hub": {"id": "x"}})
        enrollment = council.store.create_code(3600.0).code
        code, _, err = hearth(
            "enroll", "--council", council.url, "--code", enrollment, "-c", str(config_path)
        )
    assert code == 0, err
    assert "the council's settings were not applied" in err and "[hub]" in err
    cfg = load_config(config_path)
    assert cfg.hub.id is not None and cfg.council.config_version == 0
    assert cfg.report.heartbeat_min == 15.0


def test_sync_now_needs_an_enrolled_hub(config_path: Path) -> None:
    code, _, err = hearth("sync", "now", "-c", str(config_path))
    assert code == 2 and "not enrolled" in err and "hearth enroll" in err


def test_enroll_without_the_council_keeps_the_code_usable(config_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = hearth(
        "enroll",
        "--council",
        f"http://127.0.0.1:{port}",
        "--code",
        "ABCD-EFGH-JKMN",
        "-c",
        str(config_path),
    )
    assert code == 2 and "no connection to the council" in err and "try again" in err
    assert load_config(config_path).hub.id is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://council.example.org", "not encrypted"),
        ("http://10.0.0.5:8000", "127.0.0.1, ::1 or localhost"),
        ("https://council.example.org/?x=1", "query or fragment"),
        ("https://council.example.org/#top", "query or fragment"),
    ],
)
def test_enroll_refuses_plain_http_off_loopback_and_queries(
    config_path: Path, url: str, words: str
) -> None:
    code, _, err = hearth(
        "enroll", "--council", url, "--code", "ABCD-EFGH-JKMN", "-c", str(config_path)
    )
    assert code == 2 and words in err
    assert not (load_config(config_path).hub.data_dir / KEY_FILENAME).exists()


def test_sync_now_output_wording() -> None:
    from sync.uploader import DrainReport, UploaderStatus

    caught_up = DrainReport(True, 10, 1, 2048, 1, 0.25, remaining=3)
    lines = sync_cmd.describe(caught_up, UploaderStatus(clock_offset_s=-120.0))
    assert lines[0] == "sent 10 events in 1 batch, 2.0 KiB in 1 request, 0.2 s"
    assert lines[1].startswith("caught up; 3 events committed since then")
    assert lines[2] == "note: this hub's clock is 120 s ahead of the council's"
    failed = DrainReport(False, 0, 0, 0, 1, 0.0, remaining=7, error="the council refused (422)")
    assert sync_cmd.describe(failed, UploaderStatus())[1:] == [
        "stopped: the council refused (422)",
        "7 events still waiting; the hub service keeps trying on its own",
    ]


def test_the_real_entry_point_runs_both_commands(config_path: Path, council_db_url: str) -> None:
    """As the installer types them: `hearth enroll` and `hearth sync now` from provisioning.cli."""
    import subprocess
    import sys

    def real(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "provisioning", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0).code
        done = real("enroll", "--council", council.url, "--code", code, "-c", str(config_path))
        assert done.returncode == 0, done.stderr
        cfg = load_config(config_path)
        store = Store.open(cfg.store_path)
        store.commit([reading(float(i)) for i in range(10)])
        store.close()
        done = real("sync", "now", "-c", str(config_path))
        assert done.returncode == 0, done.stderr
        assert "sent 10 events in 1 batch" in done.stdout and "Traceback" not in done.stderr
        assert cfg.hub.id is not None and council.store.count_events(cfg.hub.id) == 10
