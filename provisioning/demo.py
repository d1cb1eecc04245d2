"""`make demo`: the whole flow on one machine, with the commands a council admin and an
installer would type, each printed before it runs.

A council service on loopback (SQLite), three hubs enrolled with fresh one-time codes: a
simulated flat living one day at 3600x with its uploader running, the real Open Smart Home
flat replayed from its recordings and synced afterwards, and a scripted installation
(`hearth setup --non-interactive`, as an installer's script would run it). At the end it
shows what arrived at the council and how to look further.

The commands run as separate processes (the real `hearth` entry point), so the demo exercises
exactly what an admin or installer runs; only the orchestration lives here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HEARTH = str(Path(sys.executable).with_name("hearth"))
SIMULATED_START = "2026-01-15T06:00:00+00:00"
OPEN_SMART_HOME = "Open Smart Home Data Set (Fraunhofer IBP, CC BY-SA 4.0)"


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _hearth(*args: str, capture: bool = False, stdout_to: Path | None = None) -> str:
    """Run one `hearth` command as a user would, echoing it; stop the demo if it fails."""
    print("$ hearth " + shlex.join(args), flush=True)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(stdout_to.open("w")) if stdout_to is not None else None
        done = subprocess.run(
            [HEARTH, *args],
            stdout=subprocess.PIPE if capture else out,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"demo stopped: `hearth {shlex.join(args)}` exited {done.returncode}")
    return str(done.stdout or "").strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _council(db_url: str, log_path: Path) -> Iterator[str]:
    """`hearth council serve` in the background until the demo ends."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["council", "serve", "--db", db_url, "--port", str(port)]
    print("$ hearth " + shlex.join(args) + f" &   (log: {log_path})", flush=True)
    with log_path.open("w") as log:
        server = subprocess.Popen([HEARTH, *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(url, server)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"demo stopped: the council service exited {server.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"demo stopped: the council service did not answer within {timeout_s:.0f} s")


def _show_arrivals(url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    fleet = httpx.get(f"{url}/v1/fleet", headers=headers, timeout=30).raise_for_status().json()
    _say("What arrived at the council (GET /v1/fleet)")
    for hub in fleet["hubs"]:
        if hub.get("last_contact") is None:
            print(f"{hub['hub_id']}  {hub.get('name') or '':24}  enrolled, not in contact yet")
            continue
        print(
            f"{hub['hub_id']}  {hub.get('name') or '':24}  events {hub['events_held']:>7}"
            f"  queue left {hub.get('queue_depth')}  software {hub.get('software_version')}"
            f"  clock synced {hub.get('clock_synced')}"
        )
        for sensor in hub.get("silent_sensors", []):
            print(f"    silent sensor: {sensor['sensor_id']} in {sensor['room']}")
        for sensor in hub.get("low_batteries", []):
            where = f"{sensor['sensor_id']} in {sensor['room']}"
            print(f"    low battery: {where} {sensor['battery']}%")
    alerts = httpx.get(
        f"{url}/v1/events",
        params={"kind": "alert", "limit": 10},
        headers=headers,
        timeout=30,
    ).raise_for_status()
    _say("The first alert events the central team can pull (GET /v1/events?kind=alert)")
    for event in alerts.json()["events"]:
        body = event["body"]
        print(
            f"#{event['cursor']} {event['hub_id']} {body['severity']:7} {body['state']:8}"
            f" {body['check']} in {body['room']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo-data"))
    parser.add_argument("--home-data", type=Path, default=Path("../shared/data/open-smart-home"))
    args = parser.parse_args(argv)
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    (out / "council").mkdir(parents=True)
    db_url = f"sqlite:///{(out / 'council' / 'council.db').absolute()}"

    _say("Council admin: a token for the central team, one enrollment code per hub")
    token = _hearth("council", "token", "create", "--role", "admin", "--db", db_url, capture=True)
    token_file = out / "council" / "admin-token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    print(f"(token saved in {token_file})")
    codes = [
        _hearth("council", "code", "create", "--expires", "1h", "--db", db_url, capture=True)
        for _ in range(3)
    ]
    print(f"(codes: {', '.join(codes)})")

    with _council(db_url, out / "council" / "serve.log") as url:
        _say("Installer, flat 1: a simulated flat, enrolled, one day at 3600x, syncing live")
        hub_toml = str(out / "hub.toml")
        _hearth(
            "config", "init", hub_toml, "--name", "Demo flat", "--data-dir",
            str(out / "data"), "--simulated",
        )  # fmt: skip
        _hearth("enroll", "--council", url, "--code", codes[0], "--config", hub_toml)
        _hearth(
            "run", "--config", hub_toml, "--speed", "3600", "--for", "24h",
            "--start", SIMULATED_START,
        )  # fmt: skip
        _hearth("sync", "now", "--config", hub_toml)
        _hearth("status", "--config", hub_toml)

        if args.home_data.is_dir():
            _say(f"Installer, flat 2: replaying a real flat, {OPEN_SMART_HOME}")
            flat_toml = str(out / "flat.toml")
            _hearth(
                "config", "init", flat_toml, "--name", "Open Smart Home flat",
                "--data-dir", str(out / "flat"),
            )  # fmt: skip
            _hearth("enroll", "--council", url, "--code", codes[1], "--config", flat_toml)
            alerts_file = out / "open-smart-home-alerts.jsonl"
            _hearth(
                "replay", str(args.home_data), "--format", "series", "--config", flat_toml,
                "--db", str(out / "flat" / "hearth.db"), stdout_to=alerts_file,
            )  # fmt: skip
            print(f"(alert events as JSON lines: {alerts_file})")
            _hearth("sync", "now", "--config", flat_toml)
        else:
            _say(f"{args.home_data} not found: the replayed flat is skipped")

        _say("Installer, flat 3: a scripted installation, every answer given as a flag")
        setup_toml = str(out / "flat3.toml")
        _hearth(
            "setup", "--non-interactive", "--config", setup_toml, "--name", "Flat 3",
            "--data-dir", str(out / "flat3"), "--council", url, "--code", codes[2],
            "--rooms", "Lounge, Bedroom, Kitchen, Bathroom", "--cold-warning-c", "17",
            "--no-service",
        )  # fmt: skip

        _show_arrivals(url, token)

    _say("Look further")
    env = "HEARTH_COUNCIL_DB=" + shlex.quote(db_url)
    print(f"{env} {HEARTH} council export --format jsonl | head")
    print(f"{env} {HEARTH} council export --kind alert --format csv")
    print(f"{HEARTH} status --config {hub_toml} --json")
    print(f"{HEARTH} council serve --db {shlex.quote(db_url)}   # then, with the token in")
    print(f"  {token_file}: curl -H 'Authorization: Bearer ...' http://127.0.0.1:8080/v1/fleet")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
