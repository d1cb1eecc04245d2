"""Endpoints hubs call: enroll (with a one-time code), upload and config (signed).

Upload checks run cheapest first, so junk costs little: size (in the envelope), content
headers, then the signature (one database read, one Ed25519 verification), then decoding,
then the store. Nothing is written before every check has passed.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from sync.codec import CONTENT_TYPE, BatchError, decode_batch
from sync.council.auth import hub_signature_scheme, raw_target, store_of, verify_hub
from sync.council.records import cleaned
from sync.council.responses import errors
from sync.council.store import CouncilStore
from sync.council.strict_json import StrictJSONRoute
from sync.protocol import (
    CONFIG_PATH,
    ENROLL_PATH,
    HEALTH_PATH,
    MAX_BATCH_EVENTS,
    MAX_UPLOAD_BYTES,
    UPLOAD_PATH,
    EnrollRequest,
    EnrollResponse,
    HubConfig,
    UploadAck,
    to_ranges,
)
from sync.signing import HEADER_TIMESTAMP

router = APIRouter(tags=["hubs"], route_class=StrictJSONRoute)

# Signed endpoints declare the scheme for the schema; `verify_hub` does the checking.
_signed = [Depends(hub_signature_scheme)]


@router.get(HEALTH_PATH, tags=["service"], responses=errors())
async def health() -> dict[str, str]:
    """Liveness: the process answers. No database call, so a load balancer probe is cheap."""
    return {"status": "ok"}


@router.post(
    ENROLL_PATH,
    status_code=201,
    response_model=EnrollResponse,
    responses=errors(403, 409, 413, 422),
)
def enroll(
    request: EnrollRequest, store: Annotated[CouncilStore, Depends(store_of)]
) -> EnrollResponse:
    """Register a hub's public key with a one-time code; answers its hub id and config."""
    try:
        key = base64.b64decode(request.public_key, validate=True)
        Ed25519PublicKey.from_public_bytes(key)
    except (binascii.Error, ValueError):
        raise HTTPException(
            422, "public_key: not the standard base64 of a 32-byte Ed25519 public key"
        ) from None
    hub = store.enroll_hub(request.code, key, request.name, request.software_version)
    return EnrollResponse(hub_id=hub.hub_id, config_version=hub.config_version, config=hub.config)


@router.post(
    UPLOAD_PATH,
    response_model=UploadAck,
    dependencies=_signed,
    responses=errors(401, 403, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": f"A batch from sync.codec, at most {MAX_UPLOAD_BYTES} bytes",
            "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request) -> UploadAck:
    """Store a signed batch once; the answer lists exactly what the council now holds."""
    _check_content_headers(request)
    body = await _read_body(request, MAX_UPLOAD_BYTES)
    return await run_in_threadpool(
        _accept_upload,
        store_of(request),
        request,
        body,
        request.app.state.max_skew_s,
    )


@router.get(CONFIG_PATH, response_model=HubConfig, dependencies=_signed, responses=errors(401, 413))
async def config(request: Request) -> HubConfig:
    """The signed hub's current config and its version."""
    body = await _read_body(request, MAX_UPLOAD_BYTES)
    hub = await run_in_threadpool(
        verify_hub,
        store_of(request),
        request.headers,
        request.method,
        raw_target(request.scope),
        body,
        max_skew_s=request.app.state.max_skew_s,
    )
    return HubConfig(config_version=hub.config_version, config=hub.config)


def _check_content_headers(request: Request) -> None:
    """415 before the endpoint reads the body: the codec compresses itself, so any
    Content-Encoding is either a proxy's doing or an attempt to slip a compressed bomb past
    the size limit. (The envelope still reads the body, bounded, before the 415 goes out, so
    the answer is not lost to a TCP reset; see app._Envelope.)"""
    for encoding in request.headers.getlist("content-encoding"):
        if encoding.strip().lower() not in ("", "identity"):
            raise HTTPException(
                415, f"Content-Encoding {encoding!r:.40} is not accepted: send the batch as is"
            )
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise HTTPException(
            415, f"Content-Type must be {CONTENT_TYPE}, not {media_type or 'missing'!r:.60}"
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it arrives and cut off past `limit`, whatever Content-Length
    said. (The envelope enforces the same limit; this keeps the endpoint safe alone.)"""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def _accept_upload(
    store: CouncilStore, request: Request, body: bytes, max_skew_s: float
) -> UploadAck:
    """Verify, decode and store one batch. Runs in the threadpool: every step blocks."""
    received_at = time.time()
    hub = verify_hub(
        store,
        request.headers,
        request.method,
        raw_target(request.scope),
        body,
        max_skew_s=max_skew_s,
        now=received_at,
    )
    try:
        batch = decode_batch(body, max_events=MAX_BATCH_EVENTS)
    except BatchError as exc:
        raise HTTPException(422, f"batch: {exc}") from None
    if batch.hub_id != hub.hub_id:
        raise HTTPException(
            403,
            f"the batch is for hub {batch.hub_id!r:.80} but signed by {hub.hub_id!r}: "
            "hubs write only their own data",
        )
    records = [event.to_record() for event in batch.events]
    # Text the database cannot hold (NUL, lone surrogates) is replaced, never refused, in
    # records (by the store) and in the health report (here): a refused batch would block
    # the hub's outbox for ever. Too deep a nesting is refused (StoreError -> 422).
    health = cleaned(batch.health)
    signed_at = int(request.headers[HEADER_TIMESTAMP])  # verified above
    # The store checks the health report (StoreError -> 422 naming the field) and merges its
    # known keys into the fleet view, in the same transaction as the events, unless a newer
    # signed request already updated it (a replay or a late retry changes no fleet figure).
    result = store.ingest(
        hub.hub_id,
        records,
        received_at=received_at,
        health=health,
        clock_offset_s=received_at - signed_at,
        signed_at=signed_at,
    )
    return UploadAck(
        new=result.new,
        duplicates=result.duplicates,
        held=to_ranges(result.held),
        conflicts=to_ranges(result.conflicts),
        high_water=result.high_water,
        config_version=result.config_version,
    )
