"""GPIO driver latency: from a pin edge (driven from a thread, as lgpio's alert thread would
call back) to `emit` running on the event loop. Figures, not assertions: pull cord and leak
alerts must be raised within 1 s of the edge, and this is the driver's share of that."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

from drivers.gpio import GpioSource, GpioSpec, mock_pin_factory
from hub.clock import SystemClock
from hub.config import SensorKind
from hub.events import Reading


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "max_ms": round(ms[-1], 3),
    }


async def _measure(debounce_ms: int, hold_s: float | None, edges: int) -> list[float]:
    factory = mock_pin_factory()
    pin = factory.pin(17)
    pin.drive_high()  # a pull cord at rest, pull-up
    spec = GpioSpec("cord", SensorKind.BUTTON, 17, True, False, debounce_ms, hold_s)
    arrived = threading.Event()
    arrivals: list[tuple[float, float]] = []

    def emit(reading: Reading) -> None:
        arrivals.append((time.perf_counter(), reading.value))
        arrived.set()

    task = asyncio.create_task(GpioSource([spec], SystemClock(), factory).run(emit))

    def drive() -> list[float]:
        latencies = []
        arrived.wait(5)  # the initial state
        for i in range(edges * 2):
            arrived.clear()
            start = time.perf_counter()
            (pin.drive_low if i % 2 == 0 else pin.drive_high)()
            if not arrived.wait(5):
                raise RuntimeError("no reading within 5 s of an edge")
            if i % 2 == 0:  # press (or hold) -> BUTTON=1: the alert path
                latencies.append(arrivals[-1][0] - start)
        return latencies

    try:
        return await asyncio.to_thread(drive)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def edge_to_emit(edges: int = 2000) -> dict[str, Any]:
    """Press -> BUTTON=1 reaching emit, no debounce: the driver's own overhead (callback,
    stamp, hand-over to the loop)."""
    return {"edges": edges, **_percentiles(asyncio.run(_measure(0, None, edges)))}


def edge_to_emit_debounced(edges: int = 40, debounce_ms: int = 50) -> dict[str, Any]:
    """The same with the config's default debounce: a level counts once stable that long."""
    figures = _percentiles(asyncio.run(_measure(debounce_ms, None, edges)))
    return {"edges": edges, "debounce_ms": debounce_ms, **figures}


def press_to_held(presses: int = 5, hold_s: float = 0.5, debounce_ms: int = 50) -> dict[str, Any]:
    """A pull cord held for hold_s: press edge -> BUTTON=1 (debounce + hold + overhead)."""
    figures = _percentiles(asyncio.run(_measure(debounce_ms, hold_s, presses)))
    return {"presses": presses, "hold_s": hold_s, "debounce_ms": debounce_ms, **figures}


if __name__ == "__main__":
    for bench in (edge_to_emit, edge_to_emit_debounced, press_to_held):
        print(bench.__name__, bench())
