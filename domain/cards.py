"""Card keys are sealed with a per-merchant key before they enter any event.

Deleting a merchant's key (crypto-shredding) makes its cards unreadable everywhere
while the events, and so every replay and the hash chain, stay intact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from typing import Protocol
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.exceptions import InvalidInput, InvalidState

MAX_CARD_LENGTH = 512
SHREDDED = "this merchant's card key has been shredded"


class Keyring(Protocol):
    """Where merchant card keys live: outside the event store, so they can be deleted."""

    def create(self, merchant_id: UUID) -> bytes:
        """The merchant's key, made on first use; raises InvalidState once shredded."""
        ...

    def get(self, merchant_id: UUID) -> bytes | None: ...

    def shred(self, merchant_id: UUID) -> None: ...


class InMemoryKeyring:
    """A keyring for unit tests and tools that need no persistence."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}
        self._shredded: set[UUID] = set()
        self._lock = threading.Lock()

    def create(self, merchant_id: UUID) -> bytes:
        with self._lock:
            if merchant_id in self._shredded:
                raise InvalidState(SHREDDED)
            return self._keys.setdefault(merchant_id, AESGCM.generate_key(bit_length=256))

    def get(self, merchant_id: UUID) -> bytes | None:
        return self._keys.get(merchant_id)

    def shred(self, merchant_id: UUID) -> None:
        with self._lock:
            self._keys.pop(merchant_id, None)
            self._shredded.add(merchant_id)


def normalise(card: str) -> str:
    text = card.strip()
    if not text:
        raise InvalidInput("a card key cannot be empty")
    if len(text) > MAX_CARD_LENGTH:
        raise InvalidInput(f"a card key is at most {MAX_CARD_LENGTH} characters")
    return text


def fingerprint(key: bytes, card: str) -> str:
    """A keyed digest for de-duplication: equal cards match without revealing either."""
    return hmac.new(key, b"fp:" + card.encode(), hashlib.sha256).hexdigest()[:32]


def seal(key: bytes, card: str, card_id: UUID) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, card.encode(), card_id.bytes)
    return base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes, token: str, card_id: UUID) -> str:
    raw = base64.b64decode(token)
    return AESGCM(key).decrypt(raw[:12], raw[12:], card_id.bytes).decode()
