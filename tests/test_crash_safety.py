"""kill -9 in the middle of writes: nothing reported committed is lost, nothing is torn."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("HEARTH_CRASH_KILLS", "60"))


def start_writer(db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def parse_last_committed(lines: list[bytes]) -> int:
    last = 0
    for line in lines:
        word, *numbers = line.split()
        if word == b"committed":
            last = max(last, int(numbers[1]))
    return last


@pytest.mark.ci_required
def test_sigkill_at_random_moments_never_loses_a_committed_event(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    db = tmp_path / "hub.db"
    committed_max = 0
    for kill in range(KILLS):
        proc = start_writer(db)
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[:1] == [b"ready"], f"writer did not start (kill {kill})"
        assert int(ready[1]) >= committed_max, "reopening lost committed events"
        seen: list[bytes] = []
        for _ in range(rng.randint(1, 40)):  # let it commit a random number of times...
            seen.append(proc.stdout.readline())
        time.sleep(rng.uniform(0, 0.004))  # ...then kill it at a random point of a commit
        proc.send_signal(signal.SIGKILL)
        seen += proc.stdout.read().splitlines()  # what it reported before it died
        proc.wait(timeout=30)
        committed_max = max(committed_max, parse_last_committed(seen))

        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"kill {kill}"
        count, low, high = conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM events"
        ).fetchone()
        conn.close()
        assert high >= committed_max, f"kill {kill}: committed up to {committed_max}, found {high}"
        assert (low, count) == (1, high), f"kill {kill}: sequence numbers have gaps"
    assert committed_max > KILLS  # the writer really wrote between kills
