"""JSON shapes of the council's admin, pull and fleet endpoints.

(The hub's health report is checked in `sync.council.fleet`, where the store keeps it.)

The hub-facing shapes (enroll, upload ack, config) live in `sync.protocol`, shared with the
hub; these are the council's own, so they are declared here, once, as the OpenAPI schema's
models. Constraints are exact (lengths, ranges, enums) because a schema-driven tester and
client generators read them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sync.council.store import MAX_TEXT, CouncilEvent

Role = Literal["reader", "admin"]
Kind = Literal["reading", "alert", "system"]
CodeState = Literal["unused", "used", "expired", "revoked"]

MIN_CODE_EXPIRY_S = 60
MAX_CODE_EXPIRY_S = 30 * 86400
DEFAULT_CODE_EXPIRY_S = 86400
MAX_ID = 2**63 - 1

# Visible ASCII, as sync.signing requires of hub ids: a NUL or a control character in a path
# or query would otherwise reach the database (PostgreSQL refuses NUL: a 500, not a 404).
HUB_ID_PATTERN = r"^[!-~]{1,64}$"
Note = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
TokenName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class _In(BaseModel):
    # A typo in an admin's request is an error to report, not a field to drop silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- enrollment codes ------------------------------------------------------------------------


class CodeCreate(_In):
    expires_in_s: int = Field(
        default=DEFAULT_CODE_EXPIRY_S, ge=MIN_CODE_EXPIRY_S, le=MAX_CODE_EXPIRY_S
    )
    note: Note | None = None


class NewCodeOut(_Out):
    id: int
    code: str = Field(description="The one-time code; shown only in this answer")
    expires_at: float
    note: str | None


class CodeOut(_Out):
    id: int
    note: str | None
    created_at: float
    expires_at: float
    state: CodeState
    hub_id: str | None


# -- tokens ----------------------------------------------------------------------------------


class TokenCreate(_In):
    role: Role
    name: TokenName


class NewTokenOut(_Out):
    id: int
    token: str = Field(description="The bearer token; shown only in this answer")
    role: Role
    name: str


class TokenOut(_Out):
    id: int
    role: Role
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


# -- hub config ------------------------------------------------------------------------------


class HubConfigUpdate(_In):
    config: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], dict[str, Any]] = (
        Field(description="Council-managed hub config sections: TOML section name -> table")
    )


# -- pull API --------------------------------------------------------------------------------


class EventOut(_Out):
    cursor: int = Field(description="The event's place in the council's ingest order")
    hub_id: str
    seq: int
    kind: Kind
    wall_time: float
    clock_synced: bool
    monotonic: float
    sensor_id: str | None
    quantity: str | None
    value: float | None
    received_at: float
    clock_corrected: bool = Field(
        description="The hub stamped this event before its clock was synchronised "
        "(clock_synced false) and wall_time has since been corrected to the boot's true "
        "origin + monotonic: by the hub before sending it, or here by a later "
        "clock_corrected system event (whose details say which seqs and the origin). body "
        "keeps the wall_time as first received"
    )
    body: dict[str, Any] = Field(
        description="The event as the hub sent it: the same keys and values. On a "
        "PostgreSQL council (JSONB) the keys may come back in another order and numbers in "
        "another spelling of the same value (1e+23 as 100000000000000000000000)"
    )


class EventPageOut(_Out):
    events: list[EventOut]
    next_cursor: int = Field(ge=0, description="Pass as `after` for the next page")
    more: bool = Field(description="True when rows past next_cursor may exist")


EVENT_FIELDS = tuple(EventOut.model_fields)


def event_record(event: CouncilEvent) -> dict[str, Any]:
    """A stored event in the pull API's and the export's shape (`id` is the cursor)."""
    return {
        "cursor": event.id,
        "hub_id": event.hub_id,
        "seq": event.seq,
        "kind": event.kind,
        "wall_time": event.wall_time,
        "clock_synced": event.clock_synced,
        "monotonic": event.monotonic,
        "sensor_id": event.sensor_id,
        "quantity": event.quantity,
        "value": event.value,
        "received_at": event.received_at,
        "clock_corrected": event.clock_corrected,
        "body": event.body,
    }


# -- fleet -----------------------------------------------------------------------------------


class SilentSensorOut(_Out):
    sensor_id: str
    room: str | None
    last_seen: float | None


class LowBatteryOut(_Out):
    sensor_id: str
    room: str | None
    battery: float


class FleetEntryOut(_Out):
    hub_id: str
    name: str | None
    enrolled_at: float
    last_contact: float | None
    software_version: str | None
    queue_depth: int | None
    uptime_s: float | None
    disk_free_bytes: int | None
    clock_synced: bool | None
    clock_offset_s: float | None = Field(
        description="Council receive time minus the signed timestamp of the last upload "
        "(the timestamp is whole seconds, so this reads up to 1 s high)"
    )
    config_version: int
    high_water: int
    events_held: int
    silent_sensors: list[SilentSensorOut]
    low_batteries: list[LowBatteryOut]
    storage: Literal["ok", "low", "full"] | None = Field(
        description="full: the hub reports its disk full and prunes its buffer to keep"
        " writing (STORAGE_FULL events say what went); low: under 100 MiB free, or less"
        " room than the buffer may still take up to its quota; null: not reported yet"
    )
    storage_since: float | None = Field(
        description="While full: since when (the hub's clock, Unix seconds)"
    )
    dropped_readings: int | None = Field(
        description="Readings the hub dropped for lack of space since it started (each"
        " drop is also a gap event)"
    )


class FleetOut(_Out):
    hubs: list[FleetEntryOut]


# -- times in queries and on the command line ------------------------------------------------

# Unix seconds, or an ISO 8601 date or date-time (naive means UTC). The pattern is also the
# OpenAPI constraint, so a generated query is a plausible time; parse_time still decides.
TIME_PATTERN = (
    r"^(-?[0-9]{1,12}(\.[0-9]{1,6})?"
    r"|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)$"
)
_TIME_RE = re.compile(TIME_PATTERN)
_NUMBER_RE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,6})?")


def parse_time(text: str) -> float:
    """Unix seconds from `text`; ValueError naming the accepted forms otherwise."""
    text = text.strip()
    if _NUMBER_RE.fullmatch(text):
        return float(text)
    error = (
        f"{text!r:.60} is not a time; use Unix seconds (1714560000) or ISO 8601 "
        "(2024-05-01 or 2024-05-01T12:00:00+01:00; without an offset it is UTC)"
    )
    if not _TIME_RE.fullmatch(text):
        raise ValueError(error)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(error) from None
