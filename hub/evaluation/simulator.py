"""A simulated home, start to finish: a resident's routine with labelled anomalies, turned into
the hub's own export (jsonl), a hub config and a labels file.

Deterministic for a seed: every part draws from its own generator, seeded from (seed, home,
purpose), so a home is the same on every machine and changing one part (say, the climate)
does not reshuffle another (the routine).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.config import write_config
from hub.evaluation.anomalies import Kind, injection, schedule
from hub.evaluation.climate import Climate, Events, House, simulate_climate
from hub.evaluation.labels import Label, write_labels
from hub.evaluation.routine import Planner, Profile, Stay
from hub.evaluation.sensors import (
    Sample,
    SensorSpec,
    battery_readings,
    climate_readings,
    home_sensors,
    hub_config,
    movement,
    silence,
    write_jsonl,
)

DEFAULT_START = dt.date(2025, 1, 6)  # a winter Monday; 90 days from it cross the spring DST change
DEFAULT_TIMEZONE = "Europe/London"
ALL_KINDS = tuple(Kind)


@dataclass(frozen=True)
class HomeSpec:
    seed: int
    index: int
    days: int
    warmup_days: int = 14
    start: dt.date = DEFAULT_START
    timezone: str = DEFAULT_TIMEZONE
    kinds: tuple[Kind, ...] = ALL_KINDS

    @property
    def name(self) -> str:
        return f"sim-{self.index + 1:02d}"

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"hearth-eval:{self.seed}:{self.index}:{purpose}")


@dataclass
class SimulatedHome:
    spec: HomeSpec
    sensors: list[SensorSpec]
    begin: float
    end: float
    samples: list[Sample]
    labels: list[Label]
    timeline: list[Stay]
    climate: Climate
    schedule: list[tuple[Kind, int]] = field(default_factory=list)


def simulate_home(spec: HomeSpec) -> SimulatedHome:
    tz = ZoneInfo(spec.timezone)
    profile = Profile.draw(spec.rng("profile"))
    house = House.draw(spec.rng("house"))
    sensors = home_sensors(with_co2=spec.rng("layout").random() < 0.5)
    planner = Planner(profile, spec.rng("routine"), tz, spec.start, spec.days)
    planned = schedule(spec.rng("schedule"), spec.days, spec.warmup_days, spec.kinds)
    injections = [
        injection(kind, spec.name, day, planner, spec.rng(f"anomaly:{n}"))
        for n, (kind, day) in enumerate(planned)
    ]

    visits: dict[int, int] = {}
    quiet: set[int] = set()
    for inj in injections:
        visits.update(inj.visits())
        quiet |= inj.quiet_days()
    timeline = planner.plan(visits, quiet)
    for inj in injections:
        timeline = inj.edit(timeline)

    failures: list[tuple[float, float]] = []
    damp: list[tuple[float, float]] = []
    for inj in injections:
        events = inj.events()
        failures.extend(events.heating_failures)
        damp.extend(events.damp)
    begin, end = planner.begin, planner.finish
    climate = simulate_climate(
        timeline, begin, end, tz, house, spec.rng("climate"), Events(failures, damp)
    )
    outages = [o for inj in injections if (o := inj.outage()) is not None]

    samples = movement(timeline, spec.rng("movement"))
    for inj in injections:
        samples.extend(inj.extra())
    samples.extend(climate_readings(climate, sensors, spec.rng("climate-sensors"), end))
    samples.extend(battery_readings(sensors, spec.rng("batteries"), begin, end, outages))
    samples = [s for s in silence(samples, outages) if begin <= s.t < end]
    samples.sort(key=lambda s: s.t)
    labels = [label for inj in injections for label in inj.labels(samples, climate)]
    return SimulatedHome(spec, sensors, begin, end, samples, labels, timeline, climate, planned)


@dataclass(frozen=True)
class WrittenHome:
    """Where a home's files are, and what the scoring needs to know about it."""

    name: str
    data: Path
    config: Path
    labels: Path
    begin: float
    end: float
    timezone: str
    readings: int


def write_home(home: SimulatedHome, directory: Path) -> WrittenHome:
    """readings.jsonl, hub.toml and labels.json in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = home.spec
    data, config, labels = (
        directory / "readings.jsonl",
        directory / "hub.toml",
        directory / "labels.json",
    )
    count = write_jsonl(data, home.samples, home.begin)
    name = f"Evaluation home {spec.name} (seed {spec.seed})"
    write_config(config, hub_config(name, home.sensors, spec.timezone, directory / "data"))
    write_labels(labels, home.labels, ZoneInfo(spec.timezone))
    return WrittenHome(spec.name, data, config, labels, home.begin, home.end, spec.timezone, count)


def build_homes(specs: Sequence[HomeSpec], out: Path) -> list[WrittenHome]:
    return [write_home(simulate_home(spec), out / spec.name) for spec in specs]
