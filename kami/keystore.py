"""Merchant card keys in PostgreSQL, outside the event store, so that they can be shredded."""

from __future__ import annotations

from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from domain.cards import SHREDDED
from domain.exceptions import InvalidState

SCHEMA = """
CREATE TABLE IF NOT EXISTS merchant_keys (
    merchant_id uuid PRIMARY KEY,
    key bytea,
    shredded_at timestamptz
)
"""


class PostgresKeyring:
    """No in-process cache: a shred done by another process must take effect at once."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with self._pool.connection() as conn:
            conn.execute(SCHEMA)

    def create(self, merchant_id: UUID) -> bytes:
        fresh = AESGCM.generate_key(bit_length=256)
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO merchant_keys (merchant_id, key) VALUES (%s, %s)"
                " ON CONFLICT (merchant_id) DO NOTHING",
                (merchant_id, fresh),
            )
            row = conn.execute(
                "SELECT key FROM merchant_keys WHERE merchant_id = %s", (merchant_id,)
            ).fetchone()
        if row is None or row[0] is None:
            raise InvalidState(SHREDDED)
        return bytes(row[0])

    def get(self, merchant_id: UUID) -> bytes | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key FROM merchant_keys WHERE merchant_id = %s", (merchant_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def shred(self, merchant_id: UUID) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO merchant_keys (merchant_id, key, shredded_at) VALUES (%s, NULL, now())"
                " ON CONFLICT (merchant_id) DO UPDATE SET key = NULL, shredded_at = now()",
                (merchant_id,),
            )

    def is_shredded(self, merchant_id: UUID) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT shredded_at IS NOT NULL FROM merchant_keys WHERE merchant_id = %s", (merchant_id,)
            ).fetchone()
        return bool(row and row[0])
