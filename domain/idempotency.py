"""Idempotent order placement: an Idempotency-Key makes a retried POST /v1/orders safe.

A placement whose connection dropped during COMMIT may or may not have happened; the
client sees a 503 and retries. With a key, the retry names the same order: the order's
id derives from the key, so a second placement collides on save, and the buyer token
derives from the key and a server secret, so the retry can answer with the same token
(the store still keeps only its hash). Whoever presents a key gets that order's
answer, token included: keys must be unguessable (a random UUID per placement).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.exceptions import InvalidInput

MAX_KEY = 128
# Where the server secret for derived tokens lives: a keyring entry no merchant can own.
TOKEN_KEY_OWNER = uuid5(NAMESPACE_URL, "kami:idempotency/order-token-key")


@dataclass(frozen=True)
class OrderRequest:
    """What an Idempotency-Key fixes: the order's id and its buyer token's secret."""

    order_id: UUID
    secret: str = field(repr=False)


def order_request(key: str, server_key: bytes) -> OrderRequest:
    # Visible ASCII only, as an HTTP header can carry it unchanged.
    if not key or len(key) > MAX_KEY or not all("!" <= c <= "~" for c in key):
        raise InvalidInput(f"an Idempotency-Key has 1 to {MAX_KEY} visible ASCII characters")
    digest = hmac.new(server_key, b"order-token:" + key.encode(), hashlib.sha256).digest()
    # The same length and alphabet as domain.secrets.new_secret: 24 bytes, url-safe base64.
    secret = base64.urlsafe_b64encode(digest[:24]).decode()
    return OrderRequest(uuid5(NAMESPACE_URL, f"kami:order-request/{key}"), secret)
