"""`make bench`: run every benchmark, print the figures beside their targets, keep a JSON copy."""

from __future__ import annotations

import json
import platform
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks import (
    bench_ble_callback,
    bench_ble_e2e,
    bench_catchup,
    bench_checks,
    bench_clock_correction,
    bench_council,
    bench_gpio,
    bench_replay,
    bench_replay_home,
    bench_rss,
    bench_store,
    bench_wire,
)

OUT = Path("bench-results")

# (key in bench.json, heading, benchmark): each returns a dict of figures beside its target.
BENCHMARKS: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("store_insert", "Store insert throughput (group commit vs raw executemany, same schema)",
     bench_store.insert_throughput),
    ("commit_latency", "Group commit latency", bench_store.commit_latency),
    ("ble_callback", "BLE detection callback, microseconds per advert by path",
     bench_ble_callback.callback_costs),
    ("ble_end_to_end", "BLE adverts end to end: fake BlueZ -> bleak -> pipeline -> store",
     bench_ble_e2e.adverts_per_second_end_to_end),
    ("gpio_edge_to_emit", "GPIO edge to emit on the loop (no debounce: the driver's own cost)",
     bench_gpio.edge_to_emit),
    ("gpio_press_to_held", "GPIO pull cord: press to BUTTON=1 with hold 0.5 s, debounce 50 ms",
     bench_gpio.press_to_held),
    ("replay_open_smart_home", "Replay of the whole Open Smart Home data set (as fast as possible)",
     bench_replay.open_smart_home_throughput),
    ("replay_casas", "Replay of a generated 1M-line CASAS log", bench_replay.casas_throughput),
    ("checks", "Readings per second through all checks together (one core)",
     bench_checks.checks_throughput),
    ("replay_30_day_home", "A 30-day simulated home through `hearth replay` (all of the hub)",
     bench_replay_home.thirty_day_home),
    ("wire", "Upload batch on the wire (500 mixed events) vs JSON lines + gzip",
     bench_wire.wire_bytes_per_event),
    ("council_ingest_sqlite", "Council ingest over HTTP, SQLite (signed batches of 500, 4 hubs)",
     bench_council.ingest_sqlite),
    ("council_ingest_postgresql", "Council ingest over HTTP, PostgreSQL (same load)",
     bench_council.ingest_postgres),
    ("catchup_week", "Catch-up of a week's backlog of one home (real uploader -> council)",
     bench_catchup.catch_up_week),
    ("clock_correction", "Correcting 1M pre-NTP stamps while alerts commit (lock hold, WAL)",
     bench_clock_correction.correct_backlog),
]  # fmt: skip


def section(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    for key, value in figures.items():
        print(f"  {key:32} {value}")


def main() -> None:
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} Python {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
    }
    print(f"Hearth benchmarks on {results['machine']}, SQLite {results['sqlite']}")

    # First, while this process is small: the hub is measured on its own memory, but a fork
    # of a large parent is slower to start and muddies the picture.
    results["hub_rss"] = bench_rss.peak_rss_of_hub()
    section("Peak RSS of `hearth run` (demo simulated home)", results["hub_rss"])

    for key, title, bench in BENCHMARKS:
        results[key] = bench()
        section(title, results[key])

    disk = Path.cwd()
    results["disk_bytes"] = [
        bench_store.bytes_per_reading(k, commits, disk)
        for k, commits in ((1, 3000), (10, 1000), (5000, 20))
    ]
    for row in results["disk_bytes"]:
        section(
            f"Disk writes per stored reading, {row['readings_per_commit']} readings per commit", row
        )

    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {OUT / 'bench.json'}")


if __name__ == "__main__":
    main()
