"""Read models as they stood at an instant: a throwaway build up to a log position.

``replay`` builds the read models from position zero up to the position asked for, in
temporary tables of a session of its own (``search_path=pg_temp``): they can never
collide with, nor be read as, a live or rebuilding version, and PostgreSQL drops them
when that session ends, even if the replay is killed. The live read models are not
touched. ``position_at`` turns an instant into a position: the last event whose
business timestamp (the injected clock's, stored with the event) is at or before it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from consumers import dead_letters
from consumers.runner import DEFAULT_BATCH, LogRunner
from projections import catalog
from projections.base import Projection

Rows = dict[str, list[dict[str, Any]]]  # table (short name) -> rows as column -> value


class ReplayFailed(Exception):
    """A handler failed during the replay: its result would not be the read model."""


@dataclass(frozen=True)
class Replayed:
    position: int
    read_models: dict[str, Rows]

    def as_json(self) -> str:
        return json.dumps(
            {
                "position": self.position,
                "read_models": {
                    name: {
                        table: [{k: jsonable(v) for k, v in row.items()} for row in rows]
                        for table, rows in tables.items()
                    }
                    for name, tables in self.read_models.items()
                },
            },
            indent=1,
        )

    def as_csv(self) -> str:
        """One block per table: a ``# read_model.table`` line, the header, the rows."""
        out = io.StringIO()
        blocks = [(n, t, rows) for n, tables in self.read_models.items() for t, rows in tables.items()]
        for i, (name, table, rows) in enumerate(blocks):
            if i:
                out.write("\n")
            out.write(f"# {name}.{table} at position {self.position}\n")
            out.write(table_csv(rows))
        return out.getvalue()


def table_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(list(rows[0]))
        for row in rows:
            writer.writerow([_csv_value(v) for v in row.values()])
    return out.getvalue()


def replay(
    conninfo: str,
    recorder: PostgresApplicationRecorder,
    mapper: Mapper[Any],
    classes: Sequence[type[Projection[Any]]],
    position: int,
    batch_size: int = DEFAULT_BATCH,
) -> Replayed:
    """Build these read models up to ``position`` in throwaway tables and return their rows."""
    with psycopg.connect(conninfo) as conn:
        versions = {c.read_model: catalog.live_version(conn, c.read_model) or c.VERSION for c in classes}
    # The live version numbers, so names read like the live ones; the tables are temporary.
    projections = [cls(versions[cls.read_model]) for cls in classes]
    with _TemporaryPool(conninfo) as pool:
        runner = LogRunner(pool, recorder, mapper, projections, batch_size)
        runner.catch_up(until=position)
        with pool.connection() as conn:
            failed = dead_letters.letters(conn)
            if failed:
                where = ", ".join(f"{d.consumer} at {d.position}: {d.error}" for d in failed)
                raise ReplayFailed(f"handlers failed during the replay ({where}); fix them and replay again")
            return Replayed(
                position,
                {
                    p.read_model: {
                        t.short: [dict(zip(t.column_names, row, strict=True)) for row in rows]
                        for t, rows in zip(p.tables, p.rows(conn).values(), strict=True)
                    }
                    for p in projections
                },
            )


class _TemporaryPool:
    """A one-connection pool whose session creates (and reads) only temporary tables."""

    def __init__(self, conninfo: str) -> None:
        # One connection, so every step of the runner sees the same session's tables.
        self._pool = ConnectionPool(
            conninfo, min_size=1, max_size=1, kwargs={"options": "-c search_path=pg_temp"}, open=False
        )

    def __enter__(self) -> ConnectionPool:
        self._pool.open(wait=True)
        return self._pool

    def __exit__(self, *exc: object) -> None:
        self._pool.close()  # the session ends: its temporary tables go with it


# ------------------------------------------------------------------ time to position


def position_at(
    conn: psycopg.Connection[Any], events_table: str, mapper: Mapper[Any], moment: datetime
) -> int:
    """The last log position whose event's timestamp is at or before ``moment`` (0: none).

    Asked of PostgreSQL from the stored JSON when it can be; otherwise (a cipher or
    compressor in the mapper) every event is decoded here, which is slower but the same.
    """
    found = _position_at_in_sql(conn, events_table, moment)
    if found is not None and (found == 0 or _timestamp(conn, events_table, mapper, found) <= moment):
        return found
    best = 0
    for notification in _stored(conn, events_table):
        if mapper.to_domain_event(notification).timestamp <= moment:
            best = notification.id
    return best


def _position_at_in_sql(conn: psycopg.Connection[Any], table: str, moment: datetime) -> int | None:
    query = sql.SQL(
        "SELECT coalesce(max(notification_id), 0) FROM {}"
        " WHERE (convert_from(state, 'UTF8')::jsonb #>> '{{timestamp,_data_}}')::timestamptz <= %s"
    ).format(sql.Identifier(table))
    try:
        with conn.transaction():
            row = conn.execute(query, (moment,)).fetchone()
    except psycopg.DataError:
        return None  # not plain JSON: decode in Python
    return int(row[0]) if row else 0


def _timestamp(conn: psycopg.Connection[Any], table: str, mapper: Mapper[Any], position: int) -> datetime:
    for notification in _stored(conn, table, position, position):
        moment: datetime = mapper.to_domain_event(notification).timestamp
        return moment
    raise LookupError(f"no event at position {position}")


def _stored(
    conn: psycopg.Connection[Any], table: str, first: int = 1, last: int | None = None
) -> Iterator[Notification]:
    query = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
        " WHERE notification_id >= %s AND (%s::bigint IS NULL OR notification_id <= %s)"
        " ORDER BY notification_id"
    ).format(sql.Identifier(table))
    with conn.transaction(), conn.cursor(name="kami_replay_scan", row_factory=tuple_row) as cur:
        cur.itersize = 5000
        cur.execute(query, (first, last, last))
        for nid, oid, version, topic, state in cur:
            yield Notification(
                id=nid, originator_id=oid, originator_version=version, topic=topic, state=bytes(state)
            )


# -------------------------------------------------------------------------- values


def jsonable(value: Any) -> Any:
    """A row value as JSON shows it: ids and money as strings, times in ISO 8601."""
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _csv_value(value: Any) -> Any:
    plain = jsonable(value)
    if plain is None:
        return ""
    if isinstance(plain, list):
        return json.dumps(plain)
    return plain
