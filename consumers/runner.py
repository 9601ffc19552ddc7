"""The in-process log follower: reads the notification log in order and feeds consumers
(projections and process managers) in batches.

One step serves many consumers (``step_many``): it locks their tracking rows, reads the
log once from the lowest of their positions, decodes each notification at most once,
applies each consumer's slice inside a savepoint of its own, and records every position
in the same transaction as the writes. A crash therefore replays at most an uncommitted
step, and a second runner waits on the row locks rather than apply a batch twice.

Positions are exact: a consumer's position is the log position up to which it has
applied every event it wants, never more. The read asks the server only for the topics
the consumers want (``topics``), up to the head of the log as it stood before the read;
when fewer than a batch come back, everything up to that head has been seen, so the
positions move to the head, even past events no consumer wants. ``?after=N`` therefore
never waits on an event a projection ignores.

A consumer that fails (``HandlerFailed`` from a projection, or any error while it
applies) is rolled back to its savepoint and keeps its position; the other consumers'
work in that step still commits, and then the error propagates.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row
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
    # Topics it wants; events of other topics are neither read nor decoded for it.
    topics: frozenset[str]

    def create_tables(self, conn: psycopg.Connection[Any]) -> None: ...

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        """Apply (notification id, domain event) pairs inside the caller's transaction."""


def ensure_tracking(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(TRACKING_SCHEMA)
    conn.execute("INSERT INTO kami_tracking (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))


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
        names = [c.name for c in self.consumers]
        if len(set(names)) != len(names):
            raise ValueError(f"two consumers share a tracking name: {names}")
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
        return self.step_many([consumer])

    def step_many(self, consumers: Sequence[Consumer] | None = None) -> int:
        """One read of the log for these consumers (all by default), applied to each.

        Returns the notifications read: 0 when the consumers had nothing left to read,
        though their positions may still have moved up to the head past events they
        ignore.
        """
        read, _ = self._step(list(self.consumers if consumers is None else consumers))
        return read

    def catch_up(self) -> int:
        """Run every consumer until it has read the whole log as it stands now; returns
        the notifications read.

        Consumers at the same position share each read (after a first catch-up they all
        sit at the head together). One far behind, such as a rebuild from zero, reads on
        its own, so the others keep up with the log meanwhile instead of waiting for it.
        """
        total = 0
        positions = self._positions()
        while True:
            cohorts: dict[int, list[Consumer]] = {}
            for consumer in self.consumers:
                cohorts.setdefault(positions.get(consumer.name, 0), []).append(consumer)
            moved = False
            for cohort in cohorts.values():
                read, after = self._step(cohort)
                total += read
                moved = moved or any(after[c.name] != positions.get(c.name, 0) for c in cohort)
                positions.update(after)
            if not moved:
                return total

    def run_forever(self, stop: threading.Event, on_idle: Callable[[], object] | None = None) -> None:
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

    # ------------------------------------------------------------------------ a step

    def _positions(self) -> dict[str, int]:
        with self._pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT name, position FROM kami_tracking WHERE name = ANY(%s)",
                ([c.name for c in self.consumers],),
            )
            return {name: int(position) for name, position in cur}

    def _step(self, consumers: list[Consumer]) -> tuple[int, dict[str, int]]:
        """(notifications read, each consumer's position after the step)."""
        if not consumers:
            return 0, {}
        failure: BaseException | None = None
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            # Locked in name order, so two runners over overlapping consumers queue
            # rather than deadlock; the second then starts from the first's positions.
            cur.execute(
                "SELECT name, position FROM kami_tracking WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
                ([c.name for c in consumers],),
            )
            before = {name: int(position) for name, position in cur}
            missing = [c.name for c in consumers if c.name not in before]
            if missing:
                raise LookupError(f"no tracking row for {missing}: was the runner set up?")
            # The head first: every id up to it is committed (writers take turns on a
            # table lock), so a read bounded by it is complete, never missing an event
            # that commits later with a lower id.
            head = self._recorder.max_notification_id() or 0
            behind = [c for c in consumers if before[c.name] < head]
            if not behind:
                return 0, before
            start = min(before[c.name] for c in behind)
            notifications = self._read(start, head, frozenset().union(*(c.topics for c in behind)))
            # A full batch ends at its last id; a short one has seen up to the head.
            end = notifications[-1].id if len(notifications) >= self._batch_size else head
            ids = [n.id for n in notifications]
            decoded: dict[int, Any] = {}
            after = dict(before)
            for consumer in behind:
                position = before[consumer.name]
                if position >= end:
                    continue
                wanted = consumer.topics
                events = [
                    (n.id, self._decode_once(n, decoded))
                    for n in notifications[bisect.bisect_right(ids, position) :]
                    if n.topic in wanted
                ]
                if events:
                    try:
                        with conn.transaction():  # a savepoint: a failure undoes this one only
                            consumer.apply(conn, events)
                    except Exception as error:
                        failure = failure or error
                        continue
                after[consumer.name] = end
            moved = [(name, after[name]) for name in after if after[name] != before[name]]
            if moved:
                cur.execute(
                    "UPDATE kami_tracking t SET position = m.position"
                    " FROM unnest(%s::text[], %s::bigint[]) AS m(name, position)"
                    " WHERE t.name = m.name",
                    ([n for n, _ in moved], [p for _, p in moved]),
                )
        if failure is not None:
            # The others' work is committed; the failed consumer kept its position.
            raise failure
        return len(notifications), after

    def _read(self, start: int, head: int, topics: Iterable[str]) -> Sequence[Notification]:
        wanted = sorted(topics)
        if not wanted:
            return []  # nothing wanted: the positions simply move to the head
        return self._recorder.select_notifications(
            start=start,
            limit=self._batch_size,
            stop=head,
            topics=wanted,
            inclusive_of_start=False,
        )

    def _decode_once(self, notification: Notification, decoded: dict[int, Any]) -> Any:
        # Consumers sharing a read share the decoded event: decoding is most of the
        # cost of a light consumer, and handlers never change their events.
        event = decoded.get(notification.id)
        if event is None:
            event = decoded[notification.id] = self._decode(notification)
        return event

    def _decode(self, notification: Notification) -> Any:
        return self._mapper.to_domain_event(notification)
