"""The soak: a simulated week of a hub's life, with restarts and council outages, watching its
memory. `python -m tests.soak --days 7 --out soak-results` (about 5 minutes).

What runs, each part as the real program in its own process where that is what production
does:
- the council: `hearth council serve` on a free loopback port, SQLite database;
- between hub and council, a FaultProxy (tests/faultproxy.py) in this process: it passes
  everything through, except during outages, when it refuses every connection;
- the hub: `hearth config init --simulated` (the starter config's simulated home), `hearth
  enroll` through the proxy, then `hearth run --speed N --start T` in several legs. A leg ends
  by its own `--for`, by SIGTERM, or by SIGKILL; the next one starts at once, on the same
  buffer, at the simulated time the world has reached by then.

One mapping from real to simulated time drives everything: simulated = start + (real seconds
since the first leg) x speed. The uploader runs on the real clock (network time is real
time, hub/runtime.py), so outages are scheduled here in real seconds, derived from where they
fall in the simulated week; sync_interval_s and retry_max_s are shortened in the hub's config
so that an outage of simulated hours is many retries, as it would be in real life.

Throughout, this process samples the hub's VmRSS and VmHWM from /proc/PID/status. The check:
in each leg that runs past its warm-up, the peak (VmHWM) may not grow by more than
`max_growth_mb` after the warm-up. A leak shows as growth that continues through the long
leg. At the end, after `hearth sync now`, the council must hold exactly the hub's events:
each once, with the same content (tests.test_sync_faults.exactly_once_problems).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.faultproxy import Fault, FaultProxy

HEARTH = str(Path(sys.executable).with_name("hearth"))
SIM_START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC).timestamp()  # a Monday
DAY_S = 86400.0
COUNCIL_START_TIMEOUT_S = 30.0
LEG_GRACE_S = 60.0  # real seconds a leg may overrun its plan before the soak gives up on it
STOP_TIMEOUT_S = 60.0

LegEnd = Literal["for", "term", "kill"]
OutageKind = Literal["refuse", "council"]

# Legs as fractions of the whole run and how each ends. The third is the long one (3 days of
# a week): that is where a leak has time to show. Kills and terms alternate with outages so
# that restarts happen mid-outage and mid-backlog too.
LEGS: tuple[tuple[float, LegEnd], ...] = (
    (0.04, "term"),
    (0.08, "kill"),
    (0.45, "for"),
    (0.13, "kill"),
    (0.15, "term"),
    (0.15, "for"),
)
# Outages: (start, length) as fractions of the run. "refuse": the proxy resets every
# connection; "council": the council process is stopped and started again. Leg boundaries
# fall at 0.04, 0.12, 0.57, 0.70, 0.85: the second, fourth and fifth outages span a restart.
LONG_LEG = 2  # index in LEGS
OUTAGES: tuple[tuple[float, float, OutageKind], ...] = (
    (0.015, 0.015, "refuse"),
    (0.10, 0.04, "refuse"),
    (0.25, 0.14, "refuse"),  # a whole day of a week: a day's backlog to send afterwards
    (0.68, 0.04, "council"),
    (0.83, 0.04, "refuse"),
)


@dataclass(frozen=True)
class Plan:
    days: float = 7.0
    speed: float = 2400.0  # a week in 252 s of hub time
    warmup_s: float = 6 * 3600.0  # simulated: leg start-up, first check ticks, caches filling
    max_growth_mb: float = 5.0
    sample_every_s: float = 0.25  # real
    table_every_s: float = 6 * 3600.0  # simulated: rows in the printed curve
    # Longer than the uploader's longest backoff (retry_max_s) plus its idle interval, so an
    # outage always meets an attempt, even one that starts while a backoff is running.
    min_outage_real_s: float = 6.0
    sync_interval_s: float = 1.0  # real, for the hub's uploader (the config's minimum)
    retry_max_s: float = 4.0  # real
    seed: int = 20261128

    @property
    def total_s(self) -> float:
        return self.days * DAY_S


@dataclass
class Sample:
    sim_h: float  # simulated hours since the start
    leg: int
    leg_h: float  # simulated hours since this leg started
    rss_mb: float
    hwm_mb: float


@dataclass
class LegReport:
    index: int
    end: LegEnd
    sim_start_h: float
    sim_end_h: float
    real_s: float
    exit_code: int | None
    samples: int
    peak_hwm_mb: float | None
    rss_at_warmup_mb: float | None = None
    hwm_at_warmup_mb: float | None = None
    rss_last_mb: float | None = None
    hwm_growth_after_warmup_mb: float | None = None
    rss_growth_after_warmup_mb: float | None = None


@dataclass
class OutageReport:
    kind: OutageKind
    sim_start_h: float
    sim_hours: float
    real_s: float
    failed_attempts: int  # refused connections, or requests the proxy could not forward


@dataclass
class SoakReport:
    plan: dict[str, Any]
    real_seconds: float = 0.0
    legs: list[LegReport] = field(default_factory=list)
    outages: list[OutageReport] = field(default_factory=list)
    curve: list[Sample] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, int] = field(default_factory=dict)
    exactly_once_problems: list[str] = field(default_factory=list)
    growth_after_warmup_mb: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


# -- processes ---------------------------------------------------------------------------------


def _hearth(*args: str, log: Path | None = None) -> str:
    """One `hearth` command to completion; its stdout, or SystemExit with its output."""
    done = subprocess.run([HEARTH, *args], capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ hearth {' '.join(args)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise SystemExit(f"soak: `hearth {' '.join(args)}` exited {done.returncode}: {done.stderr}")
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Council:
    """`hearth council serve` in its own process, which the soak can stop and start again on
    the same port (an outage the hub sees as a council that does not answer)."""

    def __init__(self, db_url: str, log_path: Path) -> None:
        self.db_url = db_url
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["council", "serve", "--db", self.db_url, "--port", str(self.port)]
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen([HEARTH, *args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + COUNCIL_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"soak: the council exited {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.05)  # paces the health checks; wakes if it dies
        raise SystemExit("soak: the council did not answer in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def read_memory(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) in MB from /proc, or None once the process has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    if len(values) < 2:  # a zombie has no memory lines
        return None
    return values["VmRSS"], values["VmHWM"]


# -- the run -----------------------------------------------------------------------------------


@dataclass
class _Outage:
    kind: OutageKind
    start_s: float  # simulated, since the run's start
    end_s: float
    started_real: float | None = None
    started_sim: float = 0.0  # when it really began (checked between restarts only)
    before: int = 0
    report: OutageReport | None = None


class Soak:
    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.out = out
        self.work = out / "work"
        self.logs = out / "logs"
        self.report = SoakReport(plan=asdict(plan))
        self.t0 = 0.0
        total = plan.total_s
        min_sim = plan.min_outage_real_s * plan.speed
        self.outages = [
            _Outage(kind, start * total, start * total + max(length * total, min_sim))
            for start, length, kind in OUTAGES
        ]

    def sim_now(self) -> float:
        return (time.monotonic() - self.t0) * self.plan.speed

    def run(self) -> SoakReport:
        started = time.monotonic()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.logs.mkdir(parents=True)
        db_path = self.work / "council.db"
        db_url = f"sqlite:///{db_path.absolute()}"
        setup_log = self.logs / "setup.log"
        code = _hearth("council", "code", "create", "--expires", "1h", "--db", db_url)
        council = Council(db_url, self.logs / "council.log")
        council.start()
        try:
            weights = {Fault.NONE: 1.0}
            with FaultProxy(
                ("127.0.0.1", council.port), weights=weights, seed=self.plan.seed
            ) as proxy:
                config = self._set_up_hub(proxy.url, code, setup_log)
                self._legs(config, council, proxy)
                _hearth("sync", "now", "--config", str(config), log=setup_log)
                self.report.logs["proxy_upstream_errors"] = sum(proxy.stats().errors.values())
        finally:
            council.stop()
        self._verify(config, db_path)
        self.report.real_seconds = round(time.monotonic() - started, 1)
        return self.report

    def _set_up_hub(self, council_url: str, code: str, log: Path) -> Path:
        from hub.config import load_config, write_config

        config = self.work / "hub.toml"
        data = self.work / "data"
        _hearth("config", "init", str(config), "--name", "Soak flat", "--data-dir", str(data),
                "--simulated", log=log)  # fmt: skip
        _hearth("enroll", "--council", council_url, "--code", code, "--config", str(config),
                log=log)  # fmt: skip
        cfg = load_config(config)
        council = cfg.council.model_copy(
            update={
                "sync_interval_s": self.plan.sync_interval_s,
                "retry_max_s": self.plan.retry_max_s,
            }
        )
        write_config(config, cfg.model_copy(update={"council": council}))
        return config

    def _legs(self, config: Path, council: Council, proxy: FaultProxy) -> None:
        plan = self.plan
        ends = []
        acc = 0.0
        for fraction, end in LEGS:
            acc += fraction
            ends.append((acc * plan.total_s, end))
        self.t0 = time.monotonic()
        for index, (end_s, how) in enumerate(ends):
            self._leg(index, end_s, how, config, council, proxy)
        for outage in self.outages:  # an outage the plan stretched past the end
            if outage.started_real is not None and outage.report is None:
                self._end_outage(outage, council, proxy)
        kinds = Counter(how for _, how in ends[:-1])
        self.report.restarts = {
            "total": len(ends) - 1,
            "after_sigterm": kinds["term"],
            "after_sigkill": kinds["kill"],
            "after_for": kinds["for"],
        }

    def _leg(
        self,
        index: int,
        end_s: float,
        how: LegEnd,
        config: Path,
        council: Council,
        proxy: FaultProxy,
    ) -> None:
        plan = self.plan
        start_s = self.sim_now()
        args = [HEARTH, "run", "--config", str(config), "--speed", str(plan.speed)]
        args += ["--start", datetime.fromtimestamp(SIM_START + start_s, UTC).isoformat()]
        if how == "for":
            args += ["--for", f"{max(60.0, end_s - start_s):.0f}s"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log_path = self.logs / f"leg-{index + 1}.log"
        spawned = time.monotonic()
        with log_path.open("w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        samples: list[Sample] = []
        next_sample = spawned
        deadline = spawned + (end_s - start_s) / plan.speed + LEG_GRACE_S
        try:
            while True:
                now = time.monotonic()
                self._outages(council, proxy)
                if now >= next_sample:
                    self._sample(proc.pid, index, start_s, samples)
                    next_sample = now + plan.sample_every_s
                if how != "for" and self.sim_now() >= end_s:
                    self._sample(proc.pid, index, start_s, samples)
                    proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
                    proc.wait(timeout=STOP_TIMEOUT_S)
                    break
                if now > deadline:
                    raise SystemExit(f"soak: leg {index + 1} overran its plan; see {log_path}")
                try:  # waits on the process, at most until the next thing to do
                    proc.wait(timeout=min(plan.sample_every_s, 0.1))
                    break
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.report.curve += samples
        self.report.legs.append(
            self._leg_report(
                index, how, start_s, proc.returncode, time.monotonic() - spawned, samples
            )
        )

    def _sample(self, pid: int, leg: int, leg_start_s: float, into: list[Sample]) -> None:
        memory = read_memory(pid)
        if memory is None:
            return
        now = self.sim_now()
        rss, hwm = memory
        if rss < 1.0:  # between fork and exec, or exiting: not the hub's memory
            return
        into.append(
            Sample(
                round(now / 3600, 2),
                leg + 1,
                round((now - leg_start_s) / 3600, 2),
                round(rss, 2),
                round(hwm, 2),
            )
        )

    def _leg_report(
        self,
        index: int,
        how: LegEnd,
        start_s: float,
        code: int | None,
        real_s: float,
        samples: list[Sample],
    ) -> LegReport:
        report = LegReport(
            index=index + 1,
            end=how,
            sim_start_h=round(start_s / 3600, 2),
            sim_end_h=round(self.sim_now() / 3600, 2),
            real_s=round(real_s, 1),
            exit_code=code,
            samples=len(samples),
            peak_hwm_mb=max((s.hwm_mb for s in samples), default=None),
        )
        warm = [s for s in samples if s.leg_h * 3600 >= self.plan.warmup_s]
        if len(warm) >= 2:
            first, last = warm[0], warm[-1]
            report.rss_at_warmup_mb = first.rss_mb
            report.hwm_at_warmup_mb = first.hwm_mb
            report.rss_last_mb = last.rss_mb
            report.hwm_growth_after_warmup_mb = round(max(s.hwm_mb for s in warm) - first.hwm_mb, 2)
            report.rss_growth_after_warmup_mb = round(max(s.rss_mb for s in warm) - first.rss_mb, 2)
        return report

    def _outages(self, council: Council, proxy: FaultProxy) -> None:
        now = self.sim_now()
        for outage in self.outages:
            # One outage at a time: a later one waits for the one in progress to end (two at
            # once would end each other's fault early and share their failed attempts).
            busy = any(o.started_real is not None and o.report is None for o in self.outages)
            if outage.started_real is None and now >= outage.start_s and not busy:
                outage.end_s = max(outage.end_s, now + outage.end_s - outage.start_s)
                outage.started_real = time.monotonic()
                outage.started_sim = now
                stats = proxy.stats()
                if outage.kind == "refuse":
                    outage.before = stats.faults[Fault.REFUSE]
                    proxy.set_weights({Fault.REFUSE: 1.0})
                else:
                    outage.before = sum(stats.errors.values())
                    council.stop()
            elif outage.report is None and outage.started_real is not None and now >= outage.end_s:
                self._end_outage(outage, council, proxy)

    def _end_outage(self, outage: _Outage, council: Council, proxy: FaultProxy) -> None:
        assert outage.started_real is not None
        stats = proxy.stats()
        if outage.kind == "refuse":
            failed = stats.faults[Fault.REFUSE] - outage.before
            proxy.set_weights({Fault.NONE: 1.0})
        else:
            failed = sum(stats.errors.values()) - outage.before
            council.start()
        real_s = time.monotonic() - outage.started_real
        outage.report = OutageReport(
            outage.kind,
            round(outage.started_sim / 3600, 2),
            round(real_s * self.plan.speed / 3600, 2),
            round(real_s, 1),
            failed,
        )
        self.report.outages.append(outage.report)

    # -- the end state -------------------------------------------------------------------------

    def _verify(self, config: Path, council_db: Path) -> None:
        from hub.config import load_config
        from hub.store import Store
        from tests.sync_hub_worker import KEEP_ALL
        from tests.test_sync_faults import exactly_once_problems, hub_records

        cfg = load_config(config)
        hub_db = cfg.store_path
        report = self.report
        with contextlib.closing(sqlite3.connect(hub_db)) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchall()
            kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
            starts = conn.execute(
                "SELECT count(*) FROM events WHERE kind = 'system' AND body LIKE '%hub_started%'"
            ).fetchone()[0]
        store = Store.open(hub_db, limits=KEEP_ALL)
        try:
            hub = hub_records(store)
            queue = store.queue_depth()
            last_seq = store.last_seq
        finally:
            store.close()
        with contextlib.closing(sqlite3.connect(council_db)) as conn:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE hub_id = ? ORDER BY id", (cfg.hub.id,)
            ).fetchall()
        council = [(int(seq), json.loads(body)) for seq, body in rows]
        report.exactly_once_problems = exactly_once_problems(hub, council)
        report.events = {
            "written": len(hub),
            "last_seq": last_seq,
            "by_kind": kinds,
            "alerts": kinds.get("alert", 0),
            "hub_started_events": starts,
            "at_council": len(council),
            "left_in_outbox": queue,
            "buffer_bytes": hub_db.stat().st_size,
        }
        hub_logs = sorted(self.logs.glob("leg-*.log"))
        report.logs |= {
            "hub_log_lines": sum(len(p.read_text().splitlines()) for p in hub_logs),
            "hub_log_bytes": sum(p.stat().st_size for p in hub_logs),
        }
        grown = [leg.hwm_growth_after_warmup_mb for leg in report.legs]
        measured = [g for g in grown if g is not None]
        report.growth_after_warmup_mb = max(measured) if measured else None
        report.checks = {
            "every leg ended as planned": all(
                (leg.exit_code == 0) if leg.end in ("for", "term") else (leg.exit_code == -9)
                for leg in report.legs
            ),
            "memory measured after warm-up in the long leg": grown[LONG_LEG] is not None,
            f"peak RSS grew <= {self.plan.max_growth_mb} MB after warm-up": bool(measured)
            and max(measured) <= self.plan.max_growth_mb,
            "every outage met failed attempts": all(o.failed_attempts > 0 for o in report.outages)
            and len(report.outages) == len(OUTAGES),
            "buffer intact after the kills": integrity == [("ok",)],
            "a hub_started event per leg": starts == len(report.legs),
            "alerts were raised": kinds.get("alert", 0) > 0,
            "outbox empty at the end": queue == 0,
            "council holds exactly the hub's events": not report.exactly_once_problems
            and len(council) == len(hub) > 0,
        }


# -- the report --------------------------------------------------------------------------------


def curve_rows(report: SoakReport, every_s: float) -> Iterator[Sample]:
    """The samples thinned to about one per `every_s` simulated seconds, plus each leg's last
    sample (its end: where a leak would be largest)."""
    next_at = 0.0
    curve = report.curve
    for i, sample in enumerate(curve):
        last_of_leg = i + 1 == len(curve) or curve[i + 1].leg != sample.leg
        if sample.sim_h * 3600 >= next_at or last_of_leg:
            yield sample
            if sample.sim_h * 3600 >= next_at:
                next_at = (sample.sim_h * 3600 // every_s + 1) * every_s


def render(report: SoakReport, plan: Plan) -> str:
    lines = [
        f"Soak: {plan.days:g} simulated days at {plan.speed:g}x in {report.real_seconds:.0f} s"
        f" real; {report.restarts.get('total', 0)} restarts"
        f" ({report.restarts.get('after_sigterm', 0)} SIGTERM,"
        f" {report.restarts.get('after_sigkill', 0)} SIGKILL,"
        f" {report.restarts.get('after_for', 0)} --for), {len(report.outages)} outages",
        "",
        "RSS of the hub process (MB) against simulated time:",
        f"{'sim h':>7} {'leg':>4} {'leg h':>7} {'VmRSS':>7} {'VmHWM':>7}",
    ]
    lines += [
        f"{s.sim_h:7.1f} {s.leg:4d} {s.leg_h:7.1f} {s.rss_mb:7.1f} {s.hwm_mb:7.1f}"
        for s in curve_rows(report, plan.table_every_s)
    ]
    lines += [
        "",
        f"Legs (warm-up {plan.warmup_s / 3600:g} simulated hours):",
        f"{'leg':>4} {'ends by':>8} {'sim h':>13} {'real s':>7} {'exit':>5} {'peak':>6}"
        f" {'HWM@warm':>9} {'HWM grew':>9} {'RSS grew':>9}",
    ]
    for leg in report.legs:
        lines.append(
            f"{leg.index:4d} {leg.end:>8} {leg.sim_start_h:6.1f}-{leg.sim_end_h:<6.1f}"
            f" {leg.real_s:7.1f} {leg.exit_code!s:>5} {_mb(leg.peak_hwm_mb):>6}"
            f" {_mb(leg.hwm_at_warmup_mb):>9} {_mb(leg.hwm_growth_after_warmup_mb):>9}"
            f" {_mb(leg.rss_growth_after_warmup_mb):>9}"
        )
    lines += ["", "Outages (the uploader's retries run on real time):"]
    lines += [
        f"  {o.kind:8} at sim {o.sim_start_h:6.1f} h for {o.sim_hours:5.1f} sim h"
        f" ({o.real_s:.1f} s real): {o.failed_attempts} failed attempts"
        for o in report.outages
    ]
    ev = report.events
    lines += [
        "",
        f"Events written by the hub: {ev.get('written')} (by kind: {ev.get('by_kind')});"
        f" alerts {ev.get('alerts')}; at the council {ev.get('at_council')};"
        f" left in the outbox {ev.get('left_in_outbox')}",
        f"Hub log: {report.logs.get('hub_log_lines')} lines,"
        f" {report.logs.get('hub_log_bytes')} bytes over all legs",
        f"Peak RSS growth after warm-up (worst leg): {_mb(report.growth_after_warmup_mb)} MB",
    ]
    if report.exactly_once_problems:
        lines += ["Exactly-once problems:", *("  " + p for p in report.exactly_once_problems)]
    lines += ["", "Checks:"]
    lines += [f"  [{'ok' if ok else 'FAIL'}] {name}" for name, ok in report.checks.items()]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run_soak(plan: Plan, out: Path) -> SoakReport:
    report = Soak(plan, out).run()
    (out / "soak.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument("--speed", type=float, help="simulated seconds per real second")
    parser.add_argument("--out", type=Path, default=Path("soak-results"))
    parser.add_argument("--max-growth-mb", type=float, default=Plan.max_growth_mb)
    args = parser.parse_args(argv)
    plan = Plan(
        days=args.days,
        speed=args.speed or Plan.speed,
        max_growth_mb=args.max_growth_mb,
        table_every_s=6 * 3600.0 if args.days >= 3 else 3600.0,
    )
    report = run_soak(plan, args.out)
    print(render(report, plan))
    print(f"\n(report: {args.out / 'soak.json'}; logs: {args.out / 'logs'})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
