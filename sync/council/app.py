"""The council's ASGI service: the wire contract of `sync.protocol` over a `CouncilStore`.

Shape of a request, outside in:
- `_Envelope` (plain ASGI, so it also sees bodies as they stream): gives the request an id,
  stamps X-Hearth-Time and X-Hearth-Features on every answer (refusals too), refuses
  a body over the endpoint's limit from Content-Length and again while it is read (a lying
  or absent Content-Length changes nothing), reads the rest of a body an early answer left
  unread (so the answer is not lost to a TCP reset), and turns an unexpected exception into
  a bare 500 that names the request id, logged with the traceback, never the internals.
- FastAPI routes (`hub_routes`, `user_routes`): the store's blocking calls run in the
  threadpool, so the event loop keeps serving while a database call waits.
- Store exceptions map to the contract's status codes here, once, not in every endpoint.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from sync.council import hub_routes, user_routes
from sync.council.store import (
    Conflict,
    CouncilStore,
    EnrollmentRefused,
    KeyAlreadyEnrolled,
    NotFound,
    StoreError,
)
from sync.protocol import (
    API_VERSION,
    COUNCIL_FEATURES,
    HEADER_COUNCIL_FEATURES,
    HEADER_COUNCIL_TIME,
    MAX_UPLOAD_BYTES,
    UPLOAD_PATH,
)

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 256 * 1024  # admin and enrollment bodies are small; a hub config is the largest
# How much of an over-limit body is still read (and dropped) so its client hears the 413, and
# for how long at most; see _Envelope.
DRAIN_EXTRA_BYTES = 4 * MAX_UPLOAD_BYTES
DRAIN_TIMEOUT_S = 10.0
HEADER_REQUEST_ID = "X-Request-ID"


class BodyTooLarge(HTTPException):
    """Raised from `receive` as the body grows past the limit. An HTTPException on purpose:
    FastAPI's own body parsing re-raises those untouched (anything else becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")


def body_limit(path: str) -> int:
    return MAX_UPLOAD_BYTES if path == UPLOAD_PATH else MAX_JSON_BYTES


def council_time() -> str:
    return f"{time.time():.3f}"


