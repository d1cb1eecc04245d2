"""`hearth council ...`: secrets alone on stdout and usable, exports complete and resumable,
bad input a clear line and exit code 2."""

from __future__ import annotations

import csv
import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hub.events import StoredEvent
from hub.identity import HubIdentity
from provisioning.council_cmd import council_app
from sync.council.store import CouncilStore
from sync.protocol import ENROLL_PATH, FLEET_PATH
from tests.council_server import running_council
from tests.factories import T0, alert, reading, system

CODE_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'council.db'}"


@pytest.fixture
def store(db: str) -> Iterator[CouncilStore]:
    """The same database the commands use, opened beside them to check what they did."""
    opened = CouncilStore.open(db)
    yield opened
    opened.close()


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(council_app, list(args), env=env, catch_exceptions=False)


def test_code_create_prints_one_usable_code(db: str, tmp_path: Path) -> None:
    done = cli("code", "create", "--db", db, "--expires", "30m", "--note", "flat 9")
    assert done.exit_code == 0, done.stderr
    assert CODE_RE.fullmatch(done.stdout.strip()), done.stdout
    assert done.stdout.count("\n") == 1
    assert "valid until" in done.stderr
    with running_council(db) as council:
        answer = httpx.post(
            council.url + ENROLL_PATH,
            json={
                "code": done.stdout.strip(),
                "public_key": HubIdentity.generate(tmp_path).public_key_b64(),
            },
        )
        assert answer.status_code == 201, answer.text
        (info,) = council.store.list_codes()
        assert info.note == "flat 9" and info.state == "used"
        assert time.time() + 1700 < info.expires_at < time.time() + 1900


def test_code_list_and_revoke(db: str) -> None:
    assert cli("code", "create", "--db", db).exit_code == 0
    listed = cli("code", "list", "--db", db)
    assert listed.exit_code == 0 and "unused" in listed.stdout
    assert cli("code", "revoke", "1", "--db", db).exit_code == 0
    assert "revoked" in cli("code", "list", "--db", db).stdout
    missing = cli("code", "revoke", "99", "--db", db)
    assert missing.exit_code == 2 and "code #99" in missing.stderr


@pytest.mark.parametrize("expires", ["soon", "10s", "31d", "-5m"])
def test_bad_code_expiry_is_exit_2(db: str, expires: str) -> None:
    done = cli("code", "create", "--db", db, "--expires", expires)
    assert done.exit_code == 2
    assert "--expires" in done.stderr and done.stdout == ""


def test_token_create_prints_one_usable_token(db: str, store: CouncilStore) -> None:
    done = cli("token", "create", "--role", "reader", "--name", "analyst", "--db", db)
    assert done.exit_code == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("hrt_") and done.stdout.count("\n") == 1
    with running_council(db) as council:
        reader = council.client(token)
        assert reader.get(FLEET_PATH).status_code == 200
        assert reader.get("/v1/tokens").status_code == 403
    listed = cli("token", "list", "--db", db)
    assert "analyst" in listed.stdout and token not in listed.stdout
    token_id = next(t.id for t in store.list_tokens() if t.name == "analyst")
    assert cli("token", "revoke", str(token_id), "--db", db).exit_code == 0
    assert store.authenticate(token) is None
    assert cli("token", "revoke", "999", "--db", db).exit_code == 2


def test_bad_role_and_bad_db_are_exit_2(db: str) -> None:
    assert cli("token", "create", "--role", "root", "--db", db).exit_code == 2
    done = cli("code", "list", "--db", "mysql://nope/x")
    assert done.exit_code == 2 and "--db" in done.stderr


def test_db_defaults_to_the_environment(db: str, store: CouncilStore) -> None:
    done = cli("token", "create", "--role", "admin", env={"HEARTH_COUNCIL_DB": db})
    assert done.exit_code == 0, done.stderr
    assert store.authenticate(done.stdout.strip()) is not None


