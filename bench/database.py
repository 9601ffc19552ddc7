"""Where benchmarks run: a PostgreSQL server, and a fresh database on it per benchmark."""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_DIR = Path(".kami") / "bench-pg"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def server_url() -> str:
    """KAMI_BENCH_DATABASE_URL, else the local server, else the embedded one when it exists."""
    url = os.environ.get("KAMI_BENCH_DATABASE_URL")
    if url:
        return url
    if _reachable(DEFAULT_SERVER):
        return DEFAULT_SERVER
    if importlib.util.find_spec("kami.embedded") is None:
        raise SystemExit(f"bench: no PostgreSQL at {DEFAULT_SERVER}; set KAMI_BENCH_DATABASE_URL")
    from kami.embedded import embedded_server_url

    print(f"bench: no PostgreSQL at {DEFAULT_SERVER}, starting the embedded one", file=sys.stderr)
    return str(embedded_server_url(str(EMBEDDED_DIR)))


@contextmanager
def fresh_database(server: str, label: str) -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    name = f"kami_bench_{label}_{secrets.token_hex(4)}"
    admin = make_conninfo(server, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
