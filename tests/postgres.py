"""A real, throwaway PostgreSQL 15 server for the tests: initdb + pg_ctl into a temp dir.

Why not a mock: the council's guarantees (ON CONFLICT idempotency, ingest-order cursor under
concurrency, migrations) are database behaviour, and only the real server shows it.

Use: `from tests.postgres import postgres_url` in a test module (or list "tests.postgres" in
conftest's pytest_plugins so one server serves the whole session); mark the tests
`@pytest.mark.ci_required` so a missing server fails CI instead of skipping quietly.

- Root (CI) cannot run initdb: the server then runs as the `postgres` system user via
  runuser, and its temp dir is owned by that user.
- It listens on 127.0.0.1 only, on a free port, with a random password (scram), and its
  socket in the temp dir, so it never collides with a system PostgreSQL.
- Clean-up is done by a watchdog process in its own session that holds a pipe from the test
  process: when the pipe closes (normal teardown, or pytest killed with -9) the watchdog stops
  the server (`pg_ctl stop -m immediate`) and deletes the temp dir.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("HEARTH_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "hearth"

_WATCHDOG = r"""
import os, shutil, subprocess, sys
pg_ctl, data, root, *runas = sys.argv[1:]
try:
    sys.stdin.buffer.read()  # returns at EOF: the test process closed the pipe or died
finally:
    subprocess.run([*runas, pg_ctl, "stop", "-D", data, "-m", "immediate", "-w", "-t", "30"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(root, ignore_errors=True)
"""


@dataclass(frozen=True, slots=True)
class PostgresServer:
    url: str  # SQLAlchemy URL of the `hearth` database
    port: int
    password: str
    root: Path


def unavailable_reason() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "createdb"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL 15 binaries not found: no {PG_BIN / tool} (set HEARTH_PG_BIN)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing: cannot run initdb as postgres"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user for initdb"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")


def start_postgres() -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    """Start a server; the returned watchdog owns the clean-up (close its stdin to stop)."""
    runas: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    if os.geteuid() == 0:
        pg_user = pwd.getpwnam("postgres")
        os.chown(root, pg_user.pw_uid, pg_user.pw_gid)
        runas = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(PG_BIN / "pg_ctl"), str(data), str(root), *runas],
        stdin=subprocess.PIPE,
        start_new_session=True,  # survives a kill of pytest's process group
    )
    try:
        password = secrets.token_urlsafe(18)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if runas:
            os.chown(pwfile, pg_user.pw_uid, pg_user.pw_gid)
        pwfile.chmod(0o600)
        _run(
            [
                *runas,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        port = _start_server(runas, root, data)
        env = {**os.environ, "PGPASSWORD": password}
        _run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                DATABASE,
            ],
            env=env,
        )
    except BaseException:
        _stop(watchdog)
        raise
    url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/{DATABASE}"
    return PostgresServer(url, port, password, root), watchdog


def _start_server(runas: list[str], root: Path, data: Path) -> int:
    """Start on a free port; retry if another process takes the port between pick and bind."""
    log = root / "server.log"
    last = ""
    for _ in range(5):
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        cmd = [*runas, str(PG_BIN / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60"]
        done = subprocess.run(
            [*cmd, "-l", str(log), "-o", options], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return port
        last = done.stderr + (log.read_text(errors="replace") if log.exists() else "")
    raise RuntimeError(f"PostgreSQL did not start:\n{last}")


def _stop(watchdog: subprocess.Popen[bytes]) -> None:
    assert watchdog.stdin is not None
    watchdog.stdin.close()
    watchdog.wait(timeout=60)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server, watchdog = start_postgres()
    try:
        yield server
    finally:
        _stop(watchdog)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh `hearth` database on the session's server."""
    return postgres_server.url
