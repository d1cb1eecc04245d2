"""`hearth config`: check and create the hub's config file.

A thin layer over hub.config. Whatever goes wrong, the installer sees plain lines naming the
file and the problem, and exit code 2; never a traceback. hub.config (and pydantic) is imported
inside the commands so `hearth --help` stays fast on a Pi Zero.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer

config_app = typer.Typer(
    help="Check the hub's config file, or write a starter one.",
    no_args_is_help=True,
)

_DEFAULT_DATA_DIR = Path("/var/lib/hearth")


def _fail(lines: str) -> NoReturn:
    for line in lines.splitlines():
        typer.echo(line, err=True)
    raise typer.Exit(2)


def _sensor_count(count: int) -> str:
    return f"{count} sensor" if count == 1 else f"{count} sensors"


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The config file to check.", show_default=False)],
) -> None:
    """Check a config file and list every problem in it, one per line."""
    from hub.config import ConfigError, load_config

    try:
        config = load_config(file)
    except ConfigError as exc:
        _fail(str(exc))
    except Exception as exc:  # a bug in the checker must still not show a traceback
        _fail(f"{file}: could not check the file ({type(exc).__name__}: {exc})")
    typer.echo(f"{file}: valid ({_sensor_count(len(config.sensors))})")


@config_app.command("init")
def init(
    file: Annotated[Path, typer.Argument(help="Where to write the config.", show_default=False)],
    name: Annotated[
        str | None,
        typer.Option("--name", help="A name for this hub (default: the host name)."),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the hub keeps its data.")
    ] = _DEFAULT_DATA_DIR,
    simulated: Annotated[
        bool,
        typer.Option(
            "--simulated/--no-simulated",
            help="Add simulated sensors for a small home, to try the hub without hardware.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the file if it already exists.")
    ] = False,
) -> None:
    """Write a starter config with the default checks."""
    from hub.config import ConfigError, starter_config, write_config

    if file.is_dir():
        _fail(f"{file}: is a directory; give the path of the config file to write")
    if (file.exists() or file.is_symlink()) and not force:
        _fail(f"{file}: already exists; not replacing it (use --force to overwrite it)")
    if name is not None and not name.strip():
        _fail("--name must not be empty")
    hub_name = name if name is not None else (socket.gethostname() or "hearth-hub")
    try:
        # Relative to where the installer typed it, not to the config file's directory.
        config = starter_config(hub_name, data_dir.absolute(), simulated=simulated)
        file.parent.mkdir(parents=True, exist_ok=True)
        write_config(file, config)
    except ConfigError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{file}: cannot write the file: {exc.strerror or exc}")
    typer.echo(f"{file}: wrote a starter config ({_sensor_count(len(config.sensors))})")
