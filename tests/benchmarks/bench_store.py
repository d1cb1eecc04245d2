"""Buffer benchmarks: insert throughput beside raw sqlite3, disk bytes per reading, commit
latency. Figures, not assertions: `make bench` prints them with their targets."""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hub.events import Quantity, Reading, Stamp
from hub.store import GroupCommitter, Store, StoreLimits
from hub.store.rows import INSERT, row_for

BIG_QUOTA = StoreLimits(quota_bytes=10 * 1024**3)


def make_readings(n: int) -> list[Reading]:
    t0 = 1_764_316_800.0
    quantities = (Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.MOTION, Quantity.CONTACT)
    return [
        Reading(
            f"sensor-{i % 12:02d}",
            quantities[i % 4],
            20.0 + (i % 50) / 10,
            Stamp(t0 + i, True, float(i)),
        )
        for i in range(n)
    ]


def insert_throughput(n: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """Readings/s through the group committer (from Reading objects, committed by its
    flusher thread in batches of its default size, until everything is committed) beside one
    raw executemany of the same rows into the same schema."""
    readings = make_readings(n)
    ours, raw = [], []
    committed = 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            store = Store.open(Path(d) / "hub.db", limits=BIG_QUOTA)
            committer = GroupCommitter(store)
            committer.start()  # as in the hub: full batches go to the flusher thread
            start = time.perf_counter()
            for r in readings:
                committer.add(r)
            committer.close()
            ours.append(n / (time.perf_counter() - start))
            committed = store.status().total_events
            store.close()
        with tempfile.TemporaryDirectory() as d:
            Store.open(Path(d) / "hub.db").close()  # the same schema and pragmas
            rows = [row_for(i + 1, r) for i, r in enumerate(readings)]
            conn = sqlite3.connect(Path(d) / "hub.db", isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            start = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
            raw.append(n / (time.perf_counter() - start))
            conn.close()
    best_ours, best_raw = max(ours), max(raw)
    return {
        "readings": n,
        "committed_by_store": committed,  # every reading, none dropped on the way
        "store_readings_per_s": round(best_ours),
        "raw_executemany_per_s": round(best_raw),
        "ratio_to_raw": round(best_ours / best_raw, 3),
        "target_ratio": 0.5,
    }


def _io_counters() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, value = line.split(":")
        fields[key] = int(value)
    return fields


def bytes_per_reading(per_commit: int, commits: int, directory: Path) -> dict[str, Any]:
    """Bytes this process handed to write() (wchar) and that reached the block layer
    (write_bytes), per stored reading, when each group commit carries `per_commit` readings.
    Includes WAL checkpoints back into the main file."""
    readings = make_readings(per_commit * commits)
    with tempfile.TemporaryDirectory(dir=directory) as d:
        store = Store.open(Path(d) / "hub.db", limits=BIG_QUOTA)
        before = _io_counters()
        for i in range(commits):
            store.commit(readings[i * per_commit : (i + 1) * per_commit])
        store.close()  # the final checkpoint counts too
        after = _io_counters()
    n = per_commit * commits
    return {
        "readings_per_commit": per_commit,
        "commits": commits,
        "wchar_bytes_per_reading": round((after["wchar"] - before["wchar"]) / n),
        "block_bytes_per_reading": round((after["write_bytes"] - before["write_bytes"]) / n),
    }


def commit_latency(samples: int = 20, max_latency_s: float = 0.25) -> dict[str, Any]:
    """How long a lone routine reading waits before it is durable, and an alert's wait."""
    from tests.factories import alert

    waits = []
    with tempfile.TemporaryDirectory() as d:
        store = Store.open(Path(d) / "hub.db")
        done = threading.Event()
        committer = GroupCommitter(
            store, max_latency_s=max_latency_s, on_commit=lambda _: done.set()
        )
        committer.start()
        for r in make_readings(samples):
            done.clear()
            start = time.perf_counter()
            committer.add(r)
            done.wait(10)
            waits.append(time.perf_counter() - start)
        alert_waits = []
        for i in range(samples):
            start = time.perf_counter()
            committer.add(alert(i))
            alert_waits.append(time.perf_counter() - start)
        committer.close()
        store.close()
    return {
        "configured_max_latency_s": max_latency_s,
        "reading_wait_median_s": round(statistics.median(waits), 3),
        "reading_wait_max_s": round(max(waits), 3),
        "alert_wait_median_ms": round(statistics.median(alert_waits) * 1000, 2),
        "alert_wait_max_ms": round(max(alert_waits) * 1000, 2),
    }
