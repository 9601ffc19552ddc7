"""Query routes read projections, consistently with a position the caller names.

``?after=N`` promises that every event up to log position N is in the answer: the
route waits (up to 5 s) for the read model to reach N, then reads the figures and the
position in one snapshot, so the position never claims more than the figures show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import Query, Request
from psycopg_pool import ConnectionPool

from consumers.positions import read_model_position
from domain.exceptions import ProjectionLagging
from projections.base import Projection, snapshot

T = TypeVar("T")

WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02
# A version is dropped once per rebuild: more than a few in a row means a missing table.
DROPPED_RETRIES = 3

After = Annotated[
    int | None,
    Query(ge=0, description="Answer only once the read model has processed this log position."),
]


def pool_of(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.kami.pool
    return pool


def read(
    request: Request,
    projection: type[Projection[Any]],
    after: int | None,
    query: Callable[[psycopg.Connection[Any]], T],
) -> tuple[T, int]:
    """Run ``query`` on the live version once it has reached ``after``; (result, position)."""
    pool = pool_of(request)
    wait = float(getattr(request.app.state, "read_wait_seconds", WAIT_SECONDS))
    deadline = time.monotonic() + wait
    dropped = 0
    while True:
        try:
            with pool.connection() as conn, snapshot(conn):
                view = projection.live(conn)
                position = read_model_position(conn, view.name)
                if after is None or position >= after:
                    return query(conn), position
        except psycopg.errors.UndefinedTable:
            # A rebuild dropped the version this snapshot found live, between reading the
            # catalog and its tables: read again, the catalog now names the new version.
            dropped += 1
            if dropped > DROPPED_RETRIES:
                # Never built here yet (e.g. Kafka mode before `kami consume` first ran):
                # the view is behind, not broken.
                raise ProjectionLagging(
                    f"the {projection.read_model} view has not been built yet; retry"
                ) from None
            continue
        if time.monotonic() >= deadline:
            raise ProjectionLagging(
                f"the {projection.read_model} view is at position {position}, not yet {after}; retry"
            )
        time.sleep(POLL_SECONDS)
