"""The whole evaluation: build the homes, replay each through the hub, score, report."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hub.evaluation.labels import read_labels
from hub.evaluation.realdata import OPEN_SMART_HOME, RealHome, prepare_real_home
from hub.evaluation.report import Evaluation, HomeInfo, render_text, to_json
from hub.evaluation.runner import REPLAY_COMMAND, ReplayJob, run_all
from hub.evaluation.scoring import REAL, SIMULATED, HomeSpan, score
from hub.evaluation.simulator import DEFAULT_START, HomeSpec, WrittenHome, simulate_home, write_home


@dataclass(frozen=True)
class Options:
    homes: int = 12
    days: int = 90
    seed: int = 1
    out: Path = Path("eval-results")
    warmup_days: int = 14
    start: dt.date = DEFAULT_START
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    real_data: tuple[Path, ...] = (OPEN_SMART_HOME,)
    keep_data: bool = False  # keep the generated homes and replay buffers under out/homes
    command: tuple[str, ...] = REPLAY_COMMAND

    def specs(self) -> list[HomeSpec]:
        return [
            HomeSpec(self.seed, i, self.days, self.warmup_days, self.start)
            for i in range(self.homes)
        ]


def _build(job: tuple[HomeSpec, Path]) -> WrittenHome:
    spec, directory = job
    return write_home(simulate_home(spec), directory)


def build_all(specs: Sequence[HomeSpec], root: Path, workers: int) -> list[WrittenHome]:
    jobs = [(spec, root / spec.name) for spec in specs]
    if workers <= 1 or len(jobs) <= 1:
        return [_build(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_build, jobs))


def evaluate(options: Options) -> Evaluation:
    if options.days < 1 or options.homes < 0 or not 0 <= options.warmup_days < options.days:
        raise ValueError("need days >= 1, homes >= 0 and 0 <= warmup days < days")
    began = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    root = (
        options.out / "homes"
        if options.keep_data
        else Path(tempfile.mkdtemp(prefix="hearth-eval-"))
    )
    try:
        sims = build_all(options.specs(), root, options.jobs)
        labels = read_labels(home.labels for home in sims)
        reals: list[RealHome] = []
        notes: list[str] = []
        for data in options.real_data:
            if data.is_dir():
                name = (
                    data.name if len(options.real_data) == 1 else f"{data.parent.name}-{data.name}"
                )
                reals.append(prepare_real_home(data, root / name, name=name))
            else:
                notes.append(f"real data {data} not found: skipped")
        built = time.perf_counter()
        jobs = [ReplayJob(h.name, (h.data,), "jsonl", h.config, root / h.name) for h in sims]
        jobs += [ReplayJob(h.name, (h.data,), h.fmt, h.config, root / h.name) for h in reals]
        runs = run_all(jobs, options.command, options.jobs)
        replayed = time.perf_counter()
    finally:
        if not options.keep_data:
            shutil.rmtree(root, ignore_errors=True)

    labels += [label for home in reals for label in home.labels]
    spans = [HomeSpan(h.name, h.begin, h.end, h.timezone, SIMULATED) for h in sims]
    spans += [HomeSpan(h.name, h.begin, h.end, h.timezone, REAL) for h in reals]
    alerts = [alert for run in runs for alert in run.alerts]
    result = score(labels, alerts, spans)
    homes = [HomeInfo(h.name, SIMULATED, result.days[h.name], h.readings) for h in sims]
    homes += [HomeInfo(h.name, REAL, result.days[h.name], h.readings, h.citation) for h in reals]
    return Evaluation(
        params={
            "homes": options.homes,
            "days": options.days,
            "seed": options.seed,
            "warmup_days": options.warmup_days,
            "start": options.start.isoformat(),
            "real_data": [str(p) for p in options.real_data],
            "notes": notes,
        },
        homes=homes,
        score=result,
        seconds={
            "build": built - began,
            "replay": replayed - built,
            "total": time.perf_counter() - began,
        },
        replays=[
            {
                "home": r.home,
                "returncode": r.returncode,
                "seconds": round(r.seconds, 2),
                "alerts": len(r.alerts),
                "other_stdout_lines": r.other_lines,
                "summary": r.summary,
                "log": str(r.log) if options.keep_data else None,
            }
            for r in runs
        ],
        citations=sorted({h.citation for h in reals}),
    )


def write_report(ev: Evaluation, out: Path) -> tuple[Path, Path]:
    text_path, json_path = out / "report.txt", out / "report.json"
    text_path.write_text(render_text(ev), encoding="utf-8")
    json_path.write_text(
        json.dumps(to_json(ev), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return text_path, json_path
