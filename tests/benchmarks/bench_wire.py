"""Bytes on the wire per event: the batch codec beside plain JSON lines + gzip of the same
events, and its encode/decode cost. Figures, not assertions: `make bench` prints them."""

from __future__ import annotations

import gzip
import json
import random
import time
from typing import Any

from hub.events import (
    Alert,
    AlertState,
    Event,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from sync.codec import decode_batch, encode_batch

T0 = 1_764_316_800.0
HEALTH = {
    "software_version": "0.5.0",
    "uptime_s": 86_400.5,
    "queue_depth": 1200,
    "disk_free_bytes": 12_000_000_000,
    "clock_synced": True,
    "sensors": {f"sensor-{i:02d}": {"last_seen": T0, "battery": 87} for i in range(16)},
}

# A home: (sensor, quantities, resolution of the value as the sensor reports it, interval s).
# BTHome climate sensors give 0.01 °C and 0.01 %RH; CO2 in whole ppm; binary 0/1 states.
_CLIMATE = [(f"climate-{room}", room) for room in ("lounge", "kitchen", "bed1", "bath", "hall")]


def typical_batch(n: int = 500, seed: int = 5) -> list[StoredEvent]:
    """Mostly readings from 16 sensors (climate, CO2, motion, contact, battery, RSSI), with
    a few alerts and system events, stamped as the hub stamps them: `time.time()` and
    `time.monotonic()` at full precision, a few microseconds apart."""
    rnd = random.Random(seed)
    boot = T0 - 3 * 86_400.0 + rnd.random()
    levels: dict[tuple[str, Quantity], float] = {}
    series: list[tuple[str, Quantity, float, float]] = []
    for sensor, _room in _CLIMATE:
        series += [
            (sensor, Quantity.TEMPERATURE, 0.01, 19.5),
            (sensor, Quantity.HUMIDITY, 0.01, 55),
        ]
    series += [("co2-lounge", Quantity.CO2, 1.0, 700.0), ("co2-bed1", Quantity.CO2, 1.0, 600)]
    for s in ("motion-lounge", "motion-kitchen", "motion-hall", "motion-bed1"):
        series.append((s, Quantity.MOTION, 1.0, 0.0))
    for s in ("door-front", "door-back", "window-bed1"):
        series.append((s, Quantity.CONTACT, 1.0, 0.0))
    events: list[Event] = []
    t = T0
    seq = 1000
    while len(events) < n:
        t += rnd.expovariate(1 / 6.0)
        k = rnd.random()
        stamp = Stamp(t + rnd.random() * 1e-3, True, t - boot + rnd.random() * 1e-5)
        if k < 0.01:
            events.append(
                Alert(
                    "cold_home",
                    Severity.WARNING,
                    rnd.choice(list(AlertState)),
                    "lounge",
                    "climate-lounge",
                    t - 7200.0,
                    None,
                    {"mean_c": round(17.2 + rnd.random(), 2), "since_s": 7200.0, "threshold": 18},
                    stamp,
                )
            )
        elif k < 0.015:
            events.append(SystemEvent(SystemKind.HUB_STARTED, {"version": "0.5.0"}, stamp))
        elif k < 0.03:
            sensor = rnd.choice([s[0] for s in series])
            quantity = rnd.choice((Quantity.BATTERY, Quantity.RSSI))
            value = float(
                rnd.randint(60, 100) if quantity is Quantity.BATTERY else -rnd.randint(50, 95)
            )
            events.append(Reading(sensor, quantity, value, stamp))
        else:
            sensor, quantity, step, start = rnd.choice(series)
            level = levels.get((sensor, quantity), start)
            if quantity.is_binary:
                level = 1.0 - level
            else:
                level = round(level + rnd.randint(-3, 3) * step, 2)
            levels[(sensor, quantity)] = level
            events.append(Reading(sensor, quantity, level, stamp))
        seq += 1
    return [StoredEvent(seq=1000 + i, event=e) for i, e in enumerate(events)]


def json_lines_gzip(events: list[StoredEvent], health: dict[str, Any]) -> bytes:
    """The baseline: one JSON object per line (the store's export record) plus the health
    line, gzipped at its default level 9."""
    lines = [json.dumps({"hub_id": "hub-0001", "health": health})]
    lines += [json.dumps(e.to_record()) for e in events]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def wire_bytes_per_event(n: int = 500, repeats: int = 20) -> dict[str, Any]:
    events = typical_batch(n)
    body = encode_batch("hub-0001", events, HEALTH)
    baseline = json_lines_gzip(events, HEALTH)
    assert decode_batch(body).events == events  # a figure for a wrong codec is no figure
    start = time.perf_counter()
    for _ in range(repeats):
        encode_batch("hub-0001", events, HEALTH)
    enc = (time.perf_counter() - start) / (repeats * n)
    start = time.perf_counter()
    for _ in range(repeats):
        decode_batch(body)
    dec = (time.perf_counter() - start) / (repeats * n)
    kinds: dict[str, int] = {}
    for e in events:
        kind = type(e.event).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "events": n,
        "mix": kinds,
        "codec_bytes_per_event": round(len(body) / n, 2),
        "jsonl_gzip_bytes_per_event": round(len(baseline) / n, 2),
        "ratio_to_jsonl_gzip": round(len(body) / len(baseline), 3),
        "target_ratio": "<= 0.5",
        "encode_us_per_event": round(enc * 1e6, 2),
        "decode_us_per_event": round(dec * 1e6, 2),
    }


if __name__ == "__main__":
    print(json.dumps(wire_bytes_per_event(), indent=2))
