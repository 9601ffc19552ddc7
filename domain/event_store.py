"""eventsourcing's PostgreSQL recorder, plus the two questions kami's aggregate cache asks.

Its statements are rendered to text once (``_rendered``), eventsourcing's ``select_events``
included: psycopg renders a composed statement again on every execute.

- ``versions_and_head``: the current version of some aggregates and the log's head, in
  one round trip (a command that wrote nothing checks what it read with it).
- ``insert_batch``: the group committer's write. After taking the table lock that
  serialises every writer, one statement checks the current versions of what each of the
  batch's commands read, and inserts the events of the commands whose reads are current.
  Under the lock nothing can change between that check and the insert, so what a command
  read is still current when its events commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Identifier

# Every kami process holds this advisory lock while it creates tables: processes starting
# together on a new database (API, relay, consumers) would otherwise race on the catalog
# ("tuple concurrently updated", or a unique violation on pg_type), CREATE ... IF NOT
# EXISTS notwithstanding.
SCHEMA_LOCK_KEY = 0x6B616D6A


def take_schema_turn(conn: Any) -> None:
    """Wait for other kami processes creating tables; held to the end of the transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))


@dataclass(frozen=True)
class Written:
    """What one ``insert_batch`` did: the notification id of each inserted event, by
    (originator id, version), and for each command the store refused, what it read stale."""

    ids: Mapping[tuple[UUID, int], int]
    stale: Mapping[int, frozenset[UUID]]


# One command of a batch: its events, and the version of everything it read.
Command = tuple[Sequence[StoredEvent], Mapping[UUID, int]]


class ShopRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        id_type = Identifier(self.datastore.originator_id_type)
        # Each aggregate's version is its last row, one step down the primary key's index
        # (max() with GROUP BY would read every version: a card bucket has thousands).
        self._versions_and_head_statement = _rendered(
            SQL(
                "SELECT ids.id, (" + _LAST_VERSION.format(id="ids.id") + ") AS version"
                " FROM unnest(%s::{id_type}[]) AS ids(id)"
                " UNION ALL SELECT NULL, max(notification_id) FROM {schema}.{table}"
            ).format(schema=schema, table=table, id_type=id_type)
        )
        function = Identifier(f"kami_write_batch_{self.events_table_name}")
        self._insert_batch_statement = _rendered(
            SQL("SELECT * FROM {schema}.{function}(%s::json, %s::json)").format(
                schema=schema, function=function
            )
        )
        self._select_events_statements: dict[tuple[bool, bool, bool, bool], str] = {}
        # The whole write in one statement, so in one round trip: the table lock is held
        # while PostgreSQL works and flushes, never while a Python thread waits for its
        # process's GIL between statements. With several API processes that wait was
        # most of the lock's time, and every other writer queued behind it.
        self.sql_create_statements.append(
            SQL(_INSERT_BATCH.replace("{last_version}", _LAST_VERSION.format(id="ids.oid"))).format(
                schema=schema,
                table=table,
                function=function,
                id_type=id_type,
                lock_timeout=self.datastore.lock_timeout,
                channel=Identifier(self.channel_name),
            )
        )
        # kami_write_batch's predecessor, unused since: databases made before it still hold it.
        self.sql_create_statements.append(
            SQL("DROP FUNCTION IF EXISTS {schema}.{function}").format(
                schema=schema, function=Identifier(f"kami_insert_batch_{self.events_table_name}")
            )
        )

    def create_table(self) -> None:
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """eventsourcing's ``select_events``, with each shape of the statement rendered once:
        it composes and renders the statement on every call, and an aggregate missing from
        the cache (a new txn id, another process's order) is loaded on the hot path."""
        shape = (gt is not None, lte is not None, desc, limit is not None)
        statement = self._select_events_statements.get(shape)
        if statement is None:
            composed = SQL(
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
                " WHERE originator_id = %s"
            ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
            if gt is not None:
                composed += SQL(" AND originator_version > %s")
            if lte is not None:
                composed += SQL(" AND originator_version <= %s")
            composed += SQL(" ORDER BY originator_version " + ("DESC" if desc else "ASC"))
            if limit is not None:
                composed += SQL(" LIMIT %s")
            statement = self._select_events_statements.setdefault(shape, _rendered(composed))
        params = [originator_id, *(p for p in (gt, lte, limit) if p is not None)]
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True)
            return [
                StoredEvent(originator_id=oid, originator_version=version, topic=topic, state=bytes(state))
                for oid, version, topic, state in curs.fetchall()
            ]

    def versions_and_head(self, ids: Sequence[UUID]) -> tuple[dict[UUID, int], int]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._versions_and_head_statement, (_uuid_array(ids),), prepare=True)
            rows = curs.fetchall()
        head = 0
        versions: dict[UUID, int] = {}
        for oid, version in rows:
            if oid is None:
                head = int(version or 0)
            elif version is not None:  # None: never stored
                versions[oid] = int(version)
        return versions, head

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_batch(self, commands: Sequence[Command]) -> Written:
        """Insert, in one transaction under the table lock, the events of every command
        whose reads are all still the stored versions (an aggregate never stored reads
        as version 0). The others are left out and named in ``Written.stale``.

        Retried on a lost connection like eventsourcing's ``insert_events``; after a lost
        COMMIT the retry finds the commands' own events, so they come back stale (or, for
        a command that read nothing, as an IntegrityError): the caller asks the store.
        """
        # The batch goes as two JSON documents rather than eight arrays: psycopg dumps an
        # array element by element in Python, which was half the committer thread's CPU
        # (637 -> 269 us of client CPU for a batch of 3 orders' commands, and less work
        # for PostgreSQL too). States go as hex: they are bytes, whatever they hold.
        events = []
        reads_json = []
        for n, (stored, reads) in enumerate(commands):
            for event in stored:
                events.append(
                    {
                        "c": n,
                        "o": len(events),
                        "i": str(event.originator_id),
                        "v": event.originator_version,
                        "t": event.topic,
                        "s": event.state.hex(),
                    }
                )
            reads_json.extend({"c": n, "i": str(oid), "v": version} for oid, version in reads.items())
        params = (json.dumps(events), json.dumps(reads_json))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._insert_batch_statement, params, prepare=True)
            rows = curs.fetchall()
        ids: dict[tuple[UUID, int], int] = {}
        stale: dict[int, set[UUID]] = {}
        for stale_cmd, oid, version, notification_id in rows:
            if stale_cmd is None:
                ids[(oid, int(version))] = int(notification_id)
            else:
                stale.setdefault(int(stale_cmd), set()).add(oid)
        return Written(ids, {n: frozenset(oids) for n, oids in stale.items()})


