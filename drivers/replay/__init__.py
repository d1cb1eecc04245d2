"""Replay of recorded data (CASAS logs, per-sensor series, the hub's own export) as a driver.

Plays the files as if live, in time order, at N times real time or as fast as possible on a
VirtualClock, and infers a sensor list when the config has none.
"""

from drivers.replay.formats import AUTO, FORMATS, detect_format, expand_paths
from drivers.replay.infer import InferredSensor, describe, slug
from drivers.replay.records import ReplayStats
from drivers.replay.source import ReplaySource, first_timestamp, replay_clock

__all__ = [
    "AUTO",
    "FORMATS",
    "InferredSensor",
    "ReplaySource",
    "ReplayStats",
    "describe",
    "detect_format",
    "expand_paths",
    "first_timestamp",
    "replay_clock",
    "slug",
]
