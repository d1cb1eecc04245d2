"""Device health: when each sensor was last heard, how long it usually stays quiet, and
whether it has gone silent. Shared by the engine, so that activity checks can ask whether a
quiet motion sensor is a quiet person or a dead sensor (`is_silent`, `silent_sensors`).

"Usually quiet" is learned per sensor: the longest gap between its reports on each day, and
the second longest of those over the last week (the longest while fewer than four days are
known), so one odd day does not set the bar but an ordinary bad day does. A thermometer
that reports every 15 minutes has a daily longest gap of 15-30 minutes; a motion sensor that
only speaks when someone moves has one of a night's length. Silent means not heard for
`missed_intervals` times that, and never less than a floor. Real sensors drop reports: in
the Open Smart Home data a climate sensor that reports every 10 minutes is quiet for over an
hour about once a day, so "three times its interval" alone would cry wolf daily.

Until two days are learned, only sensors that report periodically by nature (climate, air
quality, thermometers) are judged, on a generous default; wired GPIO sensors are never
judged: a pin has no heartbeat to miss.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.checks.timeline import DAY_S, Timeline
from hub.config import SensorConfig, SensorKind, SensorSource
from hub.events import Quantity, Reading

PERIODIC_KINDS = frozenset({SensorKind.CLIMATE, SensorKind.AIR_QUALITY, SensorKind.THERMOMETER})
BURST_S = 1.0  # readings closer than this are one report (a climate advert: three quantities)
LEARN_DAYS = 2  # days with reports before a sensor's own quiet gap is trusted
KEEP_DAYS = 7  # daily longest gaps kept for the median
FLOOR_S = 1800.0  # never silent after less than this
UNLEARNED_S = 6 * 3600.0  # periodic sensors before their gap is learned (and never heard)


@dataclass(slots=True)
class SensorHealth:
    sensor_id: str
    judged_unlearned: bool  # periodic by nature: judged on UNLEARNED_S before learning
    never_judged: bool  # wired: nothing to miss
    last_t: float | None = None  # timeline s
    last_wall: float | None = None
    day_end: float = 0.0  # end of the current learning day (timeline s)
    day_max: float = 0.0  # longest gap seen in the current learning day
    maxima: list[float] = field(default_factory=list)  # longest gap of each recent day
    silent_after: float | None = None  # cached threshold (s); None: not judged
    silent: bool = False
    battery: float | None = None
    reports: int = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "last_t": self.last_t,
            "last_wall": self.last_wall,
            "day_end": self.day_end,
            "day_max": self.day_max,
            "maxima": list(self.maxima),
            "silent": self.silent,
            "battery": self.battery,
            "reports": self.reports,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.last_t = None if state["last_t"] is None else float(state["last_t"])
        self.last_wall = None if state["last_wall"] is None else float(state["last_wall"])
        self.day_end = float(state["day_end"])
        self.day_max = float(state["day_max"])
        self.maxima = [float(x) for x in state["maxima"]][-KEEP_DAYS:]
        self.silent = bool(state["silent"])
        self.battery = None if state["battery"] is None else float(state["battery"])
        self.reports = int(state["reports"])


class DeviceHealth:
    def __init__(
        self,
        sensors: Sequence[SensorConfig],
        timeline: Timeline,
        *,
        missed_intervals: int,
        floor_s: float = FLOOR_S,
        unlearned_s: float = UNLEARNED_S,
    ) -> None:
        self.timeline = timeline
        self.missed_intervals = missed_intervals
        self.floor_s = floor_s
        self.unlearned_s = unlearned_s
        self._records: dict[str, SensorHealth] = {}
        for sensor in sensors:
            record = SensorHealth(
                sensor.id,
                judged_unlearned=sensor.kind in PERIODIC_KINDS,
                never_judged=sensor.source is SensorSource.GPIO,
            )
            record.silent_after = self._threshold(record)
            self._records[sensor.id] = record

    # -- the hot path ------------------------------------------------------------------

    def record(self, sensor_id: str) -> SensorHealth | None:
        return self._records.get(sensor_id)

    def heard(self, rec: SensorHealth, t: float, reading: Reading) -> None:
        """A reading from a configured sensor arrived at timeline time `t`."""
        last = rec.last_t
        if last is None:
            rec.day_end = t + DAY_S
        else:
            gap = t - last
            if gap < 0.0:
                return  # a late reading says nothing about silence
            if gap >= BURST_S:
                rec.reports += 1
                # A gap across a restart or a silence is not the sensor's usual rhythm.
                if not rec.silent and last >= self.timeline.resumed_at:
                    if t >= rec.day_end:
                        self._roll(rec, t)
                    if gap > rec.day_max:
                        rec.day_max = gap
        rec.last_t = t
        rec.last_wall = reading.stamp.wall_time
        rec.silent = False
        if reading.quantity is Quantity.BATTERY:
            rec.battery = reading.value

    def _roll(self, rec: SensorHealth, t: float) -> None:
        if rec.day_max > 0.0:
            rec.maxima.append(rec.day_max)
            del rec.maxima[:-KEEP_DAYS]
        rec.day_max = 0.0
        behind = t - rec.day_end
        rec.day_end += DAY_S * (1.0 + behind // DAY_S)
        rec.silent_after = self._threshold(rec)

    # -- judging -----------------------------------------------------------------------

    def _threshold(self, rec: SensorHealth) -> float | None:
        if rec.never_judged:
            return None
        usual = _usual_gap(rec.maxima)
        if usual is not None:
            return max(self.floor_s, self.missed_intervals * usual)
        return self.unlearned_s if rec.judged_unlearned else None

    def tick(self, t: float) -> None:
        """Re-judge every sensor at timeline time `t` (once per engine tick)."""
        resumed = self.timeline.resumed_at
        for rec in self._records.values():
            if rec.last_t is not None and t >= rec.day_end and not rec.silent:
                self._roll(rec, t)
            after = rec.silent_after
            if after is None:
                rec.silent = False
            elif not rec.silent:  # once silent, silent until heard (even across a restart)
                ref = resumed if rec.last_t is None else max(rec.last_t, resumed)
                rec.silent = t - ref > after

    def quiet_since(self, rec: SensorHealth) -> float:
        """Timeline time silence is counted from: its last report, or the hub's (re)start."""
        resumed = self.timeline.resumed_at
        return resumed if rec.last_t is None else max(rec.last_t, resumed)

    # -- queries for checks --------------------------------------------------------------

    def is_silent(self, sensor_id: str) -> bool:
        rec = self._records.get(sensor_id)
        return rec is not None and rec.silent

    def silent_sensors(self) -> frozenset[str]:
        return frozenset(rec.sensor_id for rec in self._records.values() if rec.silent)

    def silent_after_s(self, sensor_id: str) -> float | None:
        """How long this sensor may be quiet before it counts as silent (None: never)."""
        rec = self._records.get(sensor_id)
        return None if rec is None else rec.silent_after

    def usual_gap_s(self, sensor_id: str) -> float | None:
        """The learned longest quiet gap on a usual day, or None until learned."""
        rec = self._records.get(sensor_id)
        return None if rec is None else _usual_gap(rec.maxima)

    def last_heard(self, sensor_id: str) -> float | None:
        """Timeline time of the sensor's last reading, or None if never heard."""
        rec = self._records.get(sensor_id)
        return None if rec is None else rec.last_t

    def records(self) -> Iterator[SensorHealth]:
        return iter(self._records.values())

    # -- persistence -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {sid: rec.to_state() for sid, rec in self._records.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for sensor_id, saved in state.items():
            rec = self._records.get(sensor_id)
            if rec is not None:  # a sensor removed from the config is forgotten
                rec.restore(saved)
                rec.silent_after = self._threshold(rec)


def _usual_gap(maxima: list[float]) -> float | None:
    """The usual longest daily gap: the second longest of the recent days' (the longest
    while fewer than four days are known); None before LEARN_DAYS days."""
    if len(maxima) < LEARN_DAYS:
        return None
    ordered = sorted(maxima)
    return ordered[-2] if len(ordered) >= 4 else ordered[-1]
