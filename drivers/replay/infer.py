"""Guessing a sensor list from recorded data, for a replay with no sensors in its config.

One sensor per (sensor, location) key seen in the data: its id made to fit the config's id
pattern, its kind from the quantities it reported, its room role from common room names. The
guesses are shown to the operator (`describe`), because a wrong role silently changes what
the checks do (a bedroom that is really a hallway).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from drivers.replay.records import SensorKey
from hub.config import RoomRole, SensorKind
from hub.events import Quantity

MAX_ID_LENGTH = 40  # hub.config's sensor id pattern: [a-z0-9][a-z0-9_-]{0,39}
_NOT_ID = re.compile(r"[^a-z0-9_-]+")
_DASHES = re.compile(r"-{2,}")
# Words of a name: "LivingRoom" -> Living, Room; "M003" -> M, 003; "front-door" -> front, door.
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def slug(text: str) -> str:
    """A config-valid sensor id made from `text` ("M003 Bed" -> "m003-bed")."""
    made = _DASHES.sub("-", _NOT_ID.sub("-", _ascii(text).lower())).strip("-_")
    return made[:MAX_ID_LENGTH].rstrip("-_") or "sensor"


class SensorIds:
    """Hands out one id per key, the same every time, never the same id for two keys."""

    def __init__(self) -> None:
        self._ids: dict[SensorKey, str] = {}
        self._taken: set[str] = set()

    def id_for(self, key: SensorKey) -> str:
        found = self._ids.get(key)
        if found is not None:
            return found
        base = slug(key.name)
        made, n = base, 2
        while made in self._taken:  # "M003 Bed" and "m003 bed" are two sensors
            suffix = f"-{n}"
            made = base[: MAX_ID_LENGTH - len(suffix)].rstrip("-_") + suffix
            n += 1
        self._ids[key] = made
        self._taken.add(made)
        return made


def name_words(text: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(_ascii(text))]


def _is_door(word: str) -> bool:
    return word.rstrip("s").endswith("door") and word not in ("outdoor", "outdoors", "indoor")


# In order: the first rule any word matches wins, so "BathroomDoor" is a bathroom and
# "FrontDoor" an exit door.
_ROLE_RULES: tuple[tuple[RoomRole, Callable[[str], bool]], ...] = (
    (RoomRole.BATHROOM, lambda w: w.startswith("bath") or w in ("shower", "ensuite")),
    (RoomRole.TOILET, lambda w: "toilet" in w or w in ("wc", "loo", "lavatory")),
    (RoomRole.BEDROOM, lambda w: w.startswith("bed")),
    (RoomRole.KITCHEN, lambda w: "kitchen" in w),
    (RoomRole.LIVING_ROOM, lambda w: w.startswith(("living", "lounge"))),
    (RoomRole.EXIT_DOOR, lambda w: _is_door(w) or w.startswith(("entr", "exit"))),
    (RoomRole.HALLWAY, lambda w: w.startswith("hall") or w in ("corridor", "landing")),
)


def role_from_name(text: str) -> tuple[RoomRole, str] | None:
    """The room role a name suggests, with the word that suggested it."""
    words = name_words(text)
    for role, matches in _ROLE_RULES:
        for word in words:
            if matches(word):
                return role, word
    return None


_BINARY_KINDS = (
    (Quantity.MOTION, SensorKind.MOTION),
    (Quantity.CONTACT, SensorKind.CONTACT),
    (Quantity.BUTTON, SensorKind.BUTTON),
    (Quantity.OCCUPANCY, SensorKind.PRESSURE_MAT),
    (Quantity.LEAK, SensorKind.LEAK),
)


def kind_for(quantities: Iterable[Quantity]) -> SensorKind:
    """The sensor kind that reports these quantities (health quantities do not count)."""
    seen = set(quantities)
    for quantity, kind in _BINARY_KINDS:
        if quantity in seen:
            return kind
    if seen & {Quantity.CO2, Quantity.PM25}:
        return SensorKind.AIR_QUALITY
    if Quantity.HUMIDITY in seen:
        return SensorKind.CLIMATE
    if Quantity.TEMPERATURE in seen:
        return SensorKind.THERMOMETER
    return SensorKind.CLIMATE


@dataclass
class Tally:
    """What a scan saw of one key."""

    quantities: dict[Quantity, int] = field(default_factory=dict)  # in order first seen
    first_seen: str = ""  # "file:line"

    def add(self, quantity: Quantity, where: str) -> None:
        if not self.first_seen:
            self.first_seen = where
        self.quantities[quantity] = self.quantities.get(quantity, 0) + 1


@dataclass(frozen=True)
class InferredSensor:
    """A guessed sensor: the fields of hub.config.SensorConfig (less `source`) and evidence."""

    id: str
    kind: SensorKind
    room: str
    role: RoomRole
    quantities: tuple[Quantity, ...]
    readings: int
    origin: str  # the recorded name and where it was first seen
    role_from: str | None  # the word the role was guessed from; None: no room name matched

    def config_fields(self) -> dict[str, str]:
        """id, kind, room and role, ready for SensorConfig(**fields, source=...)."""
        return {"id": self.id, "kind": self.kind.value, "room": self.room, "role": self.role.value}


def infer_sensors(tallies: Mapping[SensorKey, Tally], ids: SensorIds) -> list[InferredSensor]:
    sensors = []
    for key, tally in tallies.items():
        found = role_from_name(key.room) or role_from_name(key.name)
        role, word = found if found else (RoomRole.OTHER, None)
        sensors.append(
            InferredSensor(
                id=ids.id_for(key),
                kind=kind_for(tally.quantities),
                room=key.room,
                role=role,
                quantities=tuple(tally.quantities),
                readings=sum(tally.quantities.values()),
                origin=f"{key.name!r} first seen at {tally.first_seen}",
                role_from=word,
            )
        )
    return sorted(sensors, key=lambda sensor: sensor.id)


def describe(sensors: Iterable[InferredSensor], notes: Iterable[str] = ()) -> list[str]:
    """What was inferred, one line per sensor, for the operator to check."""
    listed = list(sensors)
    lines = [f"No sensors in the config: inferred {len(listed)} from the recorded data."]
    for sensor in listed:
        why = f"from the word {sensor.role_from!r}" if sensor.role_from else "no room name matched"
        quantities = ", ".join(q.value for q in sensor.quantities)
        lines.append(
            f"  {sensor.id}: {sensor.kind.value} in room {sensor.room!r},"
            f" role {sensor.role.value} ({why}); {sensor.readings} reading(s) of {quantities};"
            f" {sensor.origin}"
        )
    lines.extend(f"  note: {note}" for note in notes)
    return lines
