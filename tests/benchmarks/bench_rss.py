"""Peak resident memory of `hearth run` on the demo's simulated home.

Read from /proc/<pid>/status (VmHWM, the high-water mark of the process's own memory since
exec). Not from wait4's ru_maxrss: that also counts the benchmark's own memory inherited by
the fork before exec, which once made a 40 MB hub look like 150 MB.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLE_EVERY_S = 0.2


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss_of_hub(simulated: str = "12h", speed: int = 3600) -> dict[str, Any]:
    hearth = [sys.executable, "-m", "provisioning"]
    peak_kib = 0
    samples = []
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "hub.toml"
        subprocess.run(
            [
                *hearth,
                "config",
                "init",
                str(config),
                "--name",
                "bench",
                "--data-dir",
                str(Path(d) / "data"),
                "--simulated",
            ],
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen(
            [*hearth, "run", "-c", str(config), "--speed", str(speed), "--for", simulated],
            stderr=subprocess.DEVNULL,
        )
        start = time.monotonic()
        while proc.poll() is None:
            hwm = _status_kib(proc.pid, "VmHWM")
            rss = _status_kib(proc.pid, "VmRSS")
            if hwm is not None and rss is not None:
                peak_kib = max(peak_kib, hwm)
                samples.append((round(time.monotonic() - start, 1), rss))
            time.sleep(SAMPLE_EVERY_S)  # sampling a running process, not waiting for an event
    if proc.returncode != 0:
        raise RuntimeError(f"hearth run exited {proc.returncode}")
    return {
        "simulated": simulated,
        "speed": speed,
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "samples": len(samples),
        "target_mb": 60,
    }
