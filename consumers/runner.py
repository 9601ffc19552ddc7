"""The in-process log follower: reads the notification log in order and feeds consumers
(projections and process managers) in batches. Each batch's writes and the consumer's
position commit in one transaction, so a crash replays at most an uncommitted batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg_pool import ConnectionPool

TRACKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS kami_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0
)
"""

DEFAULT_BATCH = 1000


class Consumer(Protocol):
    """Something that turns events into rows: a projection or a process manager."""

    name: str
    # Topics it wants; events of other topics are passed over without being decoded.
    topics: frozenset[str]

    def create_tables(self, conn: psycopg.Connection[Any]) -> None: ...

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        """Apply (notification id, domain event) pairs inside the caller's transaction."""


def ensure_tracking(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(TRACKING_SCHEMA)
    conn.execute(
        "INSERT INTO kami_tracking (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,)
    )


def read_position(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT position FROM kami_tracking WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


class LogRunner:
    def __init__(
        self,
        pool: ConnectionPool,
        recorder: PostgresApplicationRecorder,
        mapper: Mapper[Any],
        consumers: Sequence[Consumer],
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self._pool = pool
        self._recorder = recorder
        self._mapper = mapper
        self.consumers = list(consumers)
        self._batch_size = batch_size
        with self._pool.connection() as conn:
            for consumer in self.consumers:
                with conn.transaction():
                    ensure_tracking(conn, consumer.name)
                    consumer.create_tables(conn)

    def position(self, name: str) -> int:
        with self._pool.connection() as conn:
            return read_position(conn, name)

    def step(self, consumer: Consumer) -> int:
        """Apply the next batch of the log to one consumer; returns notifications read."""
        with self._pool.connection() as conn, conn.transaction():
            # The row lock makes a second runner wait rather than apply the batch twice.
            row = conn.execute(
                "SELECT position FROM kami_tracking WHERE name = %s FOR UPDATE", (consumer.name,)
            ).fetchone()
            position = int(row[0]) if row else 0
            notifications = self._recorder.select_notifications(
                start=position, limit=self._batch_size, inclusive_of_start=False
            )
            if not notifications:
                return 0
            events = [
                (n.id, self._decode(n)) for n in notifications if n.topic in consumer.topics
            ]
            if events:
                consumer.apply(conn, events)
            conn.execute(
                "UPDATE kami_tracking SET position = %s WHERE name = %s",
                (notifications[-1].id, consumer.name),
            )
            return len(notifications)

    def catch_up(self) -> int:
        """Run every consumer until it has read the whole log as it stands now."""
        total = 0
        for consumer in self.consumers:
            while (n := self.step(consumer)) > 0:
                total += n
        return total

    def _decode(self, notification: Notification) -> Any:
        return self._mapper.to_domain_event(notification)

    def run_forever(self, stop: threading.Event, on_idle: Any = None) -> None:
        """Follow the log: wake on NOTIFY from writers, and at least every second."""
        channel = self._recorder.channel_name
        with psycopg.connect(self._pool.conninfo, autocommit=True) as listener:
            listener.execute(f'LISTEN "{channel}"')
            while not stop.is_set():
                self.catch_up()
                if on_idle is not None:
                    on_idle()
                for _ in listener.notifies(timeout=1.0, stop_after=1):
                    pass
