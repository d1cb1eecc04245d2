"""`hearth setup`: the guided, resumable installer's session (provisioning.setup).

A thin layer: it turns the flags into the session's defaults, picks the terminal or the
scripted prompter, and exits with the session's code (0 finished, 2 stopped, 130 Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning.options import DEFAULT_CONFIG, ConfigOption


def setup(
    config: ConfigOption = DEFAULT_CONFIG,
    council: Annotated[
        str | None, typer.Option("--council", help="The council's address (enrollment).")
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="The one-time enrollment code.")
    ] = None,
    non_interactive: Annotated[
        bool,
        typer.Option(
            "--non-interactive",
            help="Ask nothing: use the flags and the defaults (for scripted installs).",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="The home's name, for a new config.")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the hub keeps its data, for a new config.")
    ] = Path("/var/lib/hearth"),
    rooms: Annotated[
        str | None, typer.Option("--rooms", help="The rooms, comma-separated.")
    ] = None,
    cold_warning_c: Annotated[
        float | None, typer.Option("--cold-warning-c", help="Cold home warning below (°C).")
    ] = None,
    inactivity_day_hours: Annotated[
        float | None,
        typer.Option("--inactivity-day-hours", help="No movement in the day for (hours)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Go through every step again.")
    ] = False,
    scan_seconds: Annotated[
        float, typer.Option("--scan-seconds", help="How long each Bluetooth scan lasts.")
    ] = 8.0,
    wait_seconds: Annotated[
        float,
        typer.Option(
            "--wait-seconds", help="How long a live test waits for the sensor (GPIO, bindkey)."
        ),
    ] = 30.0,
    no_service: Annotated[
        bool,
        typer.Option(
            "--no-service", help="Leave the service alone (install it later: hearth service)."
        ),
    ] = False,
) -> None:
    """Set up this hub step by step: config, council, rooms, sensors, thresholds, doctor,
    service. Interrupted? Run it again: it continues where it stopped."""
    from provisioning.setup import (
        Options,
        Prompter,
        ScriptedPrompter,
        Session,
        TerminalPrompter,
        run_setup,
    )

    options = Options(
        council_url=council,
        code=code,
        name=name,
        data_dir=data_dir,
        rooms=rooms,
        cold_warning_c=cold_warning_c,
        inactivity_day_hours=inactivity_day_hours,
        scan_s=scan_seconds,
        listen_s=wait_seconds,
        gpio_wait_s=wait_seconds,
        restart=restart,
        no_service=no_service,
    )
    io: Prompter = ScriptedPrompter() if non_interactive else TerminalPrompter()
    raise typer.Exit(run_setup(Session(config, io, options)))
