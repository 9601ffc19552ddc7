"""Merchant card keys in PostgreSQL, outside the event store, so that they can be shredded."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool, PoolTimeout

from domain.cards import SHREDDED
from domain.event_store import take_schema_turn
from domain.exceptions import InvalidState

SCHEMA = """
CREATE TABLE IF NOT EXISTS merchant_keys (
    merchant_id uuid PRIMARY KEY,
    key bytea,
    shredded_at timestamptz
)
"""


P = ParamSpec("P")
T = TypeVar("T")
ATTEMPTS = 3


def _retrying(method: Callable[P, T]) -> Callable[P, T]:
    """Every keyring statement is idempotent, so a connection lost under it is retried
    on a fresh one (the pool discards the broken one) instead of failing the request."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(ATTEMPTS):
            try:
                return method(*args, **kwargs)
            except PoolTimeout:
                raise  # the pool is exhausted: waiting again would only make it worse
            except psycopg.OperationalError:
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    return wrapper


class PostgresKeyring:
    """No in-process cache: a shred done by another process must take effect at once."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with self._pool.connection() as conn, conn.transaction():
            take_schema_turn(conn)
            conn.execute(SCHEMA)

    @_retrying
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

    @_retrying
    def get(self, merchant_id: UUID) -> bytes | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key FROM merchant_keys WHERE merchant_id = %s", (merchant_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    @_retrying
    def shred(self, merchant_id: UUID) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO merchant_keys (merchant_id, key, shredded_at) VALUES (%s, NULL, now())"
                " ON CONFLICT (merchant_id) DO UPDATE SET key = NULL, shredded_at = now()",
                (merchant_id,),
            )
