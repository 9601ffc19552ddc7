"""Bearer secrets: issued once, stored only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    # The secrets are 192-bit random strings, so a plain digest is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def compose_token(prefix: str, owner_id: UUID, secret: str) -> str:
    """A token names its owner, so a request is authenticated by one aggregate load."""
    return f"{prefix}_{owner_id.hex}_{secret}"


def split_token(prefix: str, token: str) -> tuple[UUID, str] | None:
    head, sep, rest = token.partition("_")
    if head != prefix or not sep:
        return None
    owner_hex, sep, secret = rest.partition("_")
    if not sep or not secret:
        return None
    try:
        return UUID(hex=owner_hex), secret
    except ValueError:
        return None
