"""eventsourcing's PostgreSQL recorder, plus the two questions kami's aggregate cache asks.

- ``versions_and_head``: the current version of some aggregates and the log's head, in
  one round trip (a command that wrote nothing checks what it read with it).
- ``insert_events(..., keep=...)``: before inserting, and after taking the table lock
  that serialises every writer, the recorder reads the current versions of what the
  batch's commands read and lets ``keep`` drop the commands that read stale state. Under
  the lock nothing can change between that check and the insert, so what a command read
  is still current when its events commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

# Given the current versions of the ids it asked about, the events still to insert.
Keep = Callable[[Mapping[UUID, int]], Sequence[StoredEvent]]
# Every kami process holds this advisory lock while it creates tables: processes starting
# together on a new database (API, relay, consumers) would otherwise race on the catalog
# ("tuple concurrently updated", or a unique violation on pg_type), CREATE ... IF NOT
# EXISTS notwithstanding.
SCHEMA_LOCK_KEY = 0x6B616D6A


def take_schema_turn(conn: Any) -> None:
    """Wait for other kami processes creating tables; held to the end of the transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))


class NothingToInsert(Exception):
    """Every command of the batch read stale state; nothing was written."""


class ShopRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = SQL("{schema}.{table}").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        self._versions_statement = SQL(
            "SELECT originator_id AS id, max(originator_version) AS version FROM {table}"
            " WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(table=table)
        self._versions_and_head_statement = SQL(
            "SELECT originator_id AS id, max(originator_version) AS version FROM {table}"
            " WHERE originator_id = ANY(%s) GROUP BY originator_id"
            " UNION ALL SELECT NULL, max(notification_id) FROM {table}"
        ).format(table=table)

    def create_table(self) -> None:
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))

    def versions_and_head(self, ids: Sequence[UUID]) -> tuple[dict[UUID, int], int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._versions_and_head_statement, (list(ids),), prepare=True)
            rows = curs.fetchall()
        head = 0
        versions: dict[UUID, int] = {}
        for row in rows:
            if row["id"] is None:
                head = int(row["version"] or 0)
            else:
                versions[row["id"]] = int(row["version"])
        return versions, head

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        keep: Keep | None = None,
        reads: Sequence[UUID] = (),
        **kwargs: Any,
    ) -> None:
        self._lock_table(curs)
        if keep is not None:
            curs.execute(self._versions_statement, (list(reads),), prepare=True)
            current = {row["id"]: int(row["version"]) for row in curs.fetchall()}
            stored_events = keep(current)
            if not stored_events:
                raise NothingToInsert
        self._notify_channel(curs)
        PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events, **kwargs)
