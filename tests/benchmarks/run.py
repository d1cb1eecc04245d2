"""`make bench`: run every benchmark, print the figures beside their targets, keep a JSON copy."""

from __future__ import annotations

import json
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.benchmarks import (
    bench_ble_callback,
    bench_ble_e2e,
    bench_checks,
    bench_gpio,
    bench_replay,
    bench_replay_home,
    bench_rss,
    bench_store,
    bench_wire,
)

OUT = Path("bench-results")


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

    results["store_insert"] = bench_store.insert_throughput()
    section(
        "Store insert throughput (group commit vs raw executemany, same schema)",
        results["store_insert"],
    )

    disk = Path.cwd()
    results["disk_bytes"] = [
        bench_store.bytes_per_reading(k, commits, disk)
        for k, commits in ((1, 3000), (10, 1000), (5000, 20))
    ]
    for row in results["disk_bytes"]:
        section(
            f"Disk writes per stored reading, {row['readings_per_commit']} readings per commit", row
        )

    results["commit_latency"] = bench_store.commit_latency()
    section("Group commit latency", results["commit_latency"])

    results["ble_callback"] = bench_ble_callback.callback_costs()
    section("BLE detection callback, microseconds per advert by path", results["ble_callback"])

    results["ble_end_to_end"] = bench_ble_e2e.adverts_per_second_end_to_end()
    section(
        "BLE adverts end to end: fake BlueZ -> bleak -> pipeline -> store",
        results["ble_end_to_end"],
    )

    results["gpio_edge_to_emit"] = bench_gpio.edge_to_emit()
    section(
        "GPIO edge to emit on the loop (no debounce: the driver's own cost)",
        results["gpio_edge_to_emit"],
    )
    results["gpio_press_to_held"] = bench_gpio.press_to_held()
    section(
        "GPIO pull cord: press to BUTTON=1 with hold 0.5 s, debounce 50 ms",
        results["gpio_press_to_held"],
    )

    results["replay_open_smart_home"] = bench_replay.open_smart_home_throughput()
    section(
        "Replay of the whole Open Smart Home data set (as fast as possible)",
        results["replay_open_smart_home"],
    )
    results["replay_casas"] = bench_replay.casas_throughput()
    section("Replay of a generated 1M-line CASAS log", results["replay_casas"])

    results["checks"] = bench_checks.checks_throughput()
    section("Readings per second through all checks together (one core)", results["checks"])

    results["replay_30_day_home"] = bench_replay_home.thirty_day_home()
    section(
        "A 30-day simulated home through `hearth replay` (driver, checks, buffer)",
        results["replay_30_day_home"],
    )

    results["wire"] = bench_wire.wire_bytes_per_event()
    section("Upload batch on the wire (500 mixed events) vs JSON lines + gzip", results["wire"])

    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {OUT / 'bench.json'}")


if __name__ == "__main__":
    main()
