"""CASAS-style activity logs: `date time sensor [location] value [label]`, in local time.

For example `2010-11-04 00:03:50.209589 M003 Bed ON Sleep_begin`. ON/OFF is motion and
OPEN/CLOSE a door contact (1/0); a number is a temperature (or illuminance for a light sensor
such as LS001) if it is plausible. Extra whitespace, a missing location or label and the
fraction of a second are all tolerated. Times are local, so clock changes need care: in the
hour that repeats when clocks go back, a time is taken as its second occurrence once the log
has moved past the first; a time that never happened (clocks went forward) is taken as the
moment they changed. Neither is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from drivers.replay.records import Record, ReplayStats, SensorKey, numbered_lines
from drivers.replay.values import implausible
from hub.events import Quantity

_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_STATES: dict[str, tuple[Quantity, float]] = {
    "ON": (Quantity.MOTION, 1.0),
    "OFF": (Quantity.MOTION, 0.0),
    "OPEN": (Quantity.CONTACT, 1.0),
    "CLOSE": (Quantity.CONTACT, 0.0),
    "CLOSED": (Quantity.CONTACT, 0.0),
}
_MAX_LOCATION_WORDS = 3  # "Living Room" is two; more and the "value" is surely a label word


@dataclass(frozen=True, slots=True)
class CasasLine:
    local: datetime  # naive: local wall-clock time as written
    sensor: str
    location: str | None
    quantity: Quantity
    value: float
    label: str | None

    @property
    def key(self) -> SensorKey:
        if self.location is None:
            return SensorKey(self.sensor, "unknown")
        return SensorKey(f"{self.sensor} {self.location}", self.location)


def _value(sensor: str, token: str) -> tuple[Quantity, float] | None:
    """The reading a value token stands for, or None if the token is not a value."""
    state = _STATES.get(token.upper())
    if state is not None:
        return state
    if not _NUMBER.fullmatch(token):
        return None
    lowered = sensor.lower()
    if lowered.startswith("ls") or "light" in lowered or "lux" in lowered:
        return Quantity.ILLUMINANCE, float(token)
    return Quantity.TEMPERATURE, float(token)


def _local_time(date: str, time: str) -> datetime:
    day, clock = _DATE.fullmatch(date), _TIME.fullmatch(time)
    if day is None or clock is None:
        raise ValueError("does not start with a date and time (YYYY-MM-DD HH:MM:SS[.ffffff])")
    micro = int(((clock[4] or "") + "000000")[:6])
    try:
        return datetime(
            int(day[1]),
            int(day[2]),
            int(day[3]),
            int(clock[1]),
            int(clock[2]),
            int(clock[3]),
            micro,
        )
    except ValueError as exc:
        raise ValueError(f"not a real date and time ({exc})") from None


def parse_line(text: str) -> CasasLine:
    """One log line; ValueError says what is wrong with it."""
    tokens = text.split()
    if tokens and "T" in tokens[0] and len(tokens[0]) > 10:  # 2010-11-04T00:03:50 as one token
        tokens[0:1] = tokens[0].split("T", 1)
    if len(tokens) < 4:
        raise ValueError("too few fields: expected date, time, sensor and value")
    local = _local_time(tokens[0], tokens[1])
    sensor = tokens[2]
    last = min(len(tokens), 4 + _MAX_LOCATION_WORDS)
    for index in range(3, last):
        reading = _value(sensor, tokens[index])
        if reading is not None:
            break
    else:
        raise ValueError("no value after the sensor (expected ON, OFF, OPEN, CLOSE or a number)")
    quantity, value = reading
    problem = implausible(quantity, value)
    if problem is not None:
        raise ValueError(problem)
    return CasasLine(
        local=local,
        sensor=sensor,
        location=" ".join(tokens[3:index]) or None,
        quantity=quantity,
        value=value,
        label=" ".join(tokens[index + 1 :]) or None,
    )


def _clocks_changed(before: float, after: float, tz: ZoneInfo) -> float:
    """The instant (whole second) in (before, after] at which the UTC offset changed."""
    offset = datetime.fromtimestamp(after, tz).utcoffset()
    low, high = math.floor(before), math.ceil(after)
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return float(high)


def to_unix(local: datetime, tz: ZoneInfo, previous: float) -> tuple[float, str | None]:
    """Unix time of a naive local time; also "repeated" or "skipped" for clock-change hours.

    `previous` is the time of the line before it in the same file, which settles which
    occurrence of a repeated time is meant: the first, unless that would go back in time.
    """
    first = local.replace(tzinfo=tz, fold=0).timestamp()
    second = local.replace(tzinfo=tz, fold=1).timestamp()
    if first == second:
        return first, None
    if first < second:
        return (first if first >= previous else second), "repeated"
    # Skipped: fold=0 reads it with the old offset (later), fold=1 with the new (earlier).
    return _clocks_changed(second, first, tz), "skipped"


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_casas(path: str, tz: ZoneInfo, stats: ReplayStats) -> Iterator[Record]:
    """The readings of one log, in file order; bad lines are told to `stats` and skipped."""
    previous = -math.inf
    for number, text in numbered_lines(path, stats):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            line = parse_line(stripped)
        except ValueError as exc:
            stats.bad_line(path, number, str(exc), text)
            continue
        t, clock_change = to_unix(line.local, tz, previous)
        if clock_change == "repeated":
            stats.dst_ambiguous += 1
            if stats.dst_ambiguous == 1:
                stats.note(
                    f"{path}:{number}: {line.local} happened twice in {tz.key} (clocks went"
                    f" back); read as {_utc(t)}, keeping the log in order"
                )
        elif clock_change == "skipped":
            stats.dst_nonexistent += 1
            if stats.dst_nonexistent == 1:
                stats.note(
                    f"{path}:{number}: {line.local} never happened in {tz.key} (clocks went"
                    f" forward); read as the moment they changed, {_utc(t)}"
                )
        previous = t
        yield Record(t, line.key, line.quantity, line.value, True, path, number)
