"""`hearth`: the one command for installers, the hub service and council admins.

A thin layer: each command parses its options, calls the library, and turns known failures
into a clear message and exit code 2. Heavy imports happen inside commands so `--help` is fast.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hub import __version__
from provisioning.config_cmd import config_app
from provisioning.council_cmd import council_app
from provisioning.doctor_cmd import doctor
from provisioning.options import DEFAULT_CONFIG, ConfigOption
from provisioning.sensors_cmd import sensors_app
from provisioning.service_cmd import service_app
from provisioning.setup_cmd import setup
from provisioning.sync_cmd import enroll, sync_app

if TYPE_CHECKING:
    from hub.config import HubConfig

app = typer.Typer(
    name="hearth",
    help="Hearth: the in-home sensor hub. Run the service, check its state, set it up.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")
app.add_typer(sensors_app, name="sensors")
app.add_typer(sync_app, name="sync")
app.add_typer(council_app, name="council")
app.add_typer(service_app, name="service")
app.command()(setup)
app.command()(enroll)
app.command()(doctor)


def fail(message: str) -> typer.Exit:
    typer.echo(f"hearth: {message}", err=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hearth {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    from hub.logging_setup import configure

    configure(verbose)  # one line per record, journald priorities, storms rate-limited


def _load(config_path: Path) -> HubConfig:
    from hub.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@app.command()
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    for_: Annotated[
        str | None,
        typer.Option("--for", help="Stop after this long on the hub's clock, e.g. 24h."),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(help="Run on a simulated clock this many times faster than real time."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="With --speed: the simulated start, ISO 8601 (default: now)."),
    ] = None,
) -> None:
    """Run the hub service: read the sensors and buffer everything durably."""
    from hub.clock import Clock, SimulatedClock, SystemClock
    from hub.durations import parse_duration
    from hub.runtime import Hub
    from hub.service import Notifier
    from hub.store import StoreOpenError

    cfg = _load(config)
    try:
        duration = parse_duration(for_) if for_ else None
        start_ts = datetime.fromisoformat(start).timestamp() if start else time.time()
    except ValueError as exc:
        raise fail(str(exc)) from None
    if start and speed is None:
        raise fail("--start needs --speed (a simulated clock)")
    clock: Clock = SimulatedClock(start_ts, speed) if speed else SystemClock()
    try:
        hub = Hub(cfg, clock, config_path=config, notifier=Notifier.from_environ())
        summary = asyncio.run(hub.run(duration))
    except StoreOpenError as exc:
        raise fail(f"{exc}; the buffer was left untouched") from None
    typer.echo(
        f"hub stopped: {summary.readings} readings, {summary.alerts} alert events,"
        f" {summary.committed} events committed,"
        f" last sequence {summary.last_seq}"
        + ("" if summary.uploaded is None else f", {summary.uploaded} uploaded to the council"),
        err=True,
    )


@app.command()
def replay(
    files: Annotated[
        list[Path], typer.Argument(help="Recorded data: files or folders.", show_default=False)
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="casas, series, jsonl, or auto (from the content).")
    ] = "auto",
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Thresholds and timezone (default: built in)."),
    ] = None,
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as possible) or N times real time.")
    ] = "max",
    db: Annotated[
        Path | None, typer.Option(help="Keep the buffer here (default: a temporary one).")
    ] = None,
) -> None:
    """Play recorded data through the hub pipeline on a simulated clock."""
    import tempfile

    from hub.checks.output import alert_record
    from hub.checks.timeline import LocalClock
    from hub.events import Alert
    from hub.replay import replay as run_replay

    cfg = _load(config) if config else None
    try:
        pace = None if speed == "max" else float(speed)
        if pace is not None and not pace > 0:
            raise ValueError
    except ValueError:
        raise fail(f"--speed {speed!r}: use 'max' or a positive number") from None
    with tempfile.TemporaryDirectory(prefix="hearth-replay-") as scratch:
        db_path = (db or Path(scratch) / "replay.db").absolute()
        if db is not None and db_path.exists():
            raise fail(f"{db_path} exists; replay writes a fresh buffer (remove it first)")
        local = LocalClock(cfg.hub.timezone if cfg else "Europe/London")

        def print_alert(alert: Alert) -> None:
            typer.echo(json.dumps(alert_record(alert, local), ensure_ascii=False))

        try:
            result = asyncio.run(
                run_replay(
                    files, fmt, config=cfg, speed=pace, db_path=db_path, on_alert=print_alert
                )
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    for line in [*result.inferred, *result.stats]:
        typer.echo(line, err=True)
    kept = f"buffer {db_path}" if db else "buffer discarded (--db PATH keeps it)"
    typer.echo(
        f"replayed {result.run.readings} readings, {result.run.alerts} alert events; {kept}",
        err=True,
    )


def _ago(ts: float | None) -> str:
    from provisioning.doctor import ago

    if ts is None:
        return "never"
    when = datetime.fromtimestamp(ts, UTC).astimezone()
    seconds = time.time() - ts
    if seconds < 0:
        return f"{when:%Y-%m-%d %H:%M:%S} (in the future: the clock was wrong or has jumped)"
    return f"{when:%Y-%m-%d %H:%M:%S} ({ago(seconds)})"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024 / 1024:.1f} MB"


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    db: Annotated[
        Path | None,
        typer.Option(help="Read this buffer instead of the config's (e.g. a replay's)."),
    ] = None,
) -> None:
    """What the hub holds: queue by priority, oldest unsynced, last sync, size, open alerts."""
    import sqlite3

    from rich.console import Console
    from rich.table import Table

    from hub.runtime import store_limits
    from hub.store import inspect

    cfg: HubConfig | None = None
    if db is None:
        cfg = _load(config)
        db = cfg.store_path
    try:
        st = inspect(db)
    except (FileNotFoundError, sqlite3.Error) as exc:
        raise fail(f"cannot read the buffer {db}: {exc}") from None
    quota = store_limits(cfg).quota_bytes if cfg else None
    if as_json:
        typer.echo(json.dumps({**asdict(st), "quota_bytes": quota}, indent=2))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Buffer", f"{st.path}")
    of_quota = f" of {_mb(quota)}" if quota is not None else ""
    table.add_row("Size", f"{_mb(st.file_bytes)} on disk, {_mb(st.used_bytes)} used{of_quota}")
    table.add_row("Events", f"{st.total_events} held, last sequence {st.last_seq}")
    table.add_row("Queue", "  ".join(f"{k} {v}" for k, v in st.queue_depth.items()))
    oldest = st.oldest_unsynced
    table.add_row(
        "Oldest unsynced",
        "none"
        if oldest is None
        else f"#{oldest['seq']} {oldest['kind']}, {_ago(oldest['wall_time'])}",
    )
    table.add_row("Last sync", _ago(st.last_sync_at))
    if st.sync_problem is not None:
        problem = st.sync_problem
        table.add_row("Sync failing", f"{problem['message']} ({_ago(problem['at'])})")
    if st.storage_full_since is not None:
        table.add_row(
            "Disk full",
            f"since {_ago(st.storage_full_since)}: oldest readings make room, alerts kept;"
            " free space on the card (hearth doctor)",
        )
    alerts = [
        f"{a['severity']} {a['check']} in {a['room']} since {_ago(a['since'])}"
        for a in st.open_alerts
    ]
    table.add_row("Open alerts", "\n".join(alerts) or "none")
    Console().print(table)


def main() -> None:
    app()
