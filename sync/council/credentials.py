"""Secrets the council hands out (enrollment codes, user tokens) and the hub ids it assigns.

Only SHA-256 digests of secrets are stored. Plain SHA-256 (no salt, no slow KDF) is enough
because these secrets are random, not chosen by people: a token has 256 bits, so no
dictionary exists to try; a code has 60 bits, expires within 30 days and works once, so
brute-forcing a stolen digest (about 2^59 hashes on average) is not worth a code that is
used up or expired long before. A slow hash would cost every authenticated request instead.
"""

from __future__ import annotations

import hashlib
import secrets

# Crockford's base32: no I, L, O or U, so a code read aloud or copied by hand survives.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
TOKEN_PREFIX = "hrt_"
_MAX_TOKEN_CHARS = 200  # hashing is cheap, but not an invitation to send megabytes
_HUB_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case
_CODE_FIXES = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def new_code() -> str:
    """A fresh enrollment code as people see it: XXXX-XXXX-XXXX."""
    raw = "".join(secrets.choice(CROCKFORD) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalise_code(text: str) -> str | None:
    """The canonical form of a typed code (upper case, no dashes or spaces, O->0, I/L->1),
    or None when the text cannot be any code we issued."""
    canonical = text.upper().translate(_CODE_FIXES)
    if len(canonical) != CODE_LENGTH or any(c not in CROCKFORD for c in canonical):
        return None
    return canonical


def code_digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str | None:
    """The stored digest of a presented token, or None when it cannot be one of ours."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        return None
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_hub_id() -> str:
    """ "hub-" + 12 random base32 characters (60 bits): unguessable, short enough to read."""
    return "hub-" + "".join(secrets.choice(_HUB_ALPHABET) for _ in range(12))
