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


def live_versions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Every promoted read model's live version, in one query (a follower's check for
    promotions runs often)."""
    exists = conn.execute("SELECT to_regclass('rm_catalog') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT read_model, live_version FROM rm_catalog").fetchall()
    return {str(name): int(version) for name, version in rows}


def pin(conn: psycopg.Connection[Any], read_model: str, version: int) -> None:
    """Give a read model its catalog row (at the version it is read at) if it has none.

    A rebuild does this before it starts: Kafka consumers that follow the live version
    hold that row (``FOR SHARE``) while they apply a batch, so the switch, which updates
    it, waits for them, and none of them applies a batch to a version being retired.
    """
    conn.execute(SCHEMA)
    conn.execute(
        "INSERT INTO rm_catalog (read_model, live_version) VALUES (%s, %s)"
        " ON CONFLICT (read_model) DO NOTHING",
        (read_model, version),
    )


# ------------------------------------------------------- rebuilds under way

REBUILDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rm_rebuilds (
    read_model text PRIMARY KEY,
    version integer NOT NULL,
    replaces integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
)
"""


def rebuilding(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    """Read model -> (version being built, the live version it replaces): half-built
    versions a ``kami rebuild`` resumes, and that status reports."""
    exists = conn.execute("SELECT to_regclass('rm_rebuilds') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT read_model, version, replaces FROM rm_rebuilds").fetchall()
    return {str(name): (int(version), int(replaces)) for name, version, replaces in rows}


def start_rebuild(conn: psycopg.Connection[Any], read_model: str, version: int, replaces: int) -> None:
    """Record a version under construction before its tables exist, so an interrupted
    rebuild is always found again (and its tables with it)."""
    conn.execute(REBUILDS_SCHEMA)
    conn.execute(
        "INSERT INTO rm_rebuilds (read_model, version, replaces) VALUES (%s, %s, %s)"
        " ON CONFLICT (read_model) DO UPDATE SET version = EXCLUDED.version,"
        " replaces = EXCLUDED.replaces, started_at = now()",
        (read_model, version, replaces),
    )


def end_rebuild(conn: psycopg.Connection[Any], read_model: str) -> None:
    conn.execute(REBUILDS_SCHEMA)
    conn.execute("DELETE FROM rm_rebuilds WHERE read_model = %s", (read_model,))
