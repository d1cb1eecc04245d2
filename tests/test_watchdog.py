"""The systemd notify protocol and the health-gated watchdog, against a real AF_UNIX datagram
socket the test binds in systemd's place.

Absence of a datagram is checked with a non-blocking read: sendto on a unix datagram socket
puts the message in the receiver's queue before it returns, so "nothing queued" right after
a check means nothing was sent. Nothing here sleeps; waits are on the socket with timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.service import Heartbeats, Notifier, Watchdog

WATCHDOG_60S = str(60_000_000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Systemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as NOTIFY_SOCKET spells it

    def recv(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram queued now, without waiting."""
        self.sock.setblocking(False)
        got: list[str] = []
        while True:
            try:
                got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return got

    def notifier(self, watchdog_usec: str | None = WATCHDOG_60S) -> Notifier:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = watchdog_usec
        return Notifier.from_environ(env)


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    # A short directory of its own: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="hn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield Systemd(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory)


# --- the protocol ---------------------------------------------------------------------------


def test_ready_status_ping_stopping_arrive_as_sd_notify_fields(systemd: Systemd) -> None:
    notifier = systemd.notifier()
    assert notifier.enabled
    assert notifier.ready("up: 3 sources")
    assert systemd.recv() == "READY=1\nSTATUS=up: 3 sources"
    assert notifier.status("two\nlines")
    assert systemd.recv() == "STATUS=two lines"  # a newline would start a bogus field
    assert notifier.ping()
    assert systemd.recv() == "WATCHDOG=1"
    assert notifier.stopping()
    assert systemd.recv() == "STOPPING=1"
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"hearth-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        sock.settimeout(5)
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": WATCHDOG_60S})
    assert not notifier.enabled
    assert notifier.watchdog_s is None  # a watchdog needs somewhere to send pings
    assert not notifier.ready()
    assert not notifier.ping()
    assert not notifier.stopping()
    clock = FakeClock()
    beats = Heartbeats(clock)
    beats.register("store", 10)
    watchdog = Watchdog(notifier, beats)
    clock.advance(60)
    with caplog.at_level(logging.ERROR):
        assert [s.name for s in watchdog.check()] == ["store"]
    assert watchdog.pings == 0
    assert "store silent 60 s" in caplog.text  # still logged when run by hand
    assert notifier._sock is None  # no socket was ever opened


