"""`hearth sensors`: find BLE sensors nearby, add, remove, list and live-test the hub's sensors.

`scan` is a thin layer over drivers.ble.scan; `add`, `remove`, `list` and `test` over
provisioning.sensors (which `hearth setup` reuses). Exit codes: 0 done (test: seen), 1 test not
seen, 2 bad input or refused (nothing written).

On a terminal the scan table updates live; otherwise (or with --json) the result is printed
once at the end. Whatever goes wrong (no D-Bus, no bluetoothd, no adapter, a bad config, a
refused change) the installer gets plain lines and exit code 2, never a traceback. Heavy
libraries (BLE, gpiozero, pydantic) are imported inside the commands so `hearth --help` stays
fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from provisioning.exits import fail as _fail
from provisioning.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from rich.table import Table

    from drivers.ble.pipeline import PairedDevice
    from drivers.ble.scan import ScanResult
    from hub.config import HubConfig, SensorConfig
    from provisioning.sensors import SensorError

sensors_app = typer.Typer(
    help="Find, add, remove, list and test the hub's sensors.",
    no_args_is_help=True,
)


@sensors_app.callback()
def sensors() -> None:
    """Find, add, remove, list and test the hub's sensors."""


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


# -- list, add, remove, test ---------------------------------------------------------------


def _load_config(path: Path) -> HubConfig:
    from hub.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc))


def _refused(exc: SensorError) -> NoReturn:
    _fail(str(exc))


def _ago(ts: float | None, now: float) -> str:
    from provisioning.doctor import ago

    return "never" if ts is None else ago(max(0.0, now - ts))


@sensors_app.command("list")
def list_(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per sensor (one per line).")
    ] = False,
) -> None:
    """List the configured sensors, when each was last heard and its battery."""
    import time

    from provisioning.sensors import list_sensors

    rows, note = list_sensors(_load_config(config))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json(), ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.table import Table

        now = time.time()
        table = Table(title=f"Sensors in {config}")
        for name in ("ID", "Kind", "Room", "Role", "Source", "Pin / address", "Family"):
            table.add_column(name, no_wrap=name != "Room")
        table.add_column("Bindkey")
        table.add_column("Last heard", no_wrap=True)
        table.add_column("Battery", justify="right")
        for r in rows:
            table.add_row(
                r.id,
                r.kind,
                r.room,
                r.role,
                r.source,
                r.where or "",
                r.family or "",
                "set" if r.bindkey_set else "",
                _ago(r.last_heard, now),
                "" if r.battery is None else f"{r.battery:.0f} %",
            )
        wide = None if "COLUMNS" in os.environ else 140
        Console(width=wide).print(table)
    if note:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{len(rows)} sensor{'' if len(rows) == 1 else 's'}", err=True)


