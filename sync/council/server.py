"""Run the council service under uvicorn: `hearth council serve`.

Loopback by default: a council that should be reachable from hubs sits behind a TLS
terminating proxy (or gets `--host` explicitly), never exposed by accident.

The service keeps no state of its own (it is all in the database, and ingests are serialised
there), so `workers` > 1 runs that many processes on one socket: decoding, signature checks
and validation, most of the CPU per event, then use every core of the council host.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from sync.council.app import create_app
from sync.council.store import CouncilStore

DB_ENV = "HEARTH_COUNCIL_DB"


def app_from_environment() -> FastAPI:
    """The app factory each worker process calls (uvicorn imports it by name)."""
    return create_app(CouncilStore.open(os.environ[DB_ENV]))


def serve(db_url: str, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Open (and migrate) the store at `db_url` and serve until interrupted."""
    store = CouncilStore.open(db_url)  # migrations run once, here, before any worker starts
    app: FastAPI | str = create_app(store)
    if workers > 1:
        store.close()
        os.environ[DB_ENV] = db_url
        app = "sync.council.server:app_from_environment"
    try:
        uvicorn.run(
            app,
            factory=workers > 1,
            workers=workers,
            host=host,
            port=port,
            # Forwarded-for headers are only trusted when an operator configures a proxy.
            proxy_headers=False,
            server_header=False,
            log_level="info",
        )
    finally:
        store.close()  # a no-op when the workers had their own
