"""Real homes: recorded data replayed as it is, with no anomalies injected, to count the false
alarms the hub raises on a real home's ordinary life.

The Open Smart Home Data Set (Fraunhofer IBP, Nürnberg; CC BY-SA 4.0; see LICENSE.md beside
the data) is read in place from ../shared/data/open-smart-home and never copied: per-room
temperature, humidity and brightness of a flat, March to June 2017, bathroom showers included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.config import HubConfig, HubSection, SensorConfig, SensorSource, write_config
from hub.evaluation.labels import Label
from hub.evaluation.reference import reference_labels
from hub.events import Quantity

OPEN_SMART_HOME = Path(__file__).resolve().parents[3] / "shared" / "data" / "open-smart-home"
OPEN_SMART_HOME_CITATION = (
    "Open Smart Home Data Set, Fraunhofer Institute for Building Physics (IBP), 2017-2018,"
    " CC BY-SA 4.0"
)
OPEN_SMART_HOME_TIMEZONE = "Europe/Berlin"  # recorded in Nürnberg


@dataclass(frozen=True)
class RealHome:
    name: str
    data: Path
    fmt: str
    config: Path
    begin: float
    end: float
    timezone: str
    readings: int
    citation: str
    labels: list[Label]  # what DESIGN's rules find in the data (none injected)


def prepare_real_home(
    data: Path,
    workdir: Path,
    *,
    name: str = "open-smart-home",
    fmt: str = "series",
    timezone: str = OPEN_SMART_HOME_TIMEZONE,
    citation: str = OPEN_SMART_HOME_CITATION,
) -> RealHome:
    """A config for replaying `data` (the sensors replay would infer, the home's own time
    zone, default checks), the span the data covers and what DESIGN's rules find in it.
    Nothing is copied."""
    from drivers.replay import ReplaySource
    from drivers.replay.formats import expand_paths, read_file
    from drivers.replay.infer import SensorIds
    from drivers.replay.records import ReplayStats
    from hub.clock import VirtualClock

    tz = ZoneInfo(timezone)
    source = ReplaySource([data], fmt, VirtualClock(0.0), None, timezone)
    sensors = tuple(
        SensorConfig.model_validate({**s.config_fields(), "source": SensorSource.REPLAY.value})
        for s in source.inferred
    )
    series: dict[tuple[str, str, Quantity], list[tuple[float, float]]] = {}
    heard: dict[str, list[float]] = {}
    ids = SensorIds()  # the ids replay gives, in the order it first meets each sensor
    stats = ReplayStats(quiet=True)
    for path in expand_paths([data]):
        for record in read_file(path, fmt, tz, stats):
            heard.setdefault(ids.id_for(record.key), []).append(record.t)
            if record.quantity in (Quantity.TEMPERATURE, Quantity.HUMIDITY):
                key = (record.key.name, record.key.room, record.quantity)
                series.setdefault(key, []).append((record.t, record.value))
    times = sorted(t for ts in heard.values() for t in ts)
    if not times:
        raise ValueError(f"{data}: no readings found to replay")
    for points in series.values():
        points.sort()

    def of(quantity: Quantity) -> list[tuple[str, list[tuple[float, float]]]]:
        return [(room, points) for (_, room, q), points in series.items() if q is quantity]

    silent = [(sensor, sorted(ts)) for sensor, ts in heard.items()]
    labels = reference_labels(name, of(Quantity.TEMPERATURE), of(Quantity.HUMIDITY), silent)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "hub.toml"
    hub = HubSection(name=f"Real data: {name}", timezone=timezone, data_dir=workdir / "data")
    write_config(config, HubConfig(hub=hub, sensors=sensors))
    return RealHome(
        name, data, fmt, config, times[0], times[-1], timezone, len(times), citation, labels
    )
