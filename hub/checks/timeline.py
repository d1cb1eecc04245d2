"""Time for the checks: one continuous line for durations, local wall time for "night".

A Pi has no real-time clock. Its wall clock can be hours wrong until NTP syncs and then jump;
its monotonic clock never jumps but restarts at each boot. The checks therefore measure every
duration on a `Timeline`: seconds that advance with the stamps' monotonic part, so a wall
clock jump neither creates nor hides a condition. Only across a restart, where the monotonic
part cannot be compared, does the timeline bridge the gap with the wall clock, and only when
the clock was synchronised on both sides of it; otherwise the downtime is simply not counted.

Decisions about the time of day ("between 22:00 and 07:00") use the stamp's wall time in the
hub's time zone (`LocalClock`), so DST is honoured and a corrected clock is believed at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from hub.config import parse_clock_time
from hub.events import Stamp

DAY_S = 86400.0


class Timeline:
    """Maps stamps to seconds on one continuous line that follows the monotonic clock.

    The first stamp ever puts the line at that stamp's wall time (so saved state is readable);
    after that it moves only by monotonic differences. A stamp older than the latest one (a
    late reading) is placed in the past and does not move the line back.
    """

    __slots__ = ("_last", "_mono", "_ready", "_saved", "late", "resumed_at", "t")

    def __init__(self) -> None:
        self.t = 0.0  # the line's position at the latest stamp
        self.resumed_at = float("-inf")  # where the line (re)started: first stamp or a restore
        self.late = 0  # stamps older than the latest one
        self._mono = 0.0
        self._last: Stamp | None = None
        self._ready = False
        self._saved: Mapping[str, Any] | None = None

    @property
    def started(self) -> bool:
        return self._ready

    @property
    def last_stamp(self) -> Stamp | None:
        return self._last

    def at(self, stamp: Stamp) -> float:
        """The line's time for `stamp`; the hot path of every reading."""
        if not self._ready:
            return self._begin(stamp)
        d = stamp.monotonic - self._mono
        if d >= 0.0:
            self.t += d
            self._mono = stamp.monotonic
            self._last = stamp
            return self.t
        self.late += 1
        return self.t + d

    def _begin(self, stamp: Stamp) -> float:
        saved = self._saved
        if saved is None:
            t = stamp.wall_time
        else:
            # Across a restart the monotonic clocks are not comparable; the wall clock bridges
            # the gap only if both ends were synchronised, and never backwards.
            gap = 0.0
            if saved["synced"] and stamp.clock_synced:
                gap = max(0.0, stamp.wall_time - float(saved["wall"]))
            t = float(saved["t"]) + gap
        self.t = t
        self.resumed_at = t
        self._mono = stamp.monotonic
        self._last = stamp
        self._ready = True
        self._saved = None
        return t

    def state(self) -> dict[str, Any] | None:
        last = self._last
        if last is None:
            return dict(self._saved) if self._saved is not None else None
        return {"t": self.t, "wall": last.wall_time, "synced": last.clock_synced}

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Continue a saved line: the next stamp is placed after the saved one."""
        if state is None:
            return
        self._saved = {
            "t": float(state["t"]),
            "wall": float(state["wall"]),
            "synced": bool(state["synced"]),
        }
        self._ready = False


class LocalClock:
    """Wall time in the hub's zone. The UTC offset is cached per minute (every zone changes
    offset on a whole minute), so asking for the local time of each reading is cheap."""

    __slots__ = ("_minute", "_offset", "zone")

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._minute = float("nan")
        self._offset = 0.0

    def offset(self, wall: float) -> float:
        minute = wall // 60.0
        if minute != self._minute:
            utcoffset = dt.datetime.fromtimestamp(wall, self.zone).utcoffset()
            self._offset = utcoffset.total_seconds() if utcoffset is not None else 0.0
            self._minute = minute
        return self._offset

    def seconds_of_day(self, wall: float) -> float:
        return (wall + self.offset(wall)) % DAY_S

    def day(self, wall: float) -> int:
        """The local calendar day as a number (days since 1970-01-01 local)."""
        return int((wall + self.offset(wall)) // DAY_S)

    def hour(self, wall: float) -> int:
        return int(self.seconds_of_day(wall) // 3600.0)

    def datetime(self, wall: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(wall, self.zone)

    def isoformat(self, wall: float) -> str:
        return self.datetime(wall).isoformat(timespec="seconds")


class DailyWindow:
    """A window of local time of day, e.g. 22:00-07:00 (it may wrap past midnight)."""

    __slots__ = ("end", "end_s", "start", "start_s", "wraps")

    def __init__(self, start: str, end: str) -> None:
        self.start, self.end = start, end
        self.start_s = _seconds(parse_clock_time(start))
        self.end_s = _seconds(parse_clock_time(end))
        self.wraps = self.start_s > self.end_s

    def contains(self, seconds_of_day: float) -> bool:
        if self.wraps:
            return seconds_of_day >= self.start_s or seconds_of_day < self.end_s
        return self.start_s <= seconds_of_day < self.end_s

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _seconds(time: dt.time) -> float:
    return float(time.hour * 3600 + time.minute * 60)
