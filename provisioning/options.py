"""The `--config` option every hub command takes, defined once so its default path and the
HEARTH_CONFIG variable cannot drift apart between commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_CONFIG = Path("/etc/hearth/hub.toml")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="HEARTH_CONFIG", help="The hub's config file."),
]
