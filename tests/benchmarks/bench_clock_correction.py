"""Correcting a big backlog of unsynchronised stamps (hub.store.clockfix): a hub offline for
weeks with no NTP, then its first council answer dates the boot. The correction runs in
chunks, one transaction each, so an alert committed meanwhile waits at most one chunk and the
WAL stays the size of a chunk, not of the buffer.

Figures, not assertions: the whole correction's time, the longest chunk (lock held), the
longest alert commit made from another thread while it ran, and the WAL's peak size.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub.events import Quantity, Reading
from hub.store import Store, StoreLimits, clockfix
from hub.store.clockfix import Origin, OriginSource
from tests.factories import alert
from tests.test_clock_correction import TRUE_ORIGIN, EdgeClock

ROWS = 1_000_000


def correct_backlog(rows: int = ROWS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        clock = EdgeClock("bench-boot")
        store = Store.open(path, clock=clock, limits=StoreLimits(quota_bytes=2**31))
        for start in range(0, rows, 10_000):
            batch = []
            for i in range(start, min(rows, start + 10_000)):
                clock.step(1.0)
                batch.append(Reading("lounge", Quantity.TEMPERATURE, 20.0 + i % 50, clock.stamp()))
            store.commit(batch)
        chunk_s: list[float] = []
        real_write = store._write_correction

        def timed(*args: Any, **kwargs: Any) -> clockfix.Correction | None:
            started = time.perf_counter()
            try:
                return real_write(*args, **kwargs)
            finally:
                chunk_s.append(time.perf_counter() - started)

        store._write_correction = timed  # type: ignore[method-assign]
        done = threading.Event()
        alert_s: list[float] = []
        wal_peak = 0
        wal = path.with_name(path.name + "-wal")

        def alerts() -> None:
            nonlocal wal_peak
            while not done.is_set():
                started = time.perf_counter()
                store.commit([replace(alert(0.0), stamp=clock.stamp())])
                alert_s.append(time.perf_counter() - started)
                wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
                time.sleep(0.01)

        writer = threading.Thread(target=alerts)
        writer.start()
        started = time.perf_counter()
        fix = store.correct_clock(Origin("bench-boot", TRUE_ORIGIN, OriginSource.COUNCIL))
        total = time.perf_counter() - started
        done.set()
        writer.join()
        store.close()
    return {
        "rows": rows,
        "corrected": fix.corrected if fix else 0,
        "total_s": round(total, 2),
        "chunks": len(chunk_s),
        "longest_chunk_ms": round(max(chunk_s) * 1000, 1),
        "longest_alert_commit_ms": round(max(alert_s) * 1000, 1),
        "alert_commits_during": len(alert_s),
        "wal_peak_mib": round(wal_peak / 2**20, 1),
    }


if __name__ == "__main__":
    print(json.dumps(correct_backlog(), indent=2))
