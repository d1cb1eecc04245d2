"""Telling systemd how the hub is: READY, STATUS, STOPPING, and a watchdog gated on health.

Nobody visits a hub for years, so the only repair for a hub that hangs is a restart, and only
systemd can do that. systemd restarts a `Type=notify` service with `WatchdogSec=` when the
pings stop; this module pings only while every part of the hub shows it is making progress,
so a stuck BLE loop, store or uploader leads to a restart, not to a hub that looks alive and
records nothing.

Parts show progress with `Heartbeats`: each registers with the longest silence it may keep
and calls its beat from its own loop or timer. A part that waits on purpose (an idle
uploader, a quiet radio) beats from its timer anyway, or passes `within=` to say how long the
coming wait may be, so idleness is never mistaken for a hang.

The notify protocol is written by hand: it is one datagram of `KEY=VALUE` lines to the
AF_UNIX socket named in $NOTIFY_SOCKET (see sd_notify(3)), a few lines of code, and the
python-systemd binding is not on PyPI as a wheel (it needs libsystemd headers and a compiler
on the Pi). Without $NOTIFY_SOCKET (the hub run by hand) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Beat", "Heartbeats", "Notifier", "Stuck", "Watchdog"]

log = logging.getLogger(__name__)

# With no systemd watchdog (run by hand, or WatchdogSec unset) health is still checked this
# often, so a stuck part is at least logged.
UNWATCHED_CHECK_S = 30.0


class Notifier:
    """The sending side of sd_notify(3). Never raises: a lost notification must not stop
    the hub; systemd's own timeouts cover a message that did not arrive."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, as sd_watchdog_enabled(3)
        reads them: the watchdog is ours only when WATCHDOG_PID is unset or names us."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = None
        owner = env.get("WATCHDOG_PID")
        if owner and owner.strip() != str(os.getpid() if pid is None else pid):
            usec = None  # meant for another process (e.g. our parent)
        if address is not None and not (address.startswith(("/", "@"))):
            log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
            address = None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_s(self) -> float | None:
        """systemd's watchdog timeout, or None when no watchdog is armed for us."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 1_000_000

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields in one datagram; True when it was handed to the socket."""
        if self.address is None:
            return False
        # '@' names the abstract namespace: a leading NUL byte on the wire.
        target = b"\0" + os.fsencode(self.address[1:]) if self.address[0] == "@" else None
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full receive queue in a busy systemd must not block the hub's loop.
                self._sock.setblocking(False)
            message = "\n".join(fields).encode("utf-8", "replace")
            self._sock.sendto(message, target if target is not None else self.address)
        except OSError as exc:
            # Logged once: a missing socket would otherwise log at every ping.
            if not self._warned:
                self._warned = True
                log.warning("could not notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([] if status is None else [_status(status)]))

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([] if status is None else [_status(status)]))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    # One line: a newline would start a new (bogus) field.
    return "STATUS=" + " ".join(text.split())


@dataclass(frozen=True)
class Stuck:
    """A part that has not beaten within its allowance."""

    name: str
    silent_s: float  # since its last beat
    allowed_s: float  # the silence it had promised not to exceed

    def __str__(self) -> str:
        return f"{self.name} silent {self.silent_s:.0f} s (allowed {self.allowed_s:.0f} s)"


