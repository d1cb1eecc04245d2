"""Per-sensor series: one `unix_ts<TAB>value` line per reading, one file per room and quantity.

Named `<Room>_<Quantity>.csv`, as in the Open Smart Home Data Set (Fraunhofer IBP, CC BY-SA
4.0; ../shared/data/open-smart-home), e.g. Bathroom_Humidity.csv, Kitchen_Brightness.csv.
The quantity comes from the name (Brightness is illuminance in lux). The climate files of one
room are one sensor, "<room>-climate", as they would be on a real multi-sensor; a binary
series (motion, contact, ...) is a sensor of its own. Outdoor series are not replayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from drivers.replay.records import Record, ReplayStats, SensorKey, numbered_lines
from drivers.replay.values import bad_time, implausible
from hub.events import Quantity

_QUANTITY_WORDS: dict[str, Quantity] = {
    "temperature": Quantity.TEMPERATURE,
    "temp": Quantity.TEMPERATURE,
    "humidity": Quantity.HUMIDITY,
    "relativehumidity": Quantity.HUMIDITY,
    "rh": Quantity.HUMIDITY,
    "brightness": Quantity.ILLUMINANCE,
    "illuminance": Quantity.ILLUMINANCE,
    "light": Quantity.ILLUMINANCE,
    "lux": Quantity.ILLUMINANCE,
    "co2": Quantity.CO2,
    "pm25": Quantity.PM25,
    "pressure": Quantity.PRESSURE,
    "motion": Quantity.MOTION,
    "contact": Quantity.CONTACT,
    "door": Quantity.CONTACT,
    "button": Quantity.BUTTON,
    "occupancy": Quantity.OCCUPANCY,
    "leak": Quantity.LEAK,
}


class SeriesName(NamedTuple):
    room: str
    quantity: Quantity
    outdoor: bool

    @property
    def key(self) -> SensorKey:
        what = self.quantity.value if self.quantity.is_binary else "climate"
        return SensorKey(f"{self.room} {what}", self.room)


def parse_name(path: Path | str) -> SeriesName:
    """Room and quantity from a `<Room>_<Quantity>` file name; ValueError if it says neither."""
    stem = Path(path).stem
    room, _, word = stem.rpartition("_")
    if not room.strip():
        raise ValueError(
            f"the name {Path(path).name!r} does not say what was measured:"
            " expected <Room>_<Quantity>, e.g. Bathroom_Humidity.csv"
        )
    token = word.lower().replace("-", "").replace(".", "")
    outdoor = token.startswith("outdoor")
    quantity = _QUANTITY_WORDS.get(token.removeprefix("outdoor"))
    if quantity is None:
        raise ValueError(
            f"{word!r} in {Path(path).name!r} is not a quantity the hub knows"
            " (e.g. Temperature, Humidity, Brightness, CO2, Motion)"
        )
    return SeriesName(room.strip(), quantity, outdoor)


def parse_line(text: str, quantity: Quantity) -> tuple[float, float]:
    """(unix time, value) from one line; ValueError says what is wrong with it."""
    fields = text.split()
    if len(fields) != 2:
        raise ValueError(f"expected 2 fields (unix_ts<TAB>value), got {len(fields)}")
    try:
        t, value = float(fields[0]), float(fields[1])
    except ValueError:
        raise ValueError("time and value must both be numbers") from None
    problem = bad_time(t) or implausible(quantity, value)
    if problem is not None:
        raise ValueError(problem)
    return t, value


def read_series(path: str, stats: ReplayStats) -> Iterator[Record]:
    """The readings of one series file, in file order; bad lines go to `stats`."""
    try:
        name = parse_name(path)
    except ValueError as exc:
        stats.bad_file(path, str(exc))
        return
    if name.outdoor:
        stats.note(
            f"{path}: outdoor {name.quantity}, not replayed: the hub has no outdoor quantity"
            " and its indoor checks (cold home) would take it for a room"
        )
        return
    key, quantity = name.key, name.quantity
    for number, text in numbered_lines(path, stats):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            t, value = parse_line(text, quantity)
        except ValueError as exc:
            stats.bad_line(path, number, str(exc), text)
            continue
        yield Record(t, key, quantity, value, True, path, number)
