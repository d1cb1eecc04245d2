"""Replay benchmarks: readings/s as fast as possible on the VirtualClock, and the cost of the
inference scan. Figures, not assertions. Uses the Open Smart Home Data Set (Fraunhofer IBP,
CC BY-SA 4.0) in ../shared/data/open-smart-home, read in place, and a generated CASAS log."""

from __future__ import annotations

import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from drivers.replay import ReplaySource, first_timestamp
from hub.clock import VirtualClock
from hub.events import Reading

OPEN_SMART_HOME = Path(__file__).resolve().parents[3] / "shared" / "data" / "open-smart-home"


def _replay(paths: list[Path], fmt: str) -> tuple[int, float, ReplaySource]:
    start = first_timestamp(paths, fmt) or 0.0
    source = ReplaySource(paths, fmt, VirtualClock(start), None)
    count = 0

    def emit(_: Reading) -> None:
        nonlocal count
        count += 1

    began = time.perf_counter()
    asyncio.run(source.run(emit))
    return count, time.perf_counter() - began, source


def open_smart_home_throughput(data: Path = OPEN_SMART_HOME) -> dict[str, Any]:
    """All open-smart-home series merged and replayed as fast as possible."""
    count, seconds, source = _replay([data], "series")
    began = time.perf_counter()
    sensors = len(source.inferred)
    return {
        "readings": count,
        "seconds": round(seconds, 3),
        "readings_per_s": round(count / seconds),
        "recorded_days": round((source.clock.wall() - (first_timestamp([data]) or 0)) / 86400, 1),
        "infer_seconds": round(time.perf_counter() - began, 3),
        "inferred_sensors": sensors,
    }


def casas_throughput(lines: int = 1_000_000) -> dict[str, Any]:
    """A generated CASAS log of `lines` lines; peak RSS shows memory does not grow with it."""
    rng = random.Random(3)
    sensors = [
        ("M001", "Bedroom"),
        ("M002", "Kitchen"),
        ("M003", "LivingRoom"),
        ("D001", "FrontDoor"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "casas.txt"
        t = 1_300_000_000.0
        with path.open("w") as out:
            for _ in range(lines):
                t += rng.expovariate(1 / 30)
                sensor, room = rng.choice(sensors)
                value = ("OPEN" if rng.random() < 0.5 else "CLOSE") if sensor[0] == "D" else "ON"
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
                out.write(f"{stamp}.{int(t % 1 * 1e6):06d} {sensor} {room} {value}\n")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        count, seconds, source = _replay([path], "casas")
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        began = time.perf_counter()
        _ = source.inferred
        infer_seconds = time.perf_counter() - began
    return {
        "lines": lines,
        "readings": count,
        "seconds": round(seconds, 3),
        "readings_per_s": round(count / seconds),
        "infer_seconds": round(infer_seconds, 3),
        "peak_rss_growth_kib": rss_after - rss_before,
    }


if __name__ == "__main__":
    print(open_smart_home_throughput())
    print(casas_throughput())