def test_watchdog_settings_come_from_the_environment(systemd: Systemd) -> None:
    base = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": WATCHDOG_60S}
    assert Notifier.from_environ(base).watchdog_s == 60.0
    assert Watchdog(Notifier.from_environ(base), Heartbeats()).period_s == 30.0
    mine = {**base, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(mine).watchdog_s == 60.0
    other = {**base, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(other).watchdog_s is None  # armed for another process
    assert Notifier.from_environ({**base, "WATCHDOG_USEC": "soon"}).watchdog_s is None
    assert Notifier.from_environ({**base, "WATCHDOG_USEC": "0"}).watchdog_s is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING):
        assert not notifier.ping()
        assert not notifier.ping()
    assert caplog.text.count("could not notify systemd") == 1


# --- the watchdog on a fake clock -----------------------------------------------------------


def test_a_stuck_part_stops_the_pings_and_is_named_then_recovers(
    systemd: Systemd, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    beats = Heartbeats(clock)
    ble = beats.register("ble", max_silence_s=120)
    uploader = beats.register("uploader", max_silence_s=300)
    watchdog = Watchdog(systemd.notifier(), beats)
    assert watchdog.period_s == 30.0

    last_uploader_beat = clock.now
    uploader()
    pinged_at: list[float] = []
    stuck_at: float | None = None
    with caplog.at_level(logging.ERROR, logger="hub.service"):
        for _ in range(20):  # ten minutes of checks; the BLE loop keeps beating
            clock.advance(watchdog.period_s)
            ble()
            stuck = watchdog.check()
            got = systemd.pending()
            if "WATCHDOG=1" in got:
                pinged_at.append(clock.now)
                assert not stuck
            elif stuck_at is None:
                stuck_at = clock.now
                assert [s.name for s in stuck] == ["uploader"]
                assert got == [
                    "STATUS=stuck: uploader silent 330 s (allowed 300 s); watchdog pings stopped"
                ]
            else:
                assert got == []  # no repeated STATUS while it stays stuck
    assert stuck_at is not None
    # Pings stopped at the first check past the allowance, and not one check before.
    assert max(pinged_at) <= last_uploader_beat + 300 < stuck_at
    assert stuck_at - (last_uploader_beat + 300) <= watchdog.period_s
    assert len(pinged_at) == 10
    assert caplog.text.count("hub part stuck") == 1  # a long hang logs one line

    uploader()  # it beats again
    clock.advance(1)
    assert watchdog.check() == []
    assert systemd.pending() == ["STATUS=running", "WATCHDOG=1"]
    clock.advance(watchdog.period_s)
    ble()
    watchdog.check()
    assert systemd.pending() == ["WATCHDOG=1"]
    assert watchdog.healthy


def test_an_idle_part_that_said_how_long_it_waits_is_not_stuck(systemd: Systemd) -> None:
    clock = FakeClock()
    beats = Heartbeats(clock)
    uploader = beats.register("uploader", max_silence_s=300)
    watchdog = Watchdog(systemd.notifier(), beats)
    uploader(within=3600)  # a long backoff is about to start
    clock.advance(3500)
    assert watchdog.check() == []
    assert systemd.pending() == ["WATCHDOG=1"]
    clock.advance(200)
    assert [str(s) for s in watchdog.check()] == ["uploader silent 3700 s (allowed 3600 s)"]
    # `within` never shortens the allowance
    uploader(within=1)
    clock.advance(299)
    assert watchdog.check() == []


def test_several_stuck_parts_are_all_named_longest_silent_first(systemd: Systemd) -> None:
    clock = FakeClock()
    beats = Heartbeats(clock)
    beats.register("store", 60)
    clock.advance(30)
    beats.register("checks", 60)
    watchdog = Watchdog(systemd.notifier(), beats)
    clock.advance(100)
    assert [s.name for s in watchdog.check()] == ["store", "checks"]
    (status,) = systemd.pending()
    assert status.startswith("STATUS=stuck: store silent 130 s (allowed 60 s); checks silent")


def test_registration_rules() -> None:
    clock = FakeClock()
    beats = Heartbeats(clock)
    with pytest.raises(ValueError):
        beats.register("store", 0)
    with pytest.raises(KeyError):
        beats.beat("nobody")  # a typo in a part's name must not pass silently
    ble = beats.register("ble", 10)
    beats.unregister("ble")
    ble()  # a part that ended on purpose may still beat: ignored
    clock.advance(100)
    assert beats.stuck() == [] and beats.names == []


def test_beats_from_another_thread_count() -> None:
    clock = FakeClock()
    beats = Heartbeats(clock)
    store = beats.register("store", 10)
    clock.advance(20)
    assert [s.name for s in beats.stuck()] == ["store"]
    worker = threading.Thread(target=store)  # the group committer beats from its thread
    worker.start()
    worker.join(timeout=10)
    assert beats.stuck() == []


# --- the watchdog in real time, as the hub runs it ------------------------------------------


async def _receive(sock: socket.socket, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    return (await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)).decode()


async def _receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Datagrams up to and including the first that starts with `wanted`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not (seen and seen[-1].startswith(wanted)):
        seen.append(await _receive(sock, max(deadline - time.monotonic(), 0.001)))
    return seen


def test_pings_at_half_the_interval_stop_when_stuck_and_resume(systemd: Systemd) -> None:
    """0.4 s watchdog: pings every 0.2 s; a part allowed 0.5 s of silence goes quiet."""

    async def scenario() -> None:
        sock = systemd.sock
        sock.setblocking(False)
        beats = Heartbeats()
        beat = beats.register("ble", max_silence_s=0.5)
        watchdog = Watchdog(systemd.notifier(watchdog_usec="400000"), beats)
        assert watchdog.period_s == pytest.approx(0.2)
        beating = True

        async def ble_loop() -> None:
            while True:
                if beating:
                    beat()
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(watchdog.run()), asyncio.create_task(ble_loop())]
        try:
            times = []
            for _ in range(6):
                assert await _receive(sock, timeout=5) == "WATCHDOG=1"
                times.append(time.monotonic())
            gaps = sorted(b - a for a, b in itertools.pairwise(times))
            assert gaps[0] >= 0.18  # never faster than half the interval
            assert gaps[len(gaps) // 2] < 0.35  # and about that often (a loaded CI box)

            beating = False
            went_quiet = time.monotonic()
            seen = await _receive_until(sock, "STATUS=stuck", timeout=5)
            noticed = time.monotonic() - went_quiet
            assert seen[-1].startswith("STATUS=stuck: ble silent")
            assert set(seen[:-1]) <= {"WATCHDOG=1"}
            # within the allowance plus one check period (with slack for a busy machine)
            assert noticed < 0.5 + 0.2 + 0.5
            with pytest.raises(TimeoutError):
                await _receive(sock, timeout=0.6)  # no ping while stuck (3 periods)

            beating = True
            seen = await _receive_until(sock, "WATCHDOG=1", timeout=5)
            assert seen == ["STATUS=running", "WATCHDOG=1"]
            assert await _receive(sock, timeout=5) == "WATCHDOG=1"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
