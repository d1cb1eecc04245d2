"""Clocks: the real one (with NTP state) and a simulated one for demos, replay and tests.

Everything in the hub that needs "now" takes a Clock, so accelerated or as-fast-as-possible
time is a matter of handing in a different object, never of patching `time`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from typing import Protocol

from hub.events import Stamp

# adjtimex(2) returns TIME_ERROR when the kernel's clock is not synchronised (no NTP yet).
_TIME_ERROR = 5
_TIMEX_WORDS = 64  # struct timex is under 256 bytes on every Linux ABI; oversize it safely


class Clock(Protocol):
    def stamp(self) -> Stamp: ...

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


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
