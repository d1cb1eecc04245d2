"""The hub's log lines: their shape on a terminal and on journald, the rate limit that keeps a
storm from filling the disk, and no secrets or personal data in a real run's log."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.clock import SimulatedClock
from hub.config import CouncilSection, HubConfig, HubSection, SensorConfig
from hub.identity import KEY_FILENAME
from hub.logging_setup import (
    CHATTY_LOGGERS,
    LineFormatter,
    RateLimitFilter,
    configure,
    fields,
    stderr_is_journald,
    syslog_priority,
)
from hub.runtime import Hub
from sync.enroll import enroll
from tests.council_server import running_council


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, chatty_level in chatty.items():
        logging.getLogger(name).setLevel(chatty_level)
    logging.captureWarnings(False)


def _record(
    msg: str, *args: object, level: int = logging.INFO, name: str = "hub.x"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args or None, None)


def test_a_terminal_line_has_time_level_logger_message_and_fields() -> None:
    record = _record("driver %s stopped", "ble")
    record.__dict__.update(fields(sensor="hall-motion", room="Front hall", retry_in_s=2.5))
    line = LineFormatter(journald=False).format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} INFO hub\.x: driver ble stopped"
        r' sensor=hall-motion room="Front hall" retry_in_s=2\.5',
        line,
    ), line


def test_a_journald_line_has_the_priority_and_no_time() -> None:
    line = LineFormatter(journald=True).format(_record("disk low", level=logging.WARNING))
    assert line == "<4>WARNING hub.x: disk low"
    assert [syslog_priority(n) for n in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]


def test_one_record_is_one_line_even_with_newlines_and_a_traceback() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord(
            "hub.x", logging.ERROR, __file__, 1, "name %s", ("a\nERROR forged: line",), None
        )
        record.exc_info = sys.exc_info()
    line = LineFormatter(journald=True).format(record)
    assert "\n" not in line
    assert line.startswith("<3>ERROR hub.x: name a\\nERROR forged: line traceback=")
    assert "ValueError: bad\\nthing" in line  # escaped, not a real newline


def test_fields_refuse_names_logging_uses() -> None:
    with pytest.raises(KeyError, match="msg"):
        fields(msg="x")


def test_journald_is_detected_by_the_streams_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journald(a, env)
        assert not stderr_is_journald(b, env)  # inherited variable, different stream
        assert not stderr_is_journald(a, {})
        assert not stderr_is_journald(a, {"JOURNAL_STREAM": "garbage"})
        assert not stderr_is_journald(io.StringIO(), env)  # no file descriptor at all


def _limited(
    clock: FakeClock, burst: int = 10, window_s: float = 60.0
) -> tuple[RateLimitFilter, list[str]]:
    out: list[str] = []
    formatter = LineFormatter(journald=True)

    def sink(record: logging.LogRecord) -> None:
        out.append(formatter.format(record))

    limiter = RateLimitFilter(burst, window_s, clock=clock, sink=sink)
    return limiter, out


def _log(limiter: RateLimitFilter, out: list[str], record: logging.LogRecord) -> None:
    if limiter.filter(record):
        out.append(LineFormatter(journald=True).format(record))


def test_a_storm_of_one_message_passes_burst_then_one_summary_per_window() -> None:
    clock = FakeClock()
    limiter, out = _limited(clock)
    for i in range(100):  # different arguments, same format string: one message key
        _log(limiter, out, _record("bad advert from %s", f"aa:bb:{i:02x}"))
        clock.now += 0.1
    assert len(out) == 10
    clock.now = 1000.0 + 60.0
    _log(limiter, out, _record("bad advert from %s", "cc"))
    assert out[10] == "<6>INFO hub.x: suppressed 90 similar messages in 60 s: 'bad advert from %s'"
    assert out[11] == "<6>INFO hub.x: bad advert from cc"
    assert limiter.suppressed_total == 90


def test_other_messages_and_loggers_have_their_own_allowance() -> None:
    clock = FakeClock()
    limiter, out = _limited(clock, burst=2)
    for _ in range(5):
        _log(limiter, out, _record("a %d", 1))
        _log(limiter, out, _record("b %d", 1))
        _log(limiter, out, _record("a %d", 1, name="sync.uploader"))
    assert len(out) == 6


def test_the_summary_has_the_highest_level_suppressed_and_comes_when_the_storm_ends() -> None:
    clock = FakeClock()
    limiter, out = _limited(clock, burst=1)
    _log(limiter, out, _record("x", level=logging.INFO))
    _log(limiter, out, _record("x", level=logging.ERROR))
    _log(limiter, out, _record("x", level=logging.INFO))
    clock.now += 61
    _log(limiter, out, _record("something else"))  # any record checks ended windows
    assert out == [
        "<6>INFO hub.x: x",
        "<3>ERROR hub.x: suppressed 2 similar messages in 61 s: 'x'",
        "<6>INFO hub.x: something else",
    ]
    limiter.flush()
    assert len(out) == 3  # nothing was suppressed since


def test_flush_writes_pending_summaries() -> None:
    clock = FakeClock()
    limiter, out = _limited(clock, burst=1)
    for _ in range(4):
        _log(limiter, out, _record("y"))
    limiter.flush()
    assert out[-1] == "<6>INFO hub.x: suppressed 3 similar messages in 0 s: 'y'"


def test_an_hour_of_radio_noise_costs_at_most_burst_plus_one_lines_a_minute() -> None:
    clock = FakeClock()
    limiter, out = _limited(clock)
    for i in range(3600 * 50):  # 50 bad adverts a second for an hour
        _log(limiter, out, _record("undecodable advert from %s rssi %d", "aa:bb", -i % 90))
        clock.now += 0.02
    limiter.flush()
    assert len(out) <= 60 * (10 + 1) + 1
    assert (
        sum(int(m.group(1)) for m in map(re.compile(r"suppressed (\d+)").search, out) if m)
        + (sum("suppressed" not in line for line in out))
        == 3600 * 50
    )


def test_the_tracked_keys_are_capped() -> None:
    clock = FakeClock()
    limiter = RateLimitFilter(1, 60.0, clock=clock, max_keys=5)
    for i in range(50):
        assert limiter.filter(_record(f"f-string message {i}"))
    assert len(limiter._windows) == 5


@pytest.mark.usefixtures("restore_logging")
def test_configure_sets_levels_and_replaces_its_own_handler() -> None:
    first = io.StringIO()
    configure(verbose=False, journald=True, stream=first)
    logging.getLogger("hub.t").debug("hidden")
    logging.getLogger("httpx").info("HTTP Request: hidden")
    logging.getLogger("hub.t").info("shown %d", 1)
    assert first.getvalue() == "<6>INFO hub.t: shown 1\n"
    second = io.StringIO()
    configure(verbose=True, journald=False, stream=second)
    logging.getLogger("hub.t").debug("now shown")
    logging.getLogger("httpx").info("HTTP Request: shown")
    assert first.getvalue().count("\n") == 1
    assert " DEBUG hub.t: now shown\n" in second.getvalue()
    assert "HTTP Request: shown" in second.getvalue()


SECRET_NAME = "Mrs Edith Example, 12 Acacia Avenue"
BINDKEY = "8d1f2e3c4b5a69788796a5b4c3d2e1f0"


@pytest.mark.usefixtures("restore_logging")
def test_a_real_run_logs_no_secrets_or_personal_data(council_db_url: str, tmp_path: Path) -> None:
    """Enroll, run a hub with an encrypted BLE sensor (no BlueZ here, so its driver fails
    and is restarted, logging as it goes) and a simulated home that uploads, everything at
    debug level; then look for every secret in all the output."""
    out = io.StringIO()
    configure(verbose=True, journald=False, stream=out)
    data_dir = tmp_path / "data"
    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0, note="privacy test").code
        answer = enroll(council.url, code, data_dir, name=SECRET_NAME)
        sensors = [
            {"id": "lounge-climate", "kind": "climate", "room": "Lounge", "source": "simulated"},
            {"id": "hall-motion", "kind": "motion", "room": "Hall", "source": "simulated"},
            {
                "id": "bedroom-climate",
                "kind": "climate",
                "room": "Bedroom",
                "source": "ble",
                "address": "A4:C1:38:00:11:22",
                "family": "xiaomi",
                "bindkey": BINDKEY,
            },
        ]
        config = HubConfig(
            hub=HubSection(name=SECRET_NAME, id=answer.hub_id, data_dir=data_dir),
            council=CouncilSection(url=council.url, sync_interval_s=1.0, retry_max_s=1.0),
            sensors=tuple(SensorConfig.model_validate(s) for s in sensors),
        )
        clock = SimulatedClock(1_767_225_600.0, speed=1200.0)
        summary = asyncio.run(Hub(config, clock).run(1800.0))
        # The council's own log lines (uvicorn, the app) went through the same handler.
        admin_token = council.admin_token
    key_pem = (data_dir / KEY_FILENAME).read_text()
    log_text = out.getvalue()
    assert "hub running" in log_text and summary.uploaded  # the run did log, and upload
    secrets = {
        "enrollment code": code,
        "code without dashes": code.replace("-", ""),
        "bindkey": BINDKEY,
        "bindkey upper case": BINDKEY.upper(),
        "hub name": SECRET_NAME,
        "street": "Acacia",
        "admin token": admin_token,
    }
    secrets |= {
        f"private key line {i}": line
        for i, line in enumerate(key_pem.splitlines())
        if line and not line.startswith("-----")
    }
    leaked = [what for what, secret in secrets.items() if secret.lower() in log_text.lower()]
    assert leaked == [], f"the log holds: {leaked}"


@pytest.mark.usefixtures("restore_logging")
def test_configure_rate_limits_through_the_installed_handler() -> None:
    out, clock = io.StringIO(), FakeClock()
    configure(verbose=False, journald=True, stream=out, burst=2, window_s=60.0, clock=clock)
    noisy = logging.getLogger("drivers.ble.scanner")
    for i in range(50):
        noisy.warning("undecodable advert from %s", f"sensor-{i}")
    clock.now += 60
    noisy.warning("undecodable advert from %s", "sensor-x")
    assert out.getvalue().splitlines() == [
        "<4>WARNING drivers.ble.scanner: undecodable advert from sensor-0",
        "<4>WARNING drivers.ble.scanner: undecodable advert from sensor-1",
        "<4>WARNING drivers.ble.scanner: suppressed 48 similar messages in 60 s:"
        " 'undecodable advert from %s'",
        "<4>WARNING drivers.ble.scanner: undecodable advert from sensor-x",
    ]