class Heartbeats:
    """Who is alive: each registered part's last beat and the deadline for its next one.

    `beat` is cheap (a lock, a clock read, two dict stores) and thread-safe, so the group
    committer's thread can beat as well as the event loop. Times are monotonic: a wall clock
    set by NTP, or jumping backwards on a Pi without an RTC, must not fake a hang.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._allowance: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._due: dict[str, float] = {}

    def register(self, name: str, max_silence_s: float) -> Beat:
        """Watch `name` from now on: it must beat at least every `max_silence_s` seconds.
        Registering counts as a beat; registering again changes the allowance."""
        if not max_silence_s > 0:
            raise ValueError(f"max_silence_s for {name!r} must be positive")
        now = self.clock()
        with self._lock:
            self._allowance[name] = max_silence_s
            self._last[name] = now
            self._due[name] = now + max_silence_s
        return Beat(self, name)

    def unregister(self, name: str) -> None:
        """Stop watching `name` (a part that ended on purpose, e.g. a replay's driver)."""
        with self._lock:
            self._allowance.pop(name, None)
            self._last.pop(name, None)
            self._due.pop(name, None)

    def beat(self, name: str, within: float | None = None) -> None:
        """`name` made progress. `within`: the next beat may take this long (a longer wait
        about to start, e.g. a backoff); by default the registered allowance."""
        now = self.clock()
        with self._lock:
            allowance = self._allowance.get(name)
            if allowance is None:
                raise KeyError(f"{name!r} is not registered with the watchdog")
            self._last[name] = now
            self._due[name] = now + (allowance if within is None else max(within, allowance))

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._allowance)

    def stuck(self) -> list[Stuck]:
        """The parts past their deadline now, longest silent first."""
        now = self.clock()
        with self._lock:
            late = [
                Stuck(name, now - self._last[name], self._due[name] - self._last[name])
                for name, due in self._due.items()
                if now > due
            ]
        return sorted(late, key=lambda s: (-s.silent_s, s.name))


class Beat:
    """A part's own beat: call it from the part's loop. After `unregister` it does nothing."""

    __slots__ = ("_beats", "name")

    def __init__(self, beats: Heartbeats, name: str) -> None:
        self._beats = beats
        self.name = name

    def __call__(self, within: float | None = None) -> None:
        with contextlib.suppress(KeyError):  # unregistered: the part ended on purpose
            self._beats.beat(self.name, within)


class Watchdog:
    """Pings systemd's watchdog at half its interval while every part is healthy.

    One stuck part stops the pings, and systemd restarts the hub once WatchdogSec passes
    without one; the reason is logged and shown in STATUS= (`systemctl status hearth`). If the
    part recovers first the pings resume and nothing is restarted. Running inside the event
    loop is deliberate: a loop blocked by a synchronous call stops the pings too.
    """

    def __init__(
        self,
        notifier: Notifier,
        heartbeats: Heartbeats,
        *,
        healthy_status: str = "running",
    ) -> None:
        self.notifier = notifier
        self.heartbeats = heartbeats
        self.healthy_status = healthy_status
        self.pings = 0
        self._stuck: tuple[str, ...] = ()

    @property
    def period_s(self) -> float:
        """Half systemd's watchdog timeout, as sd_watchdog_enabled(3) advises."""
        timeout = self.notifier.watchdog_s
        return UNWATCHED_CHECK_S if timeout is None else timeout / 2

    @property
    def healthy(self) -> bool:
        return not self._stuck

    def check(self) -> list[Stuck]:
        """One round: find stuck parts, report a change, ping when there are none."""
        stuck = self.heartbeats.stuck()
        names = tuple(s.name for s in stuck)
        if names != self._stuck:
            self._report(stuck)  # only on a change: a long hang logs one line, not thousands
            self._stuck = names
        if not stuck and self.notifier.watchdog_s is not None and self.notifier.ping():
            self.pings += 1
        return stuck

    def _report(self, stuck: list[Stuck]) -> None:
        if stuck:
            why = "; ".join(str(s) for s in stuck)
            armed = self.notifier.watchdog_s is not None
            action = "watchdog pings stopped, systemd will restart the hub" if armed else ""
            log.error("hub part stuck: %s%s", why, f"; {action}" if action else "")
            self.notifier.status(f"stuck: {why}" + ("; watchdog pings stopped" if armed else ""))
        else:
            log.warning("hub parts healthy again: %s", ", ".join(self._stuck))
            self.notifier.status(self.healthy_status)

    async def run(self) -> None:
        """Check every `period_s` until cancelled (real time, whatever the hub's clock)."""
        while True:
            self.check()
            await asyncio.sleep(self.period_s)
