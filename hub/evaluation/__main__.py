"""python -m hub.evaluation: build simulated and real test homes, replay them through
`hearth replay`, score the alerts against the labels and print the report."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from hub.evaluation.harness import Options, evaluate, write_report
from hub.evaluation.report import render_text


def parse_args(argv: Sequence[str] | None = None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m hub.evaluation", description=__doc__)
    parser.add_argument("--homes", type=int, default=defaults.homes, help="simulated homes")
    parser.add_argument("--days", type=int, default=defaults.days, help="days per simulated home")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=defaults.out, help="report folder")
    parser.add_argument(
        "--warmup-days",
        type=int,
        default=defaults.warmup_days,
        help="anomaly-free days each home starts with (the learned checks learn on them)",
    )
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, default=defaults.start, help="first day, YYYY-MM-DD"
    )
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="parallel processes")
    parser.add_argument(
        "--real-data",
        type=Path,
        action="append",
        help="a folder of recorded series to replay as a real home (repeatable;"
        " default: ../shared/data/open-smart-home)",
    )
    parser.add_argument("--no-real-data", action="store_true", help="simulated homes only")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep homes, buffers and logs in OUT/homes"
    )
    args = parser.parse_args(argv)
    real: tuple[Path, ...] = (
        () if args.no_real_data else tuple(args.real_data or defaults.real_data)
    )
    return Options(
        homes=args.homes,
        days=args.days,
        seed=args.seed,
        out=args.out,
        warmup_days=args.warmup_days,
        start=args.start,
        jobs=args.jobs,
        real_data=real,
        keep_data=args.keep_data,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        ev = evaluate(options)
    except ValueError as exc:
        print(f"evaluation: {exc}", file=sys.stderr)
        return 2
    text_path, json_path = write_report(ev, options.out)
    sys.stdout.write(render_text(ev))
    print(f"\nReport written to {text_path} and {json_path}")
    failed = [run["home"] for run in ev.replays if run["returncode"]]
    if failed:
        print(f"evaluation: the replay of {', '.join(failed)} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
