"""Running `hearth replay` over a home's data and collecting the alerts it prints.

The contract with `hearth replay --format ...` is its stdout: one JSON object per alert
raised or cleared (check, severity, state, room, sensor, time, evidence); anything else on
stdout is counted and ignored, and stderr (the summary, logs) goes to a log file. The command
is a parameter, so tests can stand a script in for the hub.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPLAY_COMMAND: tuple[str, ...] = (sys.executable, "-m", "provisioning", "replay")


@dataclass(frozen=True)
class ReplayJob:
    home: str
    files: tuple[Path, ...]
    fmt: str
    config: Path
    workdir: Path  # the buffer and the log go here


@dataclass
class ReplayRun:
    home: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    other_lines: int = 0
    returncode: int = 0
    seconds: float = 0.0
    log: Path | None = None
    summary: str = ""  # the last line of stderr: the replay's own summary


def parse_alert_lines(text: str) -> tuple[list[dict[str, Any]], int]:
    """The alert objects on stdout (JSON objects with a "check"), and how many lines were not."""
    alerts: list[dict[str, Any]] = []
    other = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            other += 1
            continue
        if isinstance(item, dict) and "check" in item:
            alerts.append(item)
        else:
            other += 1
    return alerts, other


def run_replay(job: ReplayJob, command: Sequence[str] = REPLAY_COMMAND) -> ReplayRun:
    job.workdir.mkdir(parents=True, exist_ok=True)
    db = job.workdir / "replay.db"
    for stale in job.workdir.glob("replay.db*"):
        stale.unlink()
    log = job.workdir / "replay.log"
    argv = [
        *command,
        *map(str, job.files),
        "--format",
        job.fmt,
        "--config",
        str(job.config),
        "--speed",
        "max",
        "--db",
        str(db),
    ]
    began = time.perf_counter()
    with log.open("w", encoding="utf-8") as err:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    seconds = time.perf_counter() - began
    alerts, other = parse_alert_lines(done.stdout)
    for alert in alerts:
        alert["home"] = job.home
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return ReplayRun(
        job.home, alerts, other, done.returncode, seconds, log, lines[-1] if lines else ""
    )


def run_all(
    jobs: Sequence[ReplayJob], command: Sequence[str] = REPLAY_COMMAND, workers: int = 1
) -> list[ReplayRun]:
    """Each job in its own process, `workers` at a time; results in the jobs' order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: run_replay(job, command), jobs))
