"""The real council service for tests: the real app under a real uvicorn on 127.0.0.1.

Why not Starlette's TestClient: the contract is about what goes over HTTP (Content-Length,
chunked bodies, headers, connection handling), and only a real server shows it.

Use:

    from tests.council_server import council_db_url, running_council  # fixture + helper

    def test_x(council_db_url: str) -> None:
        with running_council(council_db_url) as council:
            httpx.get(council.url + "/v1/health")
            council.client(council.admin_token).get("/v1/fleet")

The server listens on a socket bound to port 0 before it starts (the kernel picks a free
port, so there is no pick-then-bind race), and the helper waits on the server's own start-up
(an event set after uvicorn's `startup`), never on a sleep loop.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hub.events import Event, StoredEvent
from hub.identity import HubIdentity
from sync.codec import CONTENT_TYPE, encode_batch
from sync.council.store import CouncilStore
from sync.protocol import ENROLL_PATH, UPLOAD_PATH, EnrollResponse
from sync.signing import sign_request

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class _Server(uvicorn.Server):
    """uvicorn.Server that signals start-up (or its failure) on a threading.Event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()  # also on failure, so the waiter wakes and checks `started`


@dataclass
class CouncilServer:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    store: CouncilStore
    admin_token: str
    app: Any  # the FastAPI app (its `state` holds counters tests may read)
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on this server, with a bearer token when given; closed at exit."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)
        self._clients.append(client)
        return client

    def enroll(self, directory: Path, name: str | None = None) -> tuple[str, HubIdentity]:
        """Enroll a new hub over HTTP with a fresh code: (hub id, its identity, whose key
        lives in `directory`)."""
        identity = HubIdentity.generate(directory)
        code = self.store.create_code(3600.0, note="test").code
        answer = httpx.post(
            self.url + ENROLL_PATH,
            json={"code": code, "public_key": identity.public_key_b64(), "name": name},
            timeout=30.0,
        )
        assert answer.status_code == 201, answer.text
        return EnrollResponse.model_validate(answer.json()).hub_id, identity

    def enroll_hub(self, directory: Path, name: str | None = None) -> SignedHub:
        """`enroll`, answered as a SignedHub that can post hand-made signed requests."""
        hub_id, identity = self.enroll(directory, name)
        return SignedHub(self.url, hub_id, identity)


@dataclass(frozen=True)
class SignedHub:
    """An enrolled hub as tests drive it: builds, signs and posts batches by hand (the real
    uploader is tested elsewhere), so each test can break exactly one thing."""

    url: str
    hub_id: str
    identity: HubIdentity

    def batch(
        self,
        events: Sequence[tuple[int, Event]],
        health: Mapping[str, Any] | None = None,
        hub_id: str | None = None,
    ) -> bytes:
        stored = [StoredEvent(seq, event) for seq, event in events]
        return encode_batch(hub_id or self.hub_id, stored, dict(health or {}))

    def sign(
        self,
        body: bytes,
        *,
        method: str = "POST",
        target: str = UPLOAD_PATH,
        now: float | None = None,
        hub_id: str | None = None,
    ) -> dict[str, str]:
        when = time.time() if now is None else now
        return sign_request(self.identity, hub_id or self.hub_id, method, target, body, when)

    def post(
        self, body: bytes, headers: Mapping[str, str] | None = None, target: str = UPLOAD_PATH
    ) -> httpx.Response:
        """POST `body` signed as is (or with the given headers instead)."""
        sent = dict(self.sign(body, target=target) if headers is None else headers)
        sent.setdefault("Content-Type", CONTENT_TYPE)
        return httpx.post(self.url + target, content=body, headers=sent, timeout=30.0)

    def get(self, target: str, now: float | None = None) -> httpx.Response:
        headers = self.sign(b"", method="GET", target=target, now=now)
        return httpx.get(self.url + target, headers=headers, timeout=30.0)


def _loopback_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that name TCP, and
    # without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_council(db_url: str, **app_kwargs: Any) -> Iterator[CouncilServer]:
    """Open the store at `db_url`, serve `create_app(store, **app_kwargs)` on 127.0.0.1 and a
    free port in a background thread, and stop it (and close the store) at exit."""
    from sync.council.app import create_app

    store = CouncilStore.open(db_url)
    sock = _loopback_socket()
    try:
        app = create_app(store, **app_kwargs)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
        )
        server = _Server(config)

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                server.ready.set()  # a failure before start-up must wake the waiter too

        thread = threading.Thread(target=serve, name="council-uvicorn", daemon=True)
        thread.start()
        try:
            if not server.ready.wait(START_TIMEOUT_S) or not server.started:
                raise RuntimeError("the council server did not start")
            port = sock.getsockname()[1]
            token = store.create_token("admin", "test-admin").token
            council = CouncilServer(f"http://127.0.0.1:{port}", store, token, app)
            try:
                yield council
            finally:
                for client in council._clients:
                    client.close()
        finally:
            server.should_exit = True
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():  # pragma: no cover - a hung server is a test failure
                raise RuntimeError("the council server did not stop")
    finally:
        sock.close()
        store.close()


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (tests.postgres), dropped at
    exit: each council starts from nothing, like a SQLite file in tmp_path."""
    import sqlalchemy as sa

    base = sa.make_url(server_url)
    name = f"c_{secrets.token_hex(6)}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# `params=` of a fixture that runs its tests once per engine (PostgreSQL required under CI).
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.ci_required)]


@contextmanager
def engine_database(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """A fresh, empty council database on the engine `request.param` names (see ENGINES): a
    SQLite file in `directory`, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{directory / 'council.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=ENGINES)
def council_db_on_each_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty council database, once as a SQLite file and once as a new database on
    the test PostgreSQL server: a test using it runs on both engines."""
    with engine_database(request, tmp_path) as url:
        yield url


@pytest.fixture
def council_db_url(tmp_path: Path) -> str:
    """A SQLite council database in the test's temp dir (created on first open)."""
    return f"sqlite:///{tmp_path / 'council.db'}"
