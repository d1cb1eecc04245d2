"""`hearth council`: run the council service and administer it on the council host.

Works on the database directly (whoever can read the database owns the council anyway), so
an admin can make the first admin token before the service has any. Commands that make a
secret print ONLY the secret on stdout, so `CODE=$(hearth council code create)` works;
everything else (ids, expiry, hints) goes to stderr. Bad input: a clear line, exit code 2.
Heavy imports happen inside the commands so `hearth --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from provisioning.exits import fail as _fail

if TYPE_CHECKING:
    from sync.council.store import CouncilEvent, CouncilStore

DEFAULT_DB = "sqlite:///council.db"

council_app = typer.Typer(
    help="Run the council service and administer it (codes, tokens, exports).",
    no_args_is_help=True,
)
code_app = typer.Typer(help="One-time enrollment codes for new hubs.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for the central team.", no_args_is_help=True)
hub_app = typer.Typer(help="Enrolled hubs.", no_args_is_help=True)
hub_config_app = typer.Typer(help="Council-managed hub config.", no_args_is_help=True)
council_app.add_typer(code_app, name="code")
council_app.add_typer(token_app, name="token")
council_app.add_typer(hub_app, name="hub")
hub_app.add_typer(hub_config_app, name="config")

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="HEARTH_COUNCIL_DB",
        help="Council database: sqlite:///path or postgresql://user:pass@host/db.",
    ),
]


class RoleChoice(StrEnum):
    reader = "reader"
    admin = "admin"


class KindChoice(StrEnum):
    reading = "reading"
    alert = "alert"
    system = "system"


class FormatChoice(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _open(db: str) -> CouncilStore:
    """The store, or a clear line: an unreachable server or a bad URL is not a traceback."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from sync.council.store import CouncilStore

    try:
        return CouncilStore.open(db)
    except (ValueError, ArgumentError) as exc:
        _fail(f"--db {db!r}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"cannot open the council database: {type(exc).__name__}: {exc}".splitlines()[0])


@contextmanager
def _store(db: str) -> Iterator[CouncilStore]:
    store = _open(db)
    try:
        yield store
    finally:
        store.close()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


# -- serve -----------------------------------------------------------------------------------


@council_app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Address to listen on; put a TLS proxy in front for hubs.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port (0: any free port, logged).")
    ] = 8080,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving one socket (one per core).")
    ] = 1,
) -> None:
    """Run the council service (migrates the database first)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from sync.council.server import serve as run_server

    try:
        run_server(db, host=host, port=port, workers=workers)
    except (ValueError, ArgumentError) as exc:
        _fail(f"--db {db!r}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"cannot open the council database: {type(exc).__name__}".splitlines()[0])


# -- enrollment codes ------------------------------------------------------------------------


@code_app.command("create")
def code_create(
    db: DbOption = DEFAULT_DB,
    expires: Annotated[
        str, typer.Option("--expires", help="How long the code stays valid: 30m, 24h, 7d.")
    ] = "24h",
    note: Annotated[
        str | None, typer.Option("--note", help="Who or where the code is for.")
    ] = None,
) -> None:
    """Make a one-time enrollment code and print only the code."""
    from hub.durations import parse_duration
    from sync.council.api import MAX_CODE_EXPIRY_S, MIN_CODE_EXPIRY_S
    from sync.council.store import MAX_TEXT

    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        _fail(f"--expires: {exc}")
    if not MIN_CODE_EXPIRY_S <= seconds <= MAX_CODE_EXPIRY_S:
        _fail(f"--expires {expires}: must be between 1m and {MAX_CODE_EXPIRY_S // 86400}d")
    if note is not None and len(note) > MAX_TEXT:
        _fail(f"--note: at most {MAX_TEXT} characters")
    with _store(db) as store:
        new = store.create_code(seconds, note)
    typer.echo(new.code)
    typer.echo(f"enrollment code #{new.id}, valid until {_when(new.expires_at)}", err=True)


@code_app.command("list")
def code_list(db: DbOption = DEFAULT_DB) -> None:
    """List enrollment codes (never the codes themselves) and their state."""
    with _store(db) as store:
        codes = store.list_codes()
    rows = [
        [
            str(c.id),
            c.state,
            _when(c.created_at),
            _when(c.expires_at),
            c.hub_id or "-",
            c.note or "",
        ]
        for c in codes
    ]
    _print_table("Enrollment codes", ["id", "state", "created", "expires", "hub", "note"], rows)


@code_app.command("revoke")
def code_revoke(
    code_id: Annotated[int, typer.Argument(help="The code's id (see `code list`).")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Revoke an unused enrollment code."""
    from sync.council.store import Conflict, NotFound

    with _store(db) as store:
        try:
            store.revoke_code(code_id)
        except (NotFound, Conflict) as exc:
            _fail(f"code #{code_id}: {exc}")
    typer.echo(f"enrollment code #{code_id} revoked", err=True)


