"""`hearth doctor [--json]`: every check of provisioning.doctor, one line each, coloured.

The exit code is the worst level (0 green, 1 amber, 2 red), so a scripted install can stop
on red and an installer can see at a glance what is left to do. Tests (and `hearth setup`)
hand in a provisioning.doctor.Environment as the click context's `obj`; otherwise the
checks look at the real machine.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from provisioning.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from rich.console import Console

    from provisioning.doctor import Report

_STYLE = {"green": "bold green", "amber": "bold yellow", "red": "bold red"}


def print_report(report: Report, console: Console) -> None:
    """A table: level, check, what was seen, and under it the fix. Text objects, not markup:
    a fix like 'under [gpio]' must print as written."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("what was found / what to do")
    for finding in report.findings:
        level = finding.level.value
        table.add_row(
            Text(f"● {level}", style=_STYLE[level]), Text(finding.name), Text(finding.summary)
        )
        if finding.fix:
            table.add_row(Text(""), Text(""), Text(f"→ {finding.fix}", style="italic"))
    console.print(table)
    counts = {lvl: sum(f.level.value == lvl for f in report.findings) for lvl in _STYLE}
    overall = report.level.value
    verdict = {
        "green": "all good",
        "amber": "works, but see the amber lines",
        "red": "needs fixing: see the red lines",
    }[overall]
    line = Text("overall: ", style="bold")
    line.append(overall, style=_STYLE[overall])
    line.append(
        f" ({verdict}; {counts['green']} green, {counts['amber']} amber, {counts['red']} red)"
    )
    console.print(line)


def doctor(
    ctx: typer.Context,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the table.")
    ] = False,
) -> None:
    """Check the hub: Bluetooth, GPIO, clock, disk and buffer, council, service, sensors.

    Exit code: 0 all green, 1 something amber, 2 something red.
    """
    from rich.console import Console

    from provisioning.doctor import Environment, run_doctor

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    report = asyncio.run(run_doctor(config, env))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print_report(report, Console())
    raise typer.Exit(report.level.exit_code)
