"""`hearth sensors`: find BLE sensors nearby and see what they report, before pairing.

A thin layer over drivers.ble.scan. On a terminal the table updates live; otherwise (or with
--json) the result is printed once at the end. Whatever goes wrong (no D-Bus, no bluetoothd,
no adapter, a bad config) the installer gets one plain line and exit code 2, never a
traceback. The BLE libraries are imported inside the command so `hearth --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from drivers.ble.pipeline import PairedDevice
    from drivers.ble.scan import ScanResult

sensors_app = typer.Typer(
    help="Find BLE sensors nearby and see what they report.",
    no_args_is_help=True,
)


@sensors_app.callback()
def sensors() -> None:
    """Find BLE sensors nearby and see what they report."""


def _fail(message: str) -> NoReturn:
    for line in message.splitlines():
        typer.echo(f"hearth: {line}", err=True)
    raise typer.Exit(2)


@sensors_app.command("scan")
def scan(
    seconds: Annotated[
        float,
        typer.Option("--seconds", "-s", min=0.5, max=3600, help="How long to listen."),
    ] = 10.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per device (one per line) at the end."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="HEARTH_CONFIG",
            help="The hub's config file: marks the sensors already paired and decodes"
            " their encrypted adverts with their bindkeys.",
        ),
    ] = None,
) -> None:
    """List nearby BLE devices: address, name, decoder family, values, RSSI, paired or not."""
    from drivers.ble.scan import BluetoothUnavailable, scan_nearby

    paired = _paired_from(config) if config is not None else {}
    live = None if as_json or not sys.stdout.isatty() else _LiveTable()
    try:
        if live is None:
            results = asyncio.run(scan_nearby(seconds, paired))
        else:
            with live:
                results = asyncio.run(scan_nearby(seconds, paired, on_update=live.show))
                live.show(results, seconds)  # the last frame, titled with the time listened
    except BluetoothUnavailable as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug or a surprise from BlueZ still gets one line
        _fail(f"the scan failed ({type(exc).__name__}: {exc})")
    if as_json:
        for result in results:
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    if live is None:
        from rich.console import Console

        # Piped to a file or a pager: no terminal width to fit, so do not squeeze to 80.
        wide = None if "COLUMNS" in os.environ else 120
        Console(width=wide).print(_table(results, seconds))
    typer.echo(_summary(results), err=True)


def _paired_from(path: Path) -> dict[str, PairedDevice]:
    from drivers.ble.scanner import paired_devices
    from hub.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        _fail(str(exc))
    return {device.address: device for device in paired_devices(config.sensors)}


class _LiveTable:
    """A rich Live display that the scan refreshes as devices are heard."""

    def __init__(self) -> None:
        from rich.live import Live

        self._live = Live(_table([], None), auto_refresh=False, transient=False)

    def __enter__(self) -> _LiveTable:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def show(self, results: list[ScanResult], seconds: float | None = None) -> None:
        self._live.update(_table(results, seconds), refresh=True)


def _table(results: list[ScanResult], seconds: float | None) -> Table:
    from rich.table import Table

    title = "BLE devices nearby" + (f" (listened {seconds:g} s)" if seconds else " (listening)")
    table = Table(title=title)
    table.add_column("Address", no_wrap=True)
    table.add_column("Name")  # the one that may wrap on a narrow screen
    table.add_column("Family", no_wrap=True)
    table.add_column("RSSI", justify="right", no_wrap=True)
    table.add_column("Paired")
    table.add_column("Values", no_wrap=True)  # one "quantity value" per line
    for r in results:
        table.add_row(
            r.address,
            r.name or "",
            r.family or "-",
            "" if r.rssi is None else f"{r.rssi} dBm",
            (r.sensor_id or "yes") if r.paired else "",
            "\n".join(f"{q} {v:g}" for q, v in sorted(r.values.items()))
            or ("needs its bindkey" if r.needs_bindkey else ""),
        )
    return table


def _summary(results: list[ScanResult]) -> str:
    recognised = sum(r.family is not None for r in results)
    paired = sum(r.paired for r in results)
    return f"{len(results)} devices heard, {recognised} recognised, {paired} paired"