@sensors_app.command("add")
def add(
    sensor_id: Annotated[str, typer.Option("--id", help="A short name: lower-case, digits, -.")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="motion, contact, button, pressure_mat, leak (wired or BLE); climate,"
            " air_quality, thermometer (BLE).",
        ),
    ],
    room: Annotated[str, typer.Option("--room", help="The room it is in, e.g. 'Hallway'.")],
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="What the room is: bedroom, bathroom, toilet, kitchen, living_room, hallway,"
            " exit_door, other (default).",
        ),
    ] = None,
    pin: Annotated[
        int | None, typer.Option("--pin", help="Wired sensor: its GPIO number (BCM, 0-27).")
    ] = None,
    pull_up: Annotated[
        bool | None,
        typer.Option(
            "--pull-up/--no-pull-up",
            help="Wired: the internal pull-up (default) or, with --no-pull-up, pull-down.",
        ),
    ] = None,
    active_high: Annotated[
        bool | None,
        typer.Option(
            "--active-high/--active-low",
            help="Wired: which level means active (default: the usual wiring for the kind).",
        ),
    ] = None,
    debounce_ms: Annotated[
        int | None, typer.Option("--debounce-ms", help="Wired: debounce time (default 50).")
    ] = None,
    hold_s: Annotated[
        float | None, typer.Option("--hold-s", help="Wired button: hold this long to count.")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="BLE sensor: its address, AA:BB:CC:DD:EE:FF.")
    ] = None,
    family: Annotated[
        str | None,
        typer.Option("--family", help="BLE: bthome, xiaomi, govee, ruuvitag (default: detect)."),
    ] = None,
    bindkey: Annotated[
        str | None,
        typer.Option(
            "--bindkey",
            help="BLE: the 32-hex-digit key of an encrypted sensor; '-' reads it from standard"
            " input (keeps it out of the shell history).",
        ),
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="BLE: listen for the sensor and decode an advert before adding it (default:"
            " on when a bindkey is given and Bluetooth is available).",
        ),
    ] = None,
    verify_seconds: Annotated[
        float, typer.Option("--verify-seconds", min=1, max=600, help="How long to listen.")
    ] = 60.0,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Add a wired (--pin) or Bluetooth (--address) sensor to the config."""
    from hub.config import SensorSource
    from provisioning.sensors import SensorError, prepare_add, write_prepared

    if (pin is None) == (address is None):
        _fail("give either --pin (a wired sensor) or --address (a Bluetooth one)")
    if bindkey == "-":
        bindkey = sys.stdin.readline().strip()
    given: dict[str, Any] = {
        "id": sensor_id,
        "kind": kind,
        "room": room,
        "role": role,
        "source": str(SensorSource.GPIO if pin is not None else SensorSource.BLE),
        "pin": pin,
        "pull_up": pull_up,
        "active_high": active_high,
        "debounce_ms": debounce_ms,
        "hold_s": hold_s,
        "address": address,
        "family": family,
        "bindkey": bindkey,
    }
    fields = {name: value for name, value in given.items() if value is not None}
    try:
        prepared = prepare_add(config, fields)
        sensor = prepared.sensor
        if verify and sensor.source is not SensorSource.BLE:
            _fail(
                f"--verify is for Bluetooth sensors; test a wired one with: hearth sensors test"
                f" {sensor.id}"
            )
        if sensor.source is SensorSource.BLE and (verify or (verify is None and sensor.bindkey)):
            _verify(sensor, verify_seconds, explicit=bool(verify))
        write_prepared(prepared)
    except SensorError as exc:
        _refused(exc)
    where = f"GPIO {sensor.pin}" if sensor.pin is not None else sensor.address
    typer.echo(f"{config}: added {sensor.id} ({sensor.kind.value} in {sensor.room}, {where})")


def _verify(sensor: SensorConfig, seconds: float, *, explicit: bool) -> None:
    """Hear the sensor and decode an advert (with its bindkey) or refuse to add it."""
    from drivers.ble.scan import BluetoothUnavailable
    from provisioning.sensors import listen_for, verify_hint

    assert sensor.address is not None
    key = None if sensor.bindkey is None else bytes.fromhex(sensor.bindkey)
    typer.echo(f"listening for {sensor.address} (up to {seconds:g} s)...", err=True)
    try:
        heard = asyncio.run(listen_for(sensor.address, key, seconds))
    except BluetoothUnavailable as exc:
        if explicit:
            _fail(
                f"cannot check the sensor: {exc}\nnothing was written; to add it unchecked, use"
                " --no-verify"
            )
        typer.echo(f"warning: bindkey not checked ({exc}); adding it unchecked", err=True)
        return
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if not heard.decoded:
        _fail("\n".join([*verify_hint(heard, seconds, key is not None), "nothing was written"]))
    what = "bindkey checked: decoded" if key else "heard and decoded"
    typer.echo(
        f"{what} an advert from {sensor.address} after {heard.after_s or 0:.1f} s: "
        + _values_text(heard.values),
        err=True,
    )


def _values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{q} {v:g}" for q, v in sorted(values.items())) or "(no values)"


@sensors_app.command("remove")
def remove(
    sensor_id: Annotated[str, typer.Argument(help="The sensor's id.", show_default=False)],
    drop_room_checks: Annotated[
        bool,
        typer.Option(
            "--drop-room-checks",
            help="If it is the last sensor in a room with its own check settings, remove"
            " those settings too (otherwise the command refuses).",
        ),
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Remove a sensor from the config."""
    from provisioning.sensors import SensorError, remove_sensor

    try:
        removed = remove_sensor(config, sensor_id, drop_room_checks=drop_room_checks)
    except SensorError as exc:
        _refused(exc)
    s = removed.sensor
    typer.echo(f"{config}: removed {s.id} ({s.kind.value} in {s.room})")
    for room in removed.dropped_room_checks:
        typer.echo(f"{config}: removed the check settings of room '{room}' (no sensor left)")