# -- tokens ----------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    role: Annotated[RoleChoice, typer.Option("--role", help="reader or admin.")],
    db: DbOption = DEFAULT_DB,
    name: Annotated[
        str | None, typer.Option("--name", help="Whose token this is (default: role and date).")
    ] = None,
) -> None:
    """Make a bearer token and print only the token."""
    from sync.council.store import MAX_TEXT

    label = name if name is not None else f"{role.value} {datetime.now(UTC):%Y-%m-%d %H:%M}"
    if not 1 <= len(label) <= MAX_TEXT:
        _fail(f"--name: 1 to {MAX_TEXT} characters")
    with _store(db) as store:
        new = store.create_token(role.value, label)
    typer.echo(new.token)
    typer.echo(f"{new.role} token #{new.id} ({new.name}); it is shown only now", err=True)


@token_app.command("list")
def token_list(db: DbOption = DEFAULT_DB) -> None:
    """List tokens (never the secrets)."""
    with _store(db) as store:
        tokens = store.list_tokens()
    rows = [
        [str(t.id), t.role, t.name, _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at)]
        for t in tokens
    ]
    _print_table("Tokens", ["id", "role", "name", "created", "last used", "revoked"], rows)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `token list`).")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Revoke a token; requests with it are refused from now on."""
    from sync.council.store import NotFound

    with _store(db) as store:
        try:
            store.revoke_token(token_id)
        except NotFound as exc:
            _fail(f"token #{token_id}: {exc}")
    typer.echo(f"token #{token_id} revoked", err=True)


# -- hub config ------------------------------------------------------------------------------


