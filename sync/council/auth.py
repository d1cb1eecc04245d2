"""Who is calling: central-team users by bearer token and role, hubs by request signature.

Two kinds of caller, never mixed: a token never writes hub data, and a hub signature never
reads the pull API. Role checks are dependencies, so each endpoint names the role it needs in
its signature and the OpenAPI schema shows the security scheme it takes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sync.council.api import Role
from sync.council.db import now_or
from sync.council.store import CouncilStore, Hub, TokenInfo
from sync.signing import (
    HEADER_CONTENT_SHA256,
    HEADER_HUB,
    HEADER_SIGNATURE,
    HEADER_TARGET,
    HEADER_TIMESTAMP,
    SignatureError,
    hub_id_from_headers,
    verify_request,
)

_RANK: dict[str, int] = {"reader": 1, "admin": 2}
HUB_SCHEME = "Hearth-Signature"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerToken",
    description="A council user token (`hearth council token create`); roles: reader < admin.",
)

# OpenAPI has no scheme for "an Ed25519 signature over several headers", so the signature is
# declared as an API-key header and the description names the rest. Verification itself is
# `verify_hub`, not this object.
hub_signature_scheme = APIKeyHeader(
    name=HEADER_SIGNATURE,
    auto_error=False,
    scheme_name="HubSignature",
    description=(
        "Hub requests are signed with the hub's enrolled Ed25519 key (see sync.signing). "
        f"Headers: {HEADER_HUB} (hub id), {HEADER_TIMESTAMP} (Unix seconds, within the "
        f"council's skew window), {HEADER_CONTENT_SHA256} (hex SHA-256 of the body as sent), "
        f"{HEADER_TARGET} ('METHOD /path?query' as signed), {HEADER_SIGNATURE} (base64 "
        "Ed25519 signature over 'hearth-request-v1', hub id, method, raw path with query, "
        "timestamp and body digest, joined by newlines)."
    ),
)


def unauthorized(detail: str, scheme: str = "Bearer") -> HTTPException:
    """401 with the challenge HTTP requires; hubs get their own scheme name."""
    return HTTPException(401, detail, headers={"WWW-Authenticate": scheme})


def store_of(request: Request) -> CouncilStore:
    store: CouncilStore = request.app.state.store
    return store


def require(role: Role) -> Callable[..., TokenInfo]:
    """A dependency that admits a valid, unrevoked token of at least `role`.

    Plain `def`: FastAPI runs it in its threadpool, so the token lookup (a database read and
    a last-used write) never blocks the event loop.
    """

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> TokenInfo:
        if credentials is None:
            raise unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        info = store_of(request).authenticate(credentials.credentials)
        if info is None:
            raise unauthorized("the token is unknown or revoked")
        if _RANK.get(info.role, 0) < _RANK[role]:
            raise HTTPException(403, f"this needs the {role} role; the token is {info.role}")
        return info

    dependency.__name__ = f"require_{role}"
    return dependency


def raw_target(scope: Mapping[str, Any]) -> str:
    """The path and query exactly as on the wire, which is what the hub signed.

    Latin-1 maps every byte to one character, so a non-ASCII byte reaches the verifier
    (which refuses it) instead of being dropped or failing to decode here.
    """
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def verify_hub(
    store: CouncilStore,
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    *,
    max_skew_s: float,
    now: float | None = None,
) -> Hub:
    """The enrolled hub that signed this request, or HTTPException 401 saying why not.

    Blocking (a database read and an Ed25519 verification): call it from the threadpool.
    """
    when = now_or(now)
    try:
        hub_id = hub_id_from_headers(headers)
    except SignatureError as exc:
        raise unauthorized(f"hub signature: {exc.detail}", HUB_SCHEME) from None
    hub = store.get_hub(hub_id)
    if hub is None:
        raise unauthorized(f"unknown hub {hub_id!r}: enroll it first", HUB_SCHEME)
    key = base64.b64encode(hub.public_key).decode("ascii")
    try:
        verify_request(key, headers, method, target, body, when, max_skew_s=max_skew_s)
    except SignatureError as exc:
        raise unauthorized(
            f"hub signature ({exc.reason.value}): {exc.detail}", HUB_SCHEME
        ) from None
    return hub
