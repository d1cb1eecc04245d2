"""Who may do what: enrollment codes and enrollment, hubs and their configs, user tokens.

A mixin of CouncilStore (which adds the events and the fleet view), kept apart so each file
stays readable; import everything from `sync.council.store`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from sync.council.credentials import (
    code_digest,
    new_code,
    new_hub_id,
    new_token,
    normalise_code,
    token_digest,
)
from sync.council.db import decoded, is_pg, now_or, serialised
from sync.council.errors import (
    Conflict,
    EnrollmentRefused,
    KeyAlreadyEnrolled,
    NotFound,
    StoreError,
)
from sync.council.records import json_document, short_text
from sync.council.tables import enrollment_codes, hubs, settings, tokens

JSONValue = Any

ROLES = ("reader", "admin")  # in rising order of power
_LAST_USED_EVERY_S = 60.0  # authenticate() writes last_used_at at most this often per token
_DEFAULT_CONFIG_KEY = "default_hub_config"
MAX_TEXT = 200  # names and notes (hubs, codes, tokens): the columns are String(200)


@dataclass(frozen=True, slots=True)
class Hub:
    hub_id: str
    public_key: bytes
    enrolled_at: float
    last_contact: float | None
    software_version: str | None
    name: str | None
    config: dict[str, JSONValue]
    config_version: int


@dataclass(frozen=True, slots=True)
class NewCode:
    """A fresh enrollment code; `code` exists only here, the store keeps its digest."""

    id: int
    code: str
    expires_at: float
    note: str | None


@dataclass(frozen=True, slots=True)
class CodeInfo:
    id: int
    note: str | None
    created_at: float
    expires_at: float
    state: str  # "unused" | "used" | "expired" | "revoked"
    hub_id: str | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A fresh user token; `token` exists only here, the store keeps its digest."""

    id: int
    token: str
    role: str
    name: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    role: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class AccessStore:
    """Enrollment, hubs, configs and tokens; needs only `self.engine`."""

    engine: Engine

    # -- enrollment codes --------------------------------------------------------------------

    def create_code(
        self, expires_in_s: float, note: str | None = None, now: float | None = None
    ) -> NewCode:
        """A new one-time enrollment code, valid for `expires_in_s` from now."""
        now = now_or(now)
        if not math.isfinite(expires_in_s) or expires_in_s <= 0:
            raise StoreError(f"expires_in_s must be a positive number, got {expires_in_s!r}")
        note = short_text(note, MAX_TEXT)
        code = new_code()
        canonical = normalise_code(code)
        assert canonical is not None  # new_code only makes valid codes
        expires_at = now + expires_in_s
        row = {
            "code_sha256": code_digest(canonical),
            "note": note,
            "created_at": now,
            "expires_at": expires_at,
        }
        with serialised(self.engine) as conn:
            stmt = enrollment_codes.insert().values(row).returning(enrollment_codes.c.id)
            code_id = conn.execute(stmt).scalar_one()
        return NewCode(id=code_id, code=code, expires_at=expires_at, note=note)

    def list_codes(self, now: float | None = None) -> list[CodeInfo]:
        now = now_or(now)
        c = enrollment_codes.c
        query = sa.select(
            c.id, c.note, c.created_at, c.expires_at, c.used_at, c.revoked_at, c.hub_id
        ).order_by(c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            CodeInfo(
                id=r.id,
                note=r.note,
                created_at=r.created_at,
                expires_at=r.expires_at,
                state=_code_state(r.used_at, r.revoked_at, r.expires_at, now),
                hub_id=r.hub_id,
            )
            for r in rows
        ]

    def revoke_code(self, code_id: int, now: float | None = None) -> None:
        """Make an unused code unusable. Revoking twice is fine; a used code is a Conflict
        (its hub stays enrolled: revoking the code does not undo that)."""
        now = now_or(now)
        c = enrollment_codes.c
        with serialised(self.engine) as conn:
            # Conditional, like the claim in enroll_hub: the two cannot both succeed.
            revoke = (
                enrollment_codes.update()
                .where(c.id == code_id, c.used_at.is_(None), c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if conn.execute(revoke).rowcount == 1:
                return
            row = conn.execute(sa.select(c.used_at, c.hub_id).where(c.id == code_id)).one_or_none()
        if row is None:
            raise NotFound(f"no enrollment code with id {code_id}")
        if row.used_at is not None:
            raise Conflict(
                f"enrollment code {code_id} was already used at {_iso(row.used_at)}"
                f" (hub {row.hub_id})"
            )

    def enroll_hub(
        self,
        code: str,
        public_key: bytes,
        name: str | None,
        software_version: str | None,
        now: float | None = None,
    ) -> Hub:
        """Redeem `code` and create a hub for `public_key`, in one transaction.

        Inputs are checked first (StoreError, the code untouched), then the code
        (EnrollmentRefused), then the key (KeyAlreadyEnrolled, the code given back): an
        unauthenticated caller learns nothing about enrolled keys without a valid code.

        Idempotent for the hub that redeemed the code: when its answer was lost, the
        installer asks again with the same code and key, and gets the same hub (with its
        current config) instead of "used", as long as the code has not expired. Any other
        key is refused as before.
        """
        now = now_or(now)
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise StoreError("public_key: expected the 32 bytes of an Ed25519 public key")
        name = short_text(name, MAX_TEXT)
        software_version = short_text(software_version, 64)
        canonical = normalise_code(code)
        if canonical is None:
            raise EnrollmentRefused("unknown", "unknown enrollment code")
        digest = code_digest(canonical)
        hub_id = new_hub_id()
        c = enrollment_codes.c
        try:
            with serialised(self.engine) as conn:
                claim = (
                    enrollment_codes.update()
                    .where(
                        c.code_sha256 == digest,
                        c.used_at.is_(None),
                        c.revoked_at.is_(None),
                        c.expires_at > now,
                    )
                    .values(used_at=now)
                    .returning(c.id)
                )
                code_id = conn.execute(claim).scalar_one_or_none()
                if code_id is None:
                    again = _enrolled_with(conn, digest, public_key, now)
                    if again is not None:
                        return again
                    raise _refusal(conn, digest, now)
                taken = sa.select(hubs.c.hub_id).where(hubs.c.public_key == public_key)
                if conn.execute(taken).first() is not None:
                    raise KeyAlreadyEnrolled("this public key is already enrolled")
                hub = _insert_hub(conn, hub_id, public_key, now, software_version, name)
                link = enrollment_codes.update().where(c.id == code_id).values(hub_id=hub_id)
                conn.execute(link)
        except sa.exc.IntegrityError as exc:
            # Two redemptions of different codes with one key, racing past the check above.
            if "public_key" in str(exc.orig):
                raise KeyAlreadyEnrolled("this public key is already enrolled") from exc
            raise
        return hub

    # -- hubs --------------------------------------------------------------------------------

    def add_hub(
        self,
        hub_id: str,
        public_key: bytes,
        enrolled_at: float | None = None,
        software_version: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Register a hub without a code (tests, tools); starts on the default config like an
        enrolled hub. Raises sqlalchemy.exc.IntegrityError if the id or key exists."""
        when = now_or(enrolled_at)
        with serialised(self.engine) as conn:
            _insert_hub(conn, hub_id, public_key, when, software_version, name)

    def get_hub(self, hub_id: str) -> Hub | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_HUB_COLUMNS).where(hubs.c.hub_id == hub_id)).first()
        return None if row is None else _hub_from_row(row._asdict())

    def set_hub_config(self, hub_id: str, config: dict[str, JSONValue]) -> Hub:
        """Replace the hub's council-managed config; its version goes up by one, which the
        next upload's acknowledgement tells the hub."""
        doc = _config_document(config)
        with serialised(self.engine) as conn:
            stmt = (
                hubs.update()
                .where(hubs.c.hub_id == hub_id)
                .values(config=doc, config_version=hubs.c.config_version + 1)
                .returning(*_HUB_COLUMNS)
            )
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no hub {hub_id!r}")
        return _hub_from_row(row._asdict())

    def default_hub_config(self) -> dict[str, JSONValue]:
        """The config a newly enrolled hub starts with ({} until an admin sets one)."""
        with self.engine.connect() as conn:
            return _default_config(conn)

    def set_default_hub_config(self, config: dict[str, JSONValue]) -> None:
        """Applies to hubs enrolled from now on; enrolled hubs keep theirs."""
        doc = _config_document(config)
        with serialised(self.engine) as conn:
            dialect_insert = postgresql.insert if is_pg(conn) else sqlite.insert
            stmt = dialect_insert(settings).values(key=_DEFAULT_CONFIG_KEY, value=doc)
            stmt = stmt.on_conflict_do_update(
                index_elements=[settings.c.key], set_={"value": stmt.excluded.value}
            )
            conn.execute(stmt)

    # -- user tokens -------------------------------------------------------------------------

    def create_token(self, role: str, name: str, now: float | None = None) -> NewToken:
        now = now_or(now)
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT:
            raise StoreError(f"name: expected 1 to {MAX_TEXT} characters")
        token = new_token()
        digest = token_digest(token)
        row = {"token_sha256": digest, "role": role, "name": name, "created_at": now}
        with serialised(self.engine) as conn:
            token_id = conn.execute(tokens.insert().values(row).returning(tokens.c.id)).scalar_one()
        return NewToken(id=token_id, token=token, role=role, name=name)

    def list_tokens(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_TOKEN_COLUMNS).order_by(tokens.c.id)).all()
        return [TokenInfo(**r._asdict()) for r in rows]

    def revoke_token(self, token_id: int, now: float | None = None) -> None:
        """The token stops working at once; revoking twice keeps the first time."""
        now = now_or(now)
        t = tokens.c
        with serialised(self.engine) as conn:
            revoke = (
                tokens.update()
                .where(t.id == token_id, t.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if conn.execute(revoke).rowcount == 1:
                return
            exists = conn.execute(sa.select(t.id).where(t.id == token_id)).first()
        if exists is None:
            raise NotFound(f"no token with id {token_id}")

    def authenticate(self, token: str, now: float | None = None) -> TokenInfo | None:
        """The token's holder, or None for an unknown or revoked token.

        The lookup is by SHA-256 of the presented token, so no secret is ever compared: a
        timing difference in the index lookup can only reveal how a *digest* of the attempt
        matches stored digests, which gives no path to a valid token (that would need a
        preimage). A constant-time compare would therefore protect nothing here.
        last_used_at is written at most once a minute per token, so reads stay reads.
        """
        now = now_or(now)
        digest = token_digest(token)
        if digest is None:
            return None
        t = tokens.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_TOKEN_COLUMNS).where(t.token_sha256 == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        info = TokenInfo(**row._asdict())
        if info.last_used_at is not None and now - info.last_used_at < _LAST_USED_EVERY_S:
            return info
        with serialised(self.engine) as conn:
            conn.execute(
                tokens.update()
                .where(
                    t.id == info.id,
                    sa.or_(t.last_used_at.is_(None), t.last_used_at <= now - _LAST_USED_EVERY_S),
                )
                .values(last_used_at=now)
            )
        return TokenInfo(info.id, info.role, info.name, info.created_at, now, info.revoked_at)


_HUB_COLUMNS = [getattr(hubs.c, name) for name in Hub.__dataclass_fields__]
_TOKEN_COLUMNS = [getattr(tokens.c, name) for name in TokenInfo.__dataclass_fields__]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _code_state(
    used_at: float | None, revoked_at: float | None, expires_at: float, now: float
) -> str:
    if used_at is not None:
        return "used"
    if revoked_at is not None:
        return "revoked"
    return "expired" if expires_at <= now else "unused"


def _refusal(conn: Connection, digest: str, now: float) -> EnrollmentRefused:
    """Why a code could not be claimed (called after the conditional claim matched nothing)."""
    c = enrollment_codes.c
    query = sa.select(c.used_at, c.revoked_at, c.expires_at).where(c.code_sha256 == digest)
    row = conn.execute(query).first()
    if row is None:
        return EnrollmentRefused("unknown", "unknown enrollment code")
    state = _code_state(row.used_at, row.revoked_at, row.expires_at, now)
    if state == "used":
        return EnrollmentRefused("used", f"enrollment code already used at {_iso(row.used_at)}")
    if state == "revoked":
        return EnrollmentRefused("revoked", f"enrollment code revoked at {_iso(row.revoked_at)}")
    return EnrollmentRefused("expired", f"enrollment code expired at {_iso(row.expires_at)}")


def _insert_hub(
    conn: Connection,
    hub_id: str,
    public_key: bytes,
    enrolled_at: float,
    software_version: str | None,
    name: str | None,
) -> Hub:
    """A new hub on the council's default config, version 1 (enrolled or added)."""
    hub = Hub(
        hub_id=hub_id,
        public_key=public_key,
        enrolled_at=enrolled_at,
        last_contact=None,
        software_version=software_version,
        name=name,
        config=_default_config(conn),
        config_version=1,
    )
    conn.execute(hubs.insert().values(**{f: getattr(hub, f) for f in Hub.__dataclass_fields__}))
    return hub


def _enrolled_with(conn: Connection, digest: str, public_key: bytes, now: float) -> Hub | None:
    """The hub that redeemed this (unexpired) code, if its key is `public_key`: a repeated
    enrollment whose first answer was lost."""
    c = enrollment_codes.c
    query = (
        sa.select(*_HUB_COLUMNS)
        .select_from(enrollment_codes.join(hubs, hubs.c.hub_id == c.hub_id))
        .where(c.code_sha256 == digest, c.expires_at > now, hubs.c.public_key == public_key)
    )
    row = conn.execute(query).first()
    return None if row is None else _hub_from_row(row._asdict())


def _config_document(config: Any) -> dict[str, JSONValue]:
    if not isinstance(config, Mapping):
        raise StoreError("config: expected an object of section name -> table")
    doc = json_document(dict(config), "config")
    assert isinstance(doc, dict)
    return doc


def _default_config(conn: Connection) -> dict[str, JSONValue]:
    query = sa.select(settings.c.value).where(settings.c.key == _DEFAULT_CONFIG_KEY)
    value = decoded(conn.scalar(query))
    return dict(value) if isinstance(value, dict) else {}


def _hub_from_row(row: dict[str, Any]) -> Hub:
    return Hub(**{**row, "config": decoded(row["config"])})