def test_hub_config_set(db: str, store: CouncilStore, tmp_path: Path) -> None:
    hub = store.enroll_hub(store.create_code(600.0).code, b"k" * 32, "h", None)
    toml = tmp_path / "managed.toml"
    toml.write_text("[sync]\ninterval_s = 120\n\n[checks.cold_home]\nwarning_c = 19.0\n")
    done = cli("hub", "config", "set", hub.hub_id, str(toml), "--db", db)
    assert done.exit_code == 0, done.stderr
    updated = store.get_hub(hub.hub_id)
    assert updated is not None and updated.config_version == 2
    assert updated.config == {
        "sync": {"interval_s": 120},
        "checks": {"cold_home": {"warning_c": 19.0}},
    }
    toml.write_text("interval_s = 5\n")
    assert cli("hub", "config", "set", hub.hub_id, str(toml), "--db", db).exit_code == 2
    toml.write_text("[sync\n")
    assert cli("hub", "config", "set", hub.hub_id, str(toml), "--db", db).exit_code == 2
    assert cli("hub", "config", "set", "hub-nobody", str(toml), "--db", db).exit_code == 2


# -- export ----------------------------------------------------------------------------------


def filled(store: CouncilStore) -> tuple[str, str]:
    a = store.enroll_hub(store.create_code(600.0).code, b"a" * 32, "a", None).hub_id
    b = store.enroll_hub(store.create_code(600.0).code, b"b" * 32, "b", None).hub_id
    store.ingest(a, [StoredEvent(s, reading(float(s))).to_record() for s in range(1, 4)])
    store.ingest(
        b, [StoredEvent(1, alert(10.0)).to_record(), StoredEvent(2, system(11.0)).to_record()]
    )
    return a, b


def cursor_hint(stderr: str) -> str:
    match = re.search(r"--since (\d+)", stderr)
    assert match, stderr
    return match.group(1)


def test_export_jsonl_and_resume_with_the_cursor(db: str, store: CouncilStore) -> None:
    a, b = filled(store)
    done = cli("export", "--db", db, "--format", "jsonl")
    assert done.exit_code == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["hub_id"], r["seq"]) for r in rows] == [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)]
    assert rows[0]["body"] == StoredEvent(1, reading(1.0)).to_record()
    assert rows[3]["kind"] == "alert" and rows[4]["kind"] == "system"
    assert "exported 5 events" in done.stderr
    cursor = cursor_hint(done.stderr)
    assert cursor == str(rows[-1]["cursor"])

    again = cli("export", "--db", db, "--format", "jsonl", "--since", cursor)
    assert again.stdout == "" and cursor_hint(again.stderr) == cursor  # nothing new: same cursor
    store.ingest(a, [StoredEvent(4, reading(4.0)).to_record()])
    more = cli("export", "--db", db, "--format", "jsonl", "--since", cursor)
    assert [(r["hub_id"], r["seq"]) for r in map(json.loads, more.stdout.splitlines())] == [(a, 4)]


