"""The soak, short: one simulated day (about 25 s) with the week's restarts and outages
scaled down, and the same checks as `python -m tests.soak --days 7`.

The memory threshold is looser here (10 MB instead of 5): the legs are hours long instead of
days, so most of each leg is start-up (imports finishing, the first check ticks, SQLite's page
cache and the allocator's arenas filling), and a 3-hour warm-up cuts less of it off. What this
short run can still catch is a leak fast enough to matter within hours; slow leaks are the
week's job (`make soak`).
"""

from __future__ import annotations

from pathlib import Path

from tests.soak import LONG_LEG, Plan, render, run_soak


def test_a_simulated_day_with_restarts_and_outages(tmp_path: Path) -> None:
    # 36 s of real time: room for the five outages one after another (5 s each, longer than
    # a 3 s backoff plus the 1 s idle interval, so each meets an upload attempt).
    plan = Plan(days=1.0, speed=2400.0, warmup_s=3 * 3600.0, max_growth_mb=10.0,
                table_every_s=3600.0, retry_max_s=3.0, min_outage_real_s=5.0)  # fmt: skip
    report = run_soak(plan, tmp_path)
    print("\n" + render(report, plan))
    assert report.ok, [name for name, ok in report.checks.items() if not ok]
    assert report.restarts == {
        "total": 5, "after_sigterm": 2, "after_sigkill": 2, "after_for": 1
    }  # fmt: skip
    assert report.legs[LONG_LEG].hwm_growth_after_warmup_mb is not None
    assert report.events["at_council"] == report.events["written"] > 1000
    assert (tmp_path / "soak.json").stat().st_size > 0
