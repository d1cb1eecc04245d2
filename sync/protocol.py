"""The council API's contract, shared by both ends: paths, headers, limits and message shapes.

The council service declares these models as its request and response bodies (so they are
what the OpenAPI schema shows), and the hub's enroll command and uploader parse answers with
the same models, so the two ends cannot drift apart. Upload bodies themselves are the binary
batch of `sync.codec`; their requests are signed as `sync.signing` describes.

Acknowledgement: the council answers an upload with the exact sequence numbers it now holds
from that batch (as ranges), not with "everything up to N". A hub's sequence legitimately has
holes (the quota may drop routine readings, recording a gap event), and a contiguous
watermark would stall at the first hole. The hub marks synced exactly what `held` lists.

`conflicts` guards against one failure no retry logic can see: an SD card that lied about
fsync loses the hub's newest commits, and the restarted hub hands out those sequence numbers
again to different events. The council never overwrites what it holds; it names the
sequence numbers whose content differs and gives its `high_water`, and the hub moves those
events to fresh numbers above it and sends them again. Without this the council would count
them as duplicates and the events would be lost silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API_VERSION = "v1"
PREFIX = f"/{API_VERSION}"

ENROLL_PATH = f"{PREFIX}/enroll"
UPLOAD_PATH = f"{PREFIX}/upload"
CONFIG_PATH = f"{PREFIX}/config"
EVENTS_PATH = f"{PREFIX}/events"
FLEET_PATH = f"{PREFIX}/fleet"
CODES_PATH = f"{PREFIX}/enrollment-codes"
TOKENS_PATH = f"{PREFIX}/tokens"
HEALTH_PATH = f"{PREFIX}/health"

# On every council response, refusals included: the council's Unix time when it answered, so
# a hub without a battery-backed clock can sign with council time (see sync.signing).
HEADER_COUNCIL_TIME = "X-Hearth-Time"
# Also on every response: what this council understands beyond format version 1 (a comma-
# separated list). A newer hub uses a feature only once its council has announced it, so a
# hub can be upgraded before its council; an older council does not send the header.
HEADER_COUNCIL_FEATURES = "X-Hearth-Features"
# The clock_corrected stamp flag (sync.codec bit 3) and the clock_corrected system event.
FEATURE_CLOCK_CORRECTED = "clock_corrected"
COUNCIL_FEATURES: tuple[str, ...] = (FEATURE_CLOCK_CORRECTED,)


def parse_features(header: str | None) -> frozenset[str] | None:
    """The features a council announced (None: the header was absent, an older council)."""
    if header is None:
        return None
    return frozenset(f.strip() for f in header.split(",") if f.strip())


MAX_UPLOAD_BYTES = 1024 * 1024  # compressed body; larger is refused with 413
MAX_BATCH_EVENTS = 5000  # events in one upload; more is refused with 422
MAX_PAGE = 10_000  # the pull API's largest page

Seq = Annotated[int, Field(ge=0, lt=2**63)]
SeqRange = tuple[Seq, Seq]  # inclusive [first, last]


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges: a batch of 500 mostly consecutive seqs is a few pairs."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def from_ranges(ranges: Iterable[tuple[int, int]], *, limit: int = MAX_BATCH_EVENTS) -> list[int]:
    """Expand ranges, refusing a reversed range or more than `limit` numbers (a hostile or
    corrupted answer must not make the hub allocate without bound)."""
    out: list[int] = []
    for first, last in ranges:
        if last < first:
            raise ValueError(f"range [{first}, {last}] is reversed")
        if len(out) + (last - first + 1) > limit:
            raise ValueError(f"more than {limit} sequence numbers in the ranges")
        out.extend(range(first, last + 1))
    return out


class _Message(BaseModel):
    # Unknown fields are ignored, not refused, so a newer council can add to an answer
    # without breaking hubs in the field.
    model_config = ConfigDict(extra="ignore", frozen=True)


# Standard base64 of exactly 32 bytes: 42 free characters, then one whose low 4 bits are 0
# (it carries the last 2 bits of byte 32), then the padding.
PublicKeyB64 = Annotated[
    str,
    StringConstraints(
        min_length=44, max_length=44, pattern=r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
    ),
]
EnrollmentCodeText = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EnrollRequest(_Message):
    code: EnrollmentCodeText
    public_key: PublicKeyB64 = Field(description="Standard base64 of the 32-byte Ed25519 key")
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    software_version: Annotated[str, StringConstraints(max_length=64)] | None = None


class HubConfig(_Message):
    """Hub config sections the council manages, in the hub config file's own shape (a TOML
    section name -> its table). The hub validates them with its own config model before
    writing them; unknown sections or keys there are the hub's error to report."""

    config_version: int = Field(ge=0)
    config: dict[str, Any]


class EnrollResponse(HubConfig):
    hub_id: str


class UploadAck(_Message):
    new: int = Field(ge=0, description="events stored by this upload")
    duplicates: int = Field(ge=0, description="events of this upload already held, same content")
    held: list[SeqRange] = Field(description="seqs of this batch now held: mark them synced")
    conflicts: list[SeqRange] = Field(
        default_factory=list,
        description="seqs the council holds with different content: renumber above high_water",
    )
    high_water: int = Field(ge=0, description="highest seq held for this hub, 0 when none")
    config_version: int = Field(ge=0, description="the hub's current config version")


class ErrorBody(_Message):
    detail: str