@sensors_app.command("test")
def test(
    sensor_id: Annotated[str, typer.Argument(help="The sensor's id.", show_default=False)],
    seconds: Annotated[
        float, typer.Option("--seconds", "-s", min=1, max=600, help="How long to wait.")
    ] = 30.0,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Live test: act on the sensor (or wait for its advert) and see it reach the hub.

    Exit code 0: seen; 1: not seen (with a hint why); 2: bad input."""
    from hub.config import SensorSource
    from provisioning.sensors import SensorError, find_sensor

    cfg = _load_config(config)
    try:
        sensor = find_sensor(cfg, sensor_id, config)
    except SensorError as exc:
        _refused(exc)
    if sensor.source is SensorSource.GPIO:
        seen = _test_gpio(cfg, sensor, seconds)
    elif sensor.source is SensorSource.BLE:
        seen = _test_ble(sensor, seconds)
    else:
        _fail(f"{sensor.id} is a {sensor.source.value} sensor: there is no hardware to test")
    raise typer.Exit(0 if seen else 1)


def _test_gpio(cfg: HubConfig, sensor: SensorConfig, seconds: float) -> bool:
    from drivers.gpio import GpioSpec, GpioUnavailable
    from provisioning.sensors import (
        SensorError,
        describe_wiring,
        gpio_not_seen_hint,
        live_test_gpio,
        open_pin_factory,
    )

    try:
        factory, reason = open_pin_factory(cfg)
    except GpioUnavailable as exc:
        _fail(str(exc))
    try:
        if "mock" in type(factory).__name__.lower():
            typer.echo(f"note: mock pins ({reason}): no real pin is read", err=True)
        spec = GpioSpec.from_config(sensor)
        typer.echo(f"{sensor.id}: {sensor.kind.value} on {describe_wiring(spec)}")
        typer.echo(f"Watching for {seconds:g} s.")
        result = live_test_gpio(sensor, seconds, factory, on_armed=typer.echo)
    except SensorError as exc:
        _refused(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        factory.close()
    if result.seen:
        typer.echo(
            f"seen after {result.after_s or 0:.1f} s: {result.state_after}"
            f" (line {result.level_word})"
        )
        return True
    typer.echo(f"not seen within {seconds:g} s")
    for line in gpio_not_seen_hint(sensor, result):
        typer.echo(f"hint: {line}")
    return False


def _test_ble(sensor: SensorConfig, seconds: float) -> bool:
    from drivers.ble.scan import BluetoothUnavailable
    from provisioning.sensors import listen_for, verify_hint

    assert sensor.address is not None
    key = None if sensor.bindkey is None else bytes.fromhex(sensor.bindkey)
    typer.echo(f"{sensor.id}: listening for {sensor.address} for up to {seconds:g} s...")
    try:
        heard = asyncio.run(listen_for(sensor.address, key, seconds))
    except BluetoothUnavailable as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if not heard.decoded:
        typer.echo(f"not seen within {seconds:g} s")
        for line in verify_hint(heard, seconds, key is not None):
            typer.echo(f"hint: {line}")
        return False
    name = f" {heard.name}" if heard.name else ""
    rssi = "" if heard.rssi is None else f", RSSI {heard.rssi} dBm"
    battery = "" if heard.battery is None else f", battery {heard.battery:.0f} %"
    typer.echo(f"seen after {heard.after_s or 0:.1f} s: {heard.family}{name}{rssi}{battery}")
    typer.echo(f"values: {_values_text(heard.values)}")
    return True
