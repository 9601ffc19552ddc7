"""Which version of each read model is live: the one query routes read.

A read model without a row here is read at its code version (``Projection.VERSION``).
A rebuild builds version n+1 beside the live version n, under its own tables and its
own tracking name; once it has caught up, ``promote`` switches reads to it in one
committed row update, and the old version's tables can be dropped.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS rm_catalog (
    read_model text PRIMARY KEY,
    live_version integer NOT NULL
)
"""


def live_version(conn: psycopg.Connection[Any], read_model: str) -> int | None:
    exists = conn.execute("SELECT to_regclass('rm_catalog') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT live_version FROM rm_catalog WHERE read_model = %s", (read_model,)).fetchone()
    return int(row[0]) if row else None


def promote(conn: psycopg.Connection[Any], read_model: str, version: int) -> None:
    """Switch reads to this version (the caller has checked it has caught up)."""
    conn.execute(SCHEMA)
    conn.execute(
        "INSERT INTO rm_catalog (read_model, live_version) VALUES (%s, %s)"
        " ON CONFLICT (read_model) DO UPDATE SET live_version = EXCLUDED.live_version",
        (read_model, version),
    )