@hub_config_app.command("set")
def hub_config_set(
    hub_id: Annotated[str, typer.Argument(help="The hub's id.")],
    file: Annotated[Path, typer.Argument(help="A TOML file of council-managed sections.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Replace a hub's council-managed config; the hub picks it up at its next upload."""
    import tomllib

    from sync.council.store import NotFound, StoreError

    try:
        config = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"{file}: cannot read: {exc.strerror or exc}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        _fail(f"{file}: not valid TOML: {exc}")
    not_tables = [key for key, value in config.items() if not isinstance(value, dict)]
    if not_tables:
        _fail(f"{file}: top-level keys must be [sections]: {', '.join(not_tables)}")
    with _store(db) as store:
        try:
            hub = store.set_hub_config(hub_id, config)
        except NotFound as exc:
            _fail(f"hub {hub_id}: {exc}")
        except StoreError as exc:
            # TOML has what JSON lacks (dates, times): the store names what it refused.
            _fail(f"{file}: cannot be a hub config: {exc}")
    typer.echo(f"hub {hub_id}: config version {hub.config_version}", err=True)


# -- export ----------------------------------------------------------------------------------


def _parse_since(since: str | None) -> tuple[int, float | None]:
    """(cursor to start after, wall-time lower bound): digits are a cursor, else a date."""
    from sync.council.api import parse_time

    if since is None:
        return 0, None
    text = since.strip()
    if text.isdigit():
        return int(text), None
    try:
        # Numbers are cursors here, so Unix seconds (which the pull API takes) are not dates.
        if text.lstrip("+-").replace(".", "", 1).isdigit():
            raise ValueError(text)
        return 0, parse_time(text)
    except ValueError:
        _fail(
            f"--since {since!r}: give a cursor (the number a previous export printed) "
            "or a date (2024-05-01, 2024-05-01T08:00:00+01:00; UTC without an offset)"
        )


@council_app.command()
def export(
    fmt: Annotated[FormatChoice, typer.Option("--format", help="csv or jsonl.")],
    db: DbOption = DEFAULT_DB,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="A cursor from a previous export (continue after it) or a date (events "
            "from then on, by the hub's clock).",
        ),
    ] = None,
    hub: Annotated[str | None, typer.Option("--hub", help="Only this hub.")] = None,
    kind: Annotated[KindChoice | None, typer.Option("--kind", help="Only this kind.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Stream events in ingest order as CSV or JSON lines, in constant memory."""
    after, since_ts = _parse_since(since)
    kind_value = None if kind is None else kind.value
    with _store(db) as store:
        pages = _Pages(store, after, hub, kind_value, since_ts)
        if output is None:
            count = _write(pages, sys.stdout, fmt)
        else:
            try:
                with output.open("w", encoding="utf-8", newline="") as stream:
                    count = _write(pages, stream, fmt)
            except OSError as exc:
                _fail(f"{output}: cannot write: {exc.strerror or exc}")
    typer.echo(f"exported {count} events; continue with:", err=True)
    typer.echo(f"  {_resume_command(fmt, pages.next_cursor, hub, kind_value)}", err=True)
    if since_ts is not None:
        typer.echo(
            f"  (the cursor replaces --since {since}: it goes on after the last event this "
            "export scanned, whatever the date of what arrives later)",
            err=True,
        )


def _resume_command(fmt: FormatChoice, cursor: int, hub: str | None, kind: str | None) -> str:
    """The export that continues this one: same format and filters, the cursor as --since
    (--db and --output are left out: a password does not belong in a log)."""
    import shlex

    words = ["hearth", "council", "export", "--format", fmt.value, "--since", str(cursor)]
    if hub is not None:
        words += ["--hub", hub]
    if kind is not None:
        words += ["--kind", kind]
    return shlex.join(words)


class _Pages:
    """The matching events page by page (one page in memory), keeping the store's
    `next_cursor`: with filters it is past the last event exported (rows that did not match
    were scanned too), so resuming from it never rescans them."""

    def __init__(
        self,
        store: CouncilStore,
        after: int,
        hub: str | None,
        kind: str | None,
        since: float | None,
        page: int = 5000,
    ) -> None:
        self._query = (store, hub, kind, since, page)
        self.next_cursor = after

    def __iter__(self) -> Iterator[CouncilEvent]:
        store, hub, kind, since, page = self._query
        while True:
            got = store.events_page(self.next_cursor, page, hub_id=hub, kind=kind, since=since)
            yield from got.events
            self.next_cursor = got.next_cursor
            if not got.more:
                return


def _write(events: Iterable[CouncilEvent], stream: TextIO, fmt: FormatChoice) -> int:
    """Write each event as it comes (nothing is collected); the count written."""
    import csv
    import json

    from sync.council.api import EVENT_FIELDS, event_record

    count: int = 0
    writer = csv.writer(stream) if fmt is FormatChoice.csv else None
    if writer is not None:
        writer.writerow(EVENT_FIELDS)
    with _progress() as advance:
        for event in events:
            record = event_record(event)
            if writer is not None:
                writer.writerow([_csv_cell(record[field]) for field in EVENT_FIELDS])
            else:
                stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
                stream.write("\n")
            count += 1
            if count % _PROGRESS_STEP == 0:
                advance(_PROGRESS_STEP)
        advance(count % _PROGRESS_STEP)
    return count


def _csv_cell(value: object) -> object:
    """JSON spellings for what CSV has none of: booleans, nulls, the nested body."""
    import json

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


_PROGRESS_STEP = 1000  # the bar is advanced in steps: a lock per event would cost more


@contextmanager
def _progress() -> Iterator[Callable[[int], None]]:
    """A live count on stderr when it is a terminal; nothing otherwise (logs, pipes, cron)."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("exporting: {task.completed:,.0f} events"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        yield lambda n: progress.advance(task, n)
