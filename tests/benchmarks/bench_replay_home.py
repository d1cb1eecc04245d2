"""A 30-day simulated home replayed end to end through `hearth replay` (replay driver, all
checks, the buffer): seconds and readings per second for the whole command."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hub.evaluation.simulator import HomeSpec, simulate_home, write_home


def thirty_day_home(days: int = 30) -> dict[str, Any]:
    home = simulate_home(HomeSpec(seed=1, index=0, days=days))
    with tempfile.TemporaryDirectory() as d:
        written = write_home(home, Path(d))
        command = [
            sys.executable,
            "-m",
            "provisioning",
            "replay",
            str(written.data),
            "--format",
            "jsonl",
            "--config",
            str(written.config),
            "--db",
            str(Path(d) / "replay.db"),
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    readings = int(done.stderr.split("replayed ")[-1].split(" readings")[0])
    return {
        "days": days,
        "readings": readings,
        "alert_events": len(done.stdout.splitlines()),
        "seconds": round(seconds, 2),
        "readings_per_s": round(readings / seconds),
    }
