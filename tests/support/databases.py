"""Fresh databases on the test server, for tests that need a log of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo


@contextmanager
def fresh_database(any_url: str, prefix: str = "kami_t") -> Iterator[str]:
    """Create an empty database beside ``any_url``'s; yield its URL; drop it after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = make_conninfo(any_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(any_url, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