def _uuid_array(ids: Sequence[UUID]) -> str:
    """Ids as a PostgreSQL array literal: psycopg dumps a list element by element in
    Python. Each goes through UUID, so nothing but a UUID's text enters the literal."""
    return "{" + ",".join(str(oid if type(oid) is UUID else UUID(str(oid))) for oid in ids) + "}"


def _rendered(statement: Composable) -> str:
    """A composed statement as text, once: psycopg renders a ``Composable`` (quoting each
    identifier) on every execute. The names are kami's own plain identifiers, so quoting
    them without a connection gives the same text."""
    return statement.as_string()


# The stored version of aggregate {id}: its last row, read backwards off the primary key.
_LAST_VERSION = (
    "SELECT e.originator_version FROM {{schema}}.{{table}} AS e"
    " WHERE e.originator_id = {id} ORDER BY e.originator_version DESC LIMIT 1"
)

# plpgsql: output columns are variables inside the body, hence the unambiguous names
# and the qualified columns. The reads are checked after the lock is taken: no writer
# can come between that check and the insert. A read is stale as in
# domain.aggregate_cache.stale_reads: the stored version (0 if none) is not the one read.
# Events are inserted in the order given, so notification ids follow each aggregate's
# versions.
_INSERT_BATCH = """
CREATE OR REPLACE FUNCTION {schema}.{function}(events json, reads json)
RETURNS TABLE (stale_cmd int, originator_id {id_type}, originator_version bigint,
               notification_id bigint)
LANGUAGE plpgsql AS $body$
BEGIN
    SET LOCAL lock_timeout = '{lock_timeout}s';
    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;
    NOTIFY {channel};
    RETURN QUERY
    WITH read_set AS (
        SELECT r.c AS cmd, r.i AS oid, r.v AS seen
        FROM json_to_recordset(reads) AS r(c int, i {id_type}, v bigint)
    ), stored AS (
        SELECT ids.oid, ({last_version}) AS version
        FROM (SELECT DISTINCT read_set.oid FROM read_set) AS ids
    ), stale AS (
        SELECT read_set.cmd, read_set.oid FROM read_set LEFT JOIN stored ON stored.oid = read_set.oid
        WHERE coalesce(stored.version, 0) <> read_set.seen
    ), inserted AS (
        INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state)
        SELECT n.i, n.v, n.t, decode(n.s, 'hex')
        FROM json_to_recordset(events) AS n(c int, o int, i {id_type}, v bigint, t text, s text)
        WHERE NOT EXISTS (SELECT 1 FROM stale WHERE stale.cmd = n.c)
        ORDER BY n.o
        RETURNING t.originator_id, t.originator_version, t.notification_id
    )
    SELECT NULL::int, i.originator_id, i.originator_version, i.notification_id FROM inserted AS i
    UNION ALL
    SELECT s.cmd, s.oid, NULL::bigint, NULL::bigint FROM stale AS s;
END
$body$
"""
