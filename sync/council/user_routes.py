"""Endpoints for central-team users (bearer tokens): admin tasks, the pull API, the fleet.

All plain `def`: FastAPI runs them in its threadpool, so a slow database call never blocks
the event loop. Store exceptions (NotFound, Conflict) become 404/409 in app.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from sync.council.api import (
    HUB_ID_PATTERN,
    MAX_ID,
    TIME_PATTERN,
    CodeCreate,
    CodeOut,
    EventOut,
    EventPageOut,
    FleetEntryOut,
    FleetOut,
    HubConfigUpdate,
    Kind,
    NewCodeOut,
    NewTokenOut,
    TokenCreate,
    TokenOut,
    event_record,
    parse_time,
)
from sync.council.auth import require, store_of
from sync.council.responses import errors
from sync.council.store import CouncilStore, TokenInfo
from sync.council.strict_json import StrictJSONRoute
from sync.protocol import (
    CODES_PATH,
    EVENTS_PATH,
    FLEET_PATH,
    MAX_PAGE,
    PREFIX,
    TOKENS_PATH,
    HubConfig,
)

router = APIRouter(route_class=StrictJSONRoute)

Store = Annotated[CouncilStore, Depends(store_of)]
Admin = Annotated[TokenInfo, Depends(require("admin"))]
Reader = Annotated[TokenInfo, Depends(require("reader"))]
ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]
HubIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=HUB_ID_PATTERN)]
HUBS_PATH = f"{PREFIX}/hubs"

_ADMIN = errors(401, 403)
_ADMIN_BODY = errors(401, 403, 413)

# -- enrollment codes (admin) ----------------------------------------------------------------


@router.post(
    CODES_PATH, status_code=201, response_model=NewCodeOut, responses=_ADMIN_BODY, tags=["admin"]
)
def create_code(body: CodeCreate, store: Store, _user: Admin) -> NewCodeOut:
    """A one-time enrollment code; the code itself is shown only in this answer."""
    return NewCodeOut.model_validate(store.create_code(float(body.expires_in_s), body.note))


@router.get(CODES_PATH, response_model=list[CodeOut], responses=_ADMIN, tags=["admin"])
def list_codes(store: Store, _user: Admin) -> list[CodeOut]:
    return [CodeOut.model_validate(code) for code in store.list_codes()]


@router.delete(
    f"{CODES_PATH}/{{code_id}}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404, 409),
    tags=["admin"],
)
def revoke_code(code_id: ObjectId, store: Store, _user: Admin) -> None:
    """Revoke an unused code (409 when it was already used: revoke the hub's data instead)."""
    store.revoke_code(code_id)


# -- tokens (admin) --------------------------------------------------------------------------


@router.post(
    TOKENS_PATH,
    status_code=201,
    response_model=NewTokenOut,
    responses=_ADMIN_BODY,
    tags=["admin"],
)
def create_token(body: TokenCreate, store: Store, _user: Admin) -> NewTokenOut:
    """A bearer token; the token itself is shown only in this answer (stored hashed)."""
    return NewTokenOut.model_validate(store.create_token(body.role, body.name))


@router.get(TOKENS_PATH, response_model=list[TokenOut], responses=_ADMIN, tags=["admin"])
def list_tokens(store: Store, _user: Admin) -> list[TokenOut]:
    return [TokenOut.model_validate(token) for token in store.list_tokens()]


@router.delete(
    f"{TOKENS_PATH}/{{token_id}}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404),
    tags=["admin"],
)
def revoke_token(token_id: ObjectId, store: Store, _user: Admin) -> None:
    store.revoke_token(token_id)


# -- hubs ------------------------------------------------------------------------------------


@router.put(
    f"{HUBS_PATH}/{{hub_id}}/config",
    response_model=HubConfig,
    responses=errors(401, 403, 404, 413),
    tags=["admin"],
)
def set_hub_config(
    hub_id: HubIdPath, body: HubConfigUpdate, store: Store, _user: Admin
) -> HubConfig:
    """Replace the council-managed config of a hub; the hub sees the new version in its
    next upload acknowledgement and fetches it."""
    hub = store.set_hub_config(hub_id, dict(body.config))
    return HubConfig(config_version=hub.config_version, config=hub.config)


@router.get(
    f"{HUBS_PATH}/{{hub_id}}",
    response_model=FleetEntryOut,
    responses=errors(401, 403, 404),
    tags=["read"],
)
def get_hub(hub_id: HubIdPath, store: Store, _user: Reader) -> FleetEntryOut:
    entry = store.fleet_entry(hub_id)
    if entry is None:
        raise HTTPException(404, f"no hub {hub_id!r}")
    return FleetEntryOut.model_validate(entry)


@router.get(FLEET_PATH, response_model=FleetOut, responses=errors(401, 403), tags=["read"])
def fleet(store: Store, _user: Reader) -> FleetOut:
    """Every hub's last contact, queue, software, clock, silent sensors and low batteries."""
    return FleetOut(hubs=[FleetEntryOut.model_validate(entry) for entry in store.fleet()])


# -- pull API --------------------------------------------------------------------------------

_TIME_HELP = "Unix seconds or ISO 8601 (UTC when no offset), on the event's wall_time"


@router.get(EVENTS_PATH, response_model=EventPageOut, responses=errors(401, 403), tags=["read"])
def events(
    store: Store,
    _user: Reader,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Cursor: the previous page's next_cursor")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    hub: Annotated[str | None, Query(min_length=1, max_length=64, pattern=HUB_ID_PATTERN)] = None,
    kind: Annotated[Kind | None, Query()] = None,
    since: Annotated[
        str | None, Query(pattern=TIME_PATTERN, max_length=40, description=_TIME_HELP)
    ] = None,
    until: Annotated[
        str | None, Query(pattern=TIME_PATTERN, max_length=40, description=_TIME_HELP)
    ] = None,
) -> EventPageOut:
    """Events in the council's ingest order from a cursor; filters never make a client
    rescan (next_cursor moves past rows that did not match)."""
    since_ts = _query_time("since", since)
    until_ts = _query_time("until", until)
    page = store.events_page(after, limit, hub_id=hub, kind=kind, since=since_ts, until=until_ts)
    return EventPageOut(
        events=[EventOut.model_validate(event_record(e)) for e in page.events],
        next_cursor=page.next_cursor,
        more=page.more,
    )


def _query_time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise HTTPException(422, f"query.{name}: {exc}") from None