class _Envelope:
    """What every HTTP exchange gets, whatever the endpoint (see the module docstring).

    The body limit is here, not Starlette's RequestBodyLimitMiddleware, because that one
    answers some refusals in plain text (the contract says JSON) and leaves the connection
    open, so uvicorn goes on reading, and discarding, the rest of an oversized body.

    An answer given before the request body is read (a 413 from Content-Length, a 415, a
    404...) first reads the rest of the body, bounded: a server that closes a socket with
    request bytes still unread makes the kernel send a TCP reset, which destroys the answer
    on its way to the client. Within the limit, the body is read whole and the connection
    stays usable. Past it, up to DRAIN_EXTRA_BYTES more are read (so an ordinary
    over-sized upload still hears its 413) and the connection is closed; a body declared
    larger than that, or one that waits for 100-continue, is answered at once.
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        limit = body_limit(scope["path"])
        headers_in = Headers(scope=scope)
        declared_text = headers_in.get("content-length", "")
        declared = int(declared_text) if declared_text.isdigit() else None
        waits_for_continue = headers_in.get("expect", "").lower() == "100-continue"
        started = False
        body_done = "transfer-encoding" not in headers_in and declared in (None, 0)
        received = 0
        asked = False  # whether anything called receive (uvicorn sends 100 Continue then)

        async def drain() -> None:
            """Read and drop the rest of the body, within the bounds in the class doc."""
            nonlocal received, body_done
            budget = limit + DRAIN_EXTRA_BYTES
            if (declared is not None and declared > budget) or (waits_for_continue and not asked):
                return
            with anyio.move_on_after(DRAIN_TIMEOUT_S):
                while not body_done and received <= budget:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client left
                    received += len(message.get("body", b""))
                    body_done = not message.get("more_body", False)

        async def stamped_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    await drain()
                headers = MutableHeaders(scope=message)
                headers[HEADER_COUNCIL_TIME] = council_time()
                if self.state.features:
                    headers[HEADER_COUNCIL_FEATURES] = self.state.features
                headers[HEADER_REQUEST_ID] = request_id
                if not body_done or received > limit:
                    headers["Connection"] = "close"
            await send(message)

        if declared is not None and declared > limit:
            await _send_json(stamped_send, 413, f"the body is larger than {limit} bytes")
            return

        async def counted_receive() -> Message:
            nonlocal received, body_done, asked
            asked = True
            message = await receive()
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counted_receive, stamped_send)
        except ClientDisconnect:
            # A hub on a flaky link that drops mid-upload: nothing was stored (the batch is
            # read whole before anything is verified), it will send again; not our failure.
            log.info("client went away mid-request [request %s]", request_id)
        except Exception:
            self.state.unexpected_errors += 1
            log.exception(
                "unexpected error in %s %s [request %s]", scope["method"], scope["path"], request_id
            )
            if not started:
                await _send_json(
                    stamped_send, 500, f"internal error; quote request id {request_id}"
                )


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, exc: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """The contract's error shape, one string, instead of FastAPI's list of dicts."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        reason = error.get("ctx", {}).get("error")
        message = error.get("msg", "invalid") + (f" ({reason})" if reason else "")
        parts.append(f"{where}: {message}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


async def _bad_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI answers 400 to a body it cannot parse at all; for the contract every
    malformed request is a 422. JSON bodies never get here (StrictJSONRoute turns every
    way json.loads fails into FastAPI's own 422), so the detail is the exception's own."""
    detail = exc.detail if isinstance(exc, HTTPException) else "the request is malformed"
    return JSONResponse({"detail": f"body: {detail}"}, status_code=422)


def _method_not_allowed(routes: list[BaseRoute]) -> ExceptionHandler:
    """Starlette's 405 lists the methods of the first route on the path only; a path with
    GET and POST routes must say both in Allow."""
    api_routes = [r for r in routes if isinstance(r, APIRoute)]

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        methods: set[str] = set()
        for route in api_routes:
            if route.path_regex.match(request.url.path):
                methods |= route.methods or set()
        headers = {"Allow": ", ".join(sorted(methods))} if methods else None
        return _error(405, exc, headers)

    return handler


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    # Most specific first: they are all StoreErrors.
    if isinstance(exc, EnrollmentRefused):
        return _error(403, exc)
    if isinstance(exc, NotFound):
        return _error(404, exc)
    if isinstance(exc, Conflict | KeyAlreadyEnrolled):
        return _error(409, exc)
    return _error(422, exc)  # a record or value the store refuses: the client's data


def create_app(
    store: CouncilStore,
    *,
    max_skew_s: float = 300.0,
    features: Sequence[str] = COUNCIL_FEATURES,
) -> FastAPI:
    """The council service over `store`; `max_skew_s` bounds a signed request's age;
    `features` are announced on every answer (tests pass fewer to play an older council)."""
    app = FastAPI(
        title="Hearth council",
        version=API_VERSION,
        description=(
            "Hubs enroll with a one-time code and upload signed batches; the central team "
            "reads events and the fleet with bearer tokens. Every answer carries "
            f"{HEADER_COUNCIL_TIME} (the council's Unix time)."
        ),
    )
    app.state.store = store
    app.state.max_skew_s = max_skew_s
    app.state.features = ",".join(features)
    app.state.unexpected_errors = 0  # tests check client faults never reach the 500 path
    app.add_middleware(_Envelope, state=app.state)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(400, _bad_request)
    app.add_exception_handler(
        405, _method_not_allowed([*hub_routes.router.routes, *user_routes.router.routes])
    )
    app.include_router(hub_routes.router)
    app.include_router(user_routes.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _document_council_time(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document_council_time(schema: dict[str, Any]) -> None:
    """Every answer carries X-Hearth-Time: say so on every response in the schema."""
    header = {
        "description": "The council's Unix time when it answered (seconds, float)",
        "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})[HEADER_COUNCIL_TIME] = header
