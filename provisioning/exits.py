"""How every `hearth` command ends on bad input: one `hearth: ...` line per problem on
stderr and exit code 2 (1 where a command says so), never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from hub.config import HubConfig


def fail(message: str, code: int = 2) -> NoReturn:
    for line in message.splitlines():
        typer.echo(f"hearth: {line}", err=True)
    raise typer.Exit(code)


def load_existing_config(path: Path) -> HubConfig:
    """The hub's config, validated; a missing or invalid file ends the command (exit 2)
    with what to do about it."""
    from hub.config import ConfigError, load_config

    if not path.is_file():
        fail(f"no config at {path}: write one first with: hearth config init {path}")
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))
