"""Clocks: the real one (with NTP state), a simulated one for demos, replay and tests, and a
virtual one that only moves when replay moves it (as fast as possible).

Everything in the hub that needs "now" takes a Clock, so accelerated or as-fast-as-possible
time is a matter of handing in a different object, never of patching `time`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from hub.events import Stamp

# adjtimex(2) returns TIME_ERROR when the kernel's clock is not synchronised (no NTP yet).
_TIME_ERROR = 5
_TIMEX_WORDS = 64  # struct timex is under 256 bytes on every Linux ABI; oversize it safely
# A random id the kernel makes at each boot: what says two monotonic readings are comparable.
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Clock(Protocol):
    def stamp(self) -> Stamp: ...

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class BootClock(Protocol):
    """A clock whose `monotonic` is the kernel's for one boot, and which can tell when its
    wall clock is synchronised: what the store needs to correct unsynchronised stamps
    (hub.store.clockfix). Only the real clock is one: simulated and virtual time is
    "synchronised" by definition, so nothing they stamp needs correcting.
    """

    @property
    def boot_id(self) -> str | None: ...

    def synced_origin(self) -> float | None: ...


def read_boot_id(path: Path = _BOOT_ID) -> str | None:
    """This boot's id from the kernel, or None where there is none (not Linux)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def kernel_clock_synchronised() -> bool:
    """Ask the kernel whether an NTP daemon has disciplined the clock.

    Works whichever daemon runs (systemd-timesyncd, chrony, ntpd). Where adjtimex is not
    available we say "not synchronised": claiming a good clock we cannot vouch for is worse.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        buf = (ctypes.c_long * _TIMEX_WORDS)()  # modes=0 (first field) means read-only query
        state = int(libc.adjtimex(ctypes.byref(buf)))
    except (OSError, AttributeError):
        return False
    return state not in (-1, _TIME_ERROR)


class SystemClock:
    """The real clock. NTP state is re-read at most once a minute: it changes rarely."""

    def __init__(self, recheck_s: float = 60.0) -> None:
        self._recheck_s = recheck_s
        self._synced = False
        self._checked_at = float("-inf")
        self._boot_id = read_boot_id()

    @property
    def boot_id(self) -> str | None:
        return self._boot_id

    def synced(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= self._recheck_s:
            self._synced = kernel_clock_synchronised()
            self._checked_at = now
        return self._synced

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def stamp(self) -> Stamp:
        return Stamp(time.time(), self.synced(), time.monotonic())

    def synced_origin(self) -> float | None:
        """The wall time at which this boot's monotonic clock read 0, while NTP vouches for
        the wall clock; None while it does not."""
        if not self.synced():
            return None
        return time.time() - time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """Time that runs `speed` times faster than real time from a chosen start.

    Simulated time is always "synchronised": it is exactly what the scenario says it is.
    """

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._start = start
        self._speed = speed
        self._real_origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def monotonic(self) -> float:
        return (time.monotonic() - self._real_origin) * self._speed

    def wall(self) -> float:
        return self._start + self.monotonic()

    def stamp(self) -> Stamp:
        elapsed = self.monotonic()
        return Stamp(self._start + elapsed, True, elapsed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)


# Yields to the event loop after waking each sleeper. One is enough for the woken task to run
# up to its next await (asyncio runs ready callbacks first in, first out); a few more let a
# short chain it starts (an Event it sets, a task it wakes) run before time moves on.
_SETTLE_YIELDS = 3


class VirtualClock:
    """Time that moves only when told to (`advance_to`): replay as fast as possible.

    Tasks that `sleep` on it wait for a deadline on the virtual timeline. `advance_to(t)`
    wakes them one at a time in deadline order (ties: the order they went to sleep), setting
    "now" to each one's deadline and letting it run before the next is woken, so a task that
    sleeps again within the same advance is woken in its turn too. Nothing waits in real time.
    Like SimulatedClock, virtual time is always "synchronised".
    """

    def __init__(self, start: float) -> None:
        self._start = start
        self._now = start
        self._order = itertools.count()  # tie-break for equal deadlines: first asleep, first up
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._advancing = False

    def wall(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def stamp(self) -> Stamp:
        return Stamp(self._now, True, self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:  # also NaN: a zero sleep only yields, as asyncio.sleep(0) does
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future  # cancelled: the future is cancelled too and skipped when its turn comes

    def next_deadline(self) -> float | None:
        """When the earliest sleeper is due, or None if no task is sleeping on this clock."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance_to(self, t: float) -> None:
        """Move time forward to `t`, waking every sleeper due by then in deadline order.

        Time never goes back: a `t` in the past wakes nobody and leaves the clock where it is.
        """
        if self._advancing:
            raise RuntimeError("VirtualClock.advance_to is already running in another task")
        self._advancing = True
        try:
            while self._sleepers and self._sleepers[0][0] <= t:
                deadline, _, future = heapq.heappop(self._sleepers)
                if future.done():
                    continue
                self._now = max(self._now, deadline)
                future.set_result(None)
                for _ in range(_SETTLE_YIELDS):
                    await asyncio.sleep(0)
            self._now = max(self._now, t)
        finally:
            self._advancing = False

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + seconds)