def test_export_csv_to_a_file_with_filters(db: str, store: CouncilStore, tmp_path: Path) -> None:
    a, b = filled(store)
    out = tmp_path / "out.csv"
    done = cli("export", "--db", db, "--format", "csv", "--hub", a, "--output", str(out))
    assert done.exit_code == 0, done.stderr
    assert done.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["seq"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["hub_id"] == a and rows[0]["kind"] == "reading"
    assert rows[0]["clock_synced"] == "true" and rows[0]["value"] == "20.0"
    assert json.loads(rows[0]["body"]) == StoredEvent(1, reading(1.0)).to_record()
    assert rows[0]["wall_time"] == repr(T0 + 1.0)

    kinds = cli("export", "--db", db, "--format", "csv", "--kind", "alert")
    (alert_row,) = list(csv.DictReader(io.StringIO(kinds.stdout)))
    assert alert_row["hub_id"] == b and alert_row["quantity"] == "" and alert_row["value"] == ""


def test_export_since_a_date(db: str, store: CouncilStore) -> None:
    filled(store)
    since = "2025-11-28T08:00:10Z"  # T0 + 10 s: the alert and the system event
    done = cli("export", "--db", db, "--format", "jsonl", "--since", since)
    assert done.exit_code == 0, done.stderr
    assert [json.loads(line)["kind"] for line in done.stdout.splitlines()] == ["alert", "system"]


@pytest.mark.parametrize("since", ["yesterday", "-3", "2025-13-01", "12abc"])
def test_export_bad_since_is_exit_2(db: str, since: str) -> None:
    done = cli("export", "--db", db, "--format", "jsonl", "--since", since)
    assert done.exit_code == 2
    assert "--since" in done.stderr and "cursor" in done.stderr
    assert done.stdout == ""


def test_export_needs_a_known_format(db: str) -> None:
    assert cli("export", "--db", db, "--format", "xml").exit_code == 2
    assert cli("export", "--db", db).exit_code == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_the_service_until_interrupted(
    db: str, store: CouncilStore, workers: int
) -> None:
    """The real command in its own process: it migrates, listens on loopback, answers, and
    stops cleanly on SIGINT (Ctrl-C); with --workers, several processes share the socket."""
    token = store.create_token("reader", "r").token
    command = [
        sys.executable,
        "-c",
        "from provisioning.council_cmd import council_app; council_app()",
        "serve",
        "--db",
        db,
        "--port",
        "0",
        "--workers",
        str(workers),
    ]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        lines: queue.Queue[str] = queue.Queue()
        assert process.stderr is not None
        stderr = process.stderr

        def pump() -> None:
            for line in stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            # Single process: uvicorn starts the app, then says where it listens. Workers:
            # the parent binds and says so first, and the socket listens once a worker is up.
            url, started = "", False
            while not (url and started):
                line = lines.get(timeout=30)
                match = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
                url = match.group(1) if match else url
                started = started or "Application startup complete" in line
            for _ in range(4):  # on new connections: with workers, more than one answers
                answer = httpx.get(url + FLEET_PATH, headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200, answer.text
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioning import council_cmd

    for stream, shown in ((io.StringIO(), False), (_Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        with council_cmd._progress() as advance:
            advance(2000)
        assert ("exporting" in stream.getvalue()) is shown


def test_hub_config_with_toml_dates_is_a_clear_exit_2(
    db: str, store: CouncilStore, tmp_path: Path
) -> None:
    """TOML has dates, JSON has not: a line saying so, not a traceback."""
    hub = store.enroll_hub(store.create_code(600.0).code, b"h" * 32, "h", None).hub_id
    config = tmp_path / "hub.toml"
    config.write_text("[schedule]\nholiday = 2025-12-24\n", encoding="utf-8")
    done = runner.invoke(council_app, ["hub", "config", "set", hub, str(config), "--db", db])
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert "cannot be a hub config" in done.stderr and "Traceback" not in done.output
    assert store.get_hub(hub).config_version == 1  # type: ignore[union-attr]
    config.write_text('[schedule]\nholiday = "2025-12-24"\n', encoding="utf-8")
    assert cli("hub", "config", "set", hub, str(config), "--db", db).exit_code == 0
    assert store.get_hub(hub).config == {"schedule": {"holiday": "2025-12-24"}}  # type: ignore[union-attr]


def test_export_resume_hint_keeps_the_filters_and_the_scanned_cursor(
    db: str, store: CouncilStore
) -> None:
    """With filters, the cursor to resume from is past the rows scanned (not only the last
    one exported), and the printed command keeps --hub and --kind."""
    a, _ = filled(store)  # ids 1-3: hub a readings; 4, 5: hub b alert and system
    done = cli("export", "--db", db, "--format", "csv", "--hub", a, "--kind", "reading")
    assert done.exit_code == 0, done.stderr
    assert f"hearth council export --format csv --since 5 --hub {a} --kind reading" in done.stderr
    since_date = cli("export", "--db", db, "--format", "jsonl", "--since", "2025-11-28")
    assert "--since 5" in since_date.stderr
    assert "replaces --since 2025-11-28" in since_date.stderr
    again = cli("export", "--db", db, "--format", "csv", "--since", "5", "--hub", a)
    assert again.stdout.count("\n") == 1  # the header only: nothing rescanned
