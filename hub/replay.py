"""Recorded data through the whole hub pipeline on a simulated clock: the evaluation harness
and the tool a council uses to try thresholds on its own data (`hearth replay`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub.config import HubConfig, HubSection, SensorConfig, SensorSource, StoreSection
from hub.events import Alert
from hub.runtime import Hub, RunSummary


@dataclass
class ReplayResult:
    run: RunSummary
    db_path: Path
    inferred: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)


def replay_config(
    base: HubConfig | None, inferred: Sequence[SensorConfig], db_path: Path
) -> HubConfig:
    """The config a replay runs with: the given one (thresholds, timezone, reporting) with its
    buffer redirected to `db_path`, or defaults; its sensors, or when it lists none (a hub
    not yet set up, trying its thresholds on recorded data), those inferred from the data."""
    store = StoreSection(path=db_path.name)
    if base is None:
        return HubConfig(
            hub=HubSection(name="replay", data_dir=db_path.parent),
            store=store,
            sensors=tuple(inferred),
        )
    hub = base.hub.model_copy(update={"data_dir": db_path.parent})
    sensors = base.sensors or tuple(inferred)
    return base.model_copy(update={"hub": hub, "store": store, "sensors": sensors})


async def replay(
    paths: Sequence[Path],
    fmt: str,
    *,
    config: HubConfig | None,
    speed: float | None,
    db_path: Path,
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplayResult:
    """Play `paths` into a fresh buffer at `db_path`; as fast as possible when speed is None."""
    import asyncio

    from drivers.replay import ReplaySource, replay_clock

    timezone = config.hub.timezone if config else "Europe/London"
    clock = await asyncio.to_thread(replay_clock, paths, fmt, speed, timezone)
    source = ReplaySource(paths, fmt, clock, speed, timezone)
    inferred = await asyncio.to_thread(lambda: source.inferred)
    sensors = [
        SensorConfig.model_validate({**s.config_fields(), "source": SensorSource.REPLAY.value})
        for s in inferred
    ]
    cfg = replay_config(config, sensors, db_path)
    hub = Hub(cfg, clock, [source], stop_when_sources_end=True, on_alert=on_alert, upload=False)
    summary = await hub.run()
    return ReplayResult(summary, db_path, source.describe_inferred(), source.stats.summary())
