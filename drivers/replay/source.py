"""Replay as a driver: recorded files played back as live readings on the hub's clock.

Several files become one time-ordered stream (a heap over one reader per file, so memory stays
constant however big the files). Pacing follows `speed`: None is as fast as possible on a
VirtualClock that the replay advances to each reading's time, so every other task sleeping on
that clock (checks, timers) wakes in its turn; a number is that many times real time, waiting
on the hub's clock (a SimulatedClock running at that speed, or the SystemClock).
Readings carry the recorded time as their stamp.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.base import Emit
from drivers.replay.formats import AUTO, check_format, expand_paths, read_file
from drivers.replay.infer import InferredSensor, SensorIds, Tally, describe, infer_sensors
from drivers.replay.records import ReplayStats, SensorKey
from hub.clock import Clock, SimulatedClock, VirtualClock
from hub.events import Reading, Stamp

log = logging.getLogger("drivers.replay")

_by_time = itemgetter(0)  # Record.t


def first_timestamp(
    paths: Sequence[Path | str], fmt: str = AUTO, timezone: str = "Europe/London"
) -> float | None:
    """When a replay of these files starts (the earliest first reading), to start its clock
    at; None if no file has a valid reading."""
    tz, stats = ZoneInfo(timezone), ReplayStats(quiet=True)
    firsts = []
    for path in expand_paths(paths):
        reader = read_file(path, check_format(fmt), tz, stats)
        first = next(reader, None)
        reader.close()
        if first is not None:
            firsts.append(first.t)
    return min(firsts, default=None)


def replay_clock(
    paths: Sequence[Path | str],
    fmt: str = AUTO,
    speed: float | None = None,
    timezone: str = "Europe/London",
) -> VirtualClock | SimulatedClock:
    """The clock for the hub to run a replay on, starting at the data's first reading: a
    VirtualClock for as fast as possible (speed None), else a SimulatedClock at `speed`."""
    start = first_timestamp(paths, fmt, timezone)
    if start is None:
        start = time.time()
    return VirtualClock(start) if speed is None else SimulatedClock(start, speed)


class ReplaySource:
    """A ReadingSource that plays recorded files; `finished` is set when the data runs out."""

    name = "replay"

    def __init__(
        self,
        paths: Sequence[Path | str],
        fmt: str,
        clock: Clock,
        speed: float | None,
        timezone: str = "Europe/London",
    ) -> None:
        check_format(fmt)
        if speed is None and not isinstance(clock, VirtualClock):
            raise ValueError("as fast as possible (speed None) needs a VirtualClock to advance")
        if speed is not None:
            if not (math.isfinite(speed) and speed > 0):
                raise ValueError(f"speed must be a positive number, got {speed}")
            if isinstance(clock, VirtualClock):
                raise ValueError(
                    "a VirtualClock only moves when replay advances it: use speed None with it,"
                    " or a SimulatedClock for N times real time"
                )
        self.paths = expand_paths(paths)
        self.fmt = fmt
        self.clock = clock
        self.speed = speed
        self.tz = ZoneInfo(timezone)
        self.stats = ReplayStats()
        self.finished = asyncio.Event()
        self._ids = SensorIds()
        self._inferred: list[InferredSensor] | None = None
        self._inference_notes: list[str] = []

    @property
    def inferred(self) -> list[InferredSensor]:
        """One sensor per (sensor, location) in the data. The first use reads every file once
        (streaming); call it from a thread if the files are large and the loop is running."""
        if self._inferred is None:
            self._inferred = self._infer()
        return self._inferred

    def describe_inferred(self) -> list[str]:
        """What was inferred, as lines to show the operator."""
        return describe(self.inferred, self._inference_notes)

    def _infer(self) -> list[InferredSensor]:
        stats = ReplayStats(quiet=True)
        tallies: dict[SensorKey, Tally] = {}
        for path in self.paths:
            for record in read_file(path, self.fmt, self.tz, stats):
                tally = tallies.get(record.key)
                if tally is None:
                    tally = tallies[record.key] = Tally()
                tally.add(record.quantity, f"{record.path}:{record.line}")
        notes = list(stats.notes)
        if stats.bad_lines or stats.bad_files:
            notes.append(
                f"{stats.bad_lines} bad line(s) and {stats.bad_files} bad file(s) will be skipped"
            )
        self._inference_notes = notes
        return infer_sensors(tallies, self._ids)

    def _pace_ratio(self) -> float:
        """Clock seconds to wait per recorded second: 1/speed of real time on any clock."""
        assert self.speed is not None
        clock_speed = float(getattr(self.clock, "speed", 1.0))  # SimulatedClock runs faster
        return clock_speed / self.speed

    async def run(self, emit: Emit) -> None:
        """Emit every reading in time order, paced by the clock; return when the data ends."""
        clock, stats = self.clock, self.stats
        virtual = clock if isinstance(clock, VirtualClock) else None
        ratio = 0.0 if virtual is not None else self._pace_ratio()
        readers = [read_file(path, self.fmt, self.tz, stats) for path in self.paths]
        started = False
        origin_t = origin_mono = 0.0
        latest = -math.inf
        log.info(
            "replay: %d file(s), speed %s", len(self.paths), self.speed or "as fast as possible"
        )
        try:
            for record in heapq.merge(*readers, key=_by_time):
                t = record.t
                if virtual is not None:
                    await virtual.advance_to(t)
                if not started:  # recorded seconds map onto the clock from here
                    started = True
                    origin_t, origin_mono = t, clock.monotonic()
                waited = False
                if virtual is None:
                    delay = origin_mono + (t - origin_t) * ratio - clock.monotonic()
                    if delay > 0:
                        await clock.sleep(delay)
                        waited = True
                if t < latest:
                    stats.out_of_order += 1
                latest = max(latest, t)
                stamp = Stamp(t, record.synced, origin_mono + (t - origin_t))
                emit(Reading(self._ids.id_for(record.key), record.quantity, record.value, stamp))
                stats.readings_emitted += 1
                if not waited:
                    await asyncio.sleep(0)  # let the rest of the hub run between readings
        finally:
            for reader in readers:
                reader.close()
        for line in stats.summary():
            log.info("replay: %s", line)
        self.finished.set()
