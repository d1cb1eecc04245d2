"""`hearth enroll` and `hearth sync now`: the installer's side of the council link.

A thin layer over sync.enroll and sync.uploader. Known failures print one clear line and exit
2 (bad input or setup) or 1 (`sync now` could not empty the outbox); never a traceback.
Heavy imports happen inside the commands so `hearth --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioning.exits import fail as _fail
from provisioning.exits import load_existing_config
from provisioning.options import DEFAULT_CONFIG, ConfigOption
from sync.enroll import enrolled_config

if TYPE_CHECKING:
    import httpx

    from hub.config import HubConfig
    from hub.identity import HubIdentity
    from hub.store import Store
    from sync.client import UploadClock
    from sync.uploader import DrainReport, UploaderStatus

sync_app = typer.Typer(help="Upload to the council.", no_args_is_help=True)


def _checked_council_url(url: str) -> str:
    """The URL under the config's own rules, before the code is spent on a bad address."""
    from pydantic import ValidationError

    from hub.config import CouncilSection

    try:
        return str(CouncilSection.model_validate({"url": url.rstrip("/")}).url)
    except ValidationError as exc:
        _fail("--council: " + "; ".join(str(e["msg"]) for e in exc.errors()))


def enroll(
    council: Annotated[
        str,
        typer.Option("--council", help="The council's address, e.g. https://council.example.org"),
    ],
    code: Annotated[
        str, typer.Option("--code", help="The one-time enrollment code (XXXX-XXXX-XXXX).")
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    ca_bundle: Annotated[
        Path | None,
        typer.Option("--ca-bundle", help="The council's own CA certificate (PEM), if it has one."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Enroll again as a new hub, with a new key."),
    ] = False,
) -> None:
    """Enroll this hub with the council: make its key, register it, store its id and config."""
    from hub.config import ConfigError, write_config
    from hub.identity import KeyFileError
    from sync.enroll import RECORD_FILENAME, EnrollError
    from sync.enroll import enroll as run_enroll

    cfg = load_existing_config(config)
    url = _checked_council_url(council)
    bundle = ca_bundle.absolute() if ca_bundle is not None else cfg.council.ca_bundle
    if bundle is not None and not bundle.is_file():
        _fail(f"--ca-bundle: no file at {bundle}")
    try:
        answer = run_enroll(
            url,
            code,
            cfg.hub.data_dir,
            name=cfg.hub.name,
            ca_bundle=bundle,
            hub_id=cfg.hub.id,
            force=force,
            timeout_s=cfg.council.timeout_s,
        )
    except (EnrollError, KeyFileError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the hub's key in {cfg.hub.data_dir}: {exc.strerror or exc}")
    updated, problems = enrolled_config(cfg, answer, url, bundle)
    record = cfg.hub.data_dir / RECORD_FILENAME
    try:
        write_config(config, updated)
    except (ConfigError, OSError) as exc:
        reason = str(exc) if isinstance(exc, ConfigError) else (exc.strerror or str(exc))
        _fail(
            f"enrolled as {answer.hub_id}, but the config could not be written: {reason}\n"
            f"fix that and run the same hearth enroll again: it finishes from {record}"
            " without using the code again"
        )
    for problem in problems:
        typer.echo(f"hearth: warning: the council's settings were not applied: {problem}", err=True)
    applied = "" if problems else f", council config version {answer.config_version}"
    typer.echo(f"enrolled as {answer.hub_id} with {url}{applied}; wrote {config}")


async def run_sync_now(
    cfg: HubConfig,
    store: Store,
    identity: HubIdentity,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: UploadClock | None = None,
) -> tuple[DrainReport, UploaderStatus]:
    """Upload until the outbox is empty or an attempt fails; the same Uploader as the hub
    service runs, so `hearth sync now` shows exactly what the service would do."""
    from sync.client import make_http_client
    from sync.health import HealthReporter
    from sync.uploader import Uploader, UploadSettings

    assert cfg.hub.id is not None
    settings = UploadSettings.from_config(cfg)
    health = HealthReporter(cfg.hub.data_dir, service=False)
    async with make_http_client(
        ca_bundle=settings.ca_bundle, timeout_s=settings.timeout_s, transport=transport
    ) as http:
        uploader = Uploader(
            store,
            identity,
            cfg.hub.id,
            settings,
            http,
            health=health,
            clock=clock,
            config_version=cfg.council.config_version,
        )
        report = await uploader.drain()
        return report, uploader.status()


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def describe(report: DrainReport, status: UploaderStatus) -> list[str]:
    """The lines `hearth sync now` prints."""
    lines = [
        f"sent {_n(report.events, 'event')} in {_n(report.batches, 'batch', 'batches')},"
        f" {_kib(report.bytes)} in {_n(report.requests, 'request')}, {report.duration_s:.1f} s"
    ]
    if report.ok and report.remaining:
        lines.append(
            f"caught up; {_n(report.remaining, 'event')} committed since then go with the"
            " service's next upload"
        )
    elif report.ok:
        lines.append("outbox empty: everything is at the council")
    else:
        lines.append(f"stopped: {report.error or 'the outbox is not empty'}")
        lines.append(
            f"{_n(report.remaining, 'event')} still waiting; the hub service keeps trying on"
            " its own"
        )
    offset = status.clock_offset_s
    if offset is not None and abs(offset) >= 60:
        ahead = "behind" if offset > 0 else "ahead of"
        lines.append(f"note: this hub's clock is {abs(offset):.0f} s {ahead} the council's")
    return lines


@sync_app.command("now")
def sync_now(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Upload everything waiting now and report it (exit 1 if the outbox is not emptied)."""
    from dataclasses import asdict

    from hub.identity import HubIdentity, KeyFileError
    from hub.runtime import store_limits
    from hub.store import Store, StoreOpenError

    cfg = load_existing_config(config)
    if cfg.hub.id is None or cfg.council.url is None:
        _fail(f"this hub is not enrolled (no hub id or council url in {config}): run hearth enroll")
    if not cfg.store_path.exists():
        typer.echo(f"nothing to send: no buffer at {cfg.store_path} (the hub has not run yet)")
        return
    try:
        identity = HubIdentity.load(cfg.hub.data_dir)
    except KeyFileError as exc:
        _fail(str(exc))
    try:
        store = Store.open(cfg.store_path, limits=store_limits(cfg))
    except StoreOpenError as exc:
        _fail(f"{exc}; the buffer was left untouched")
    try:
        report, status = asyncio.run(run_sync_now(cfg, store, identity))
    except ValueError as exc:  # an unusable CA bundle
        _fail(str(exc))
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"report": asdict(report), "status": status.as_dict()}, indent=2))
    else:
        for line in describe(report, status):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
