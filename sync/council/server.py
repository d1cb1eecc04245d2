"""Run the council service under uvicorn: `hearth council serve`.

Loopback by default: a council that should be reachable from hubs sits behind a TLS
terminating proxy (or gets `--host` explicitly), never exposed by accident.
"""

from __future__ import annotations

import uvicorn

from sync.council.app import create_app
from sync.council.store import CouncilStore


def serve(db_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Open (and migrate) the store at `db_url` and serve until interrupted."""
    store = CouncilStore.open(db_url)
    try:
        uvicorn.run(
            create_app(store),
            host=host,
            port=port,
            # Forwarded-for headers are only trusted when an operator configures a proxy.
            proxy_headers=False,
            server_header=False,
            log_level="info",
        )
    finally:
        store.close()
