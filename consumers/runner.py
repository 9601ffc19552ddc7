"""The in-process log follower: reads the notification log in order and feeds consumers
(projections and process managers) in batches.

One step serves many consumers (``step_many``): it locks their tracking rows, reads the
log once from the lowest of their positions, decodes each notification at most once,
applies each consumer's slice inside a savepoint of its own, and records every position
in the same transaction as the writes. A crash therefore replays at most an uncommitted
step, and a second runner waits on the row locks rather than apply a batch twice.

Positions are exact: a consumer's position is the log position up to which it has
applied every event it wants, never more. The read asks the server only for the topics
the consumers want (``topics``), up to the head of the log as that same statement sees
it; when fewer than a batch come back, everything up to that head has been seen, so the
positions move to the head, even past events no consumer wants. ``?after=N`` therefore
never waits on an event a projection ignores.

A consumer that fails is rolled back to its savepoint; the other consumers' work in
that step still commits. What happens next depends on the failure:

- ``HandlerFailed`` (a projection's handler raised on one event): the event goes to the
  dead letters (``consumers.dead_letters``) in the step's transaction, and the
  projection's ``on_failure`` policy decides. ``stop``: the events before it are
  applied, the position stops right before it, and later steps leave that consumer
  alone until ops retry or skip the letter. ``skip``: the batch is applied again
  without that event. Either way the step goes on and nothing is dropped unrecorded.
- Any other error (the database, a bug outside a handler): the consumer keeps its
  position and, once the others' work is committed, the error propagates.

A consumer whose tracking row has gone was retired by a rebuild that replaced its
version (``consumers.rebuild``): steps leave it alone (``retired``), so a follower that
has not yet swapped it for the new version never writes to dropped tables.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from consumers import dead_letters
from domain.event_store import take_schema_turn
from projections.base import SKIP, STOP, HandlerFailed

log = logging.getLogger(__name__)

TRACKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS kami_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0
)
"""

DEFAULT_BATCH = 1000
# A follower that gathers does so only after a catch-up that read at least this many
# notifications: when it is busy. Under load its catch-ups are that large (a few hundred
# notifications), and gathering makes its steps fewer and larger; under light load a
# step is cheap anyway, and waiting would only delay every ``?after=`` read.
GATHER_AFTER = 100


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
        _check_names(self.consumers)
        self._batch_size = batch_size
        # Tracking names whose row a rebuild deleted (their version was replaced).
        self.retired: set[str] = set()
        # Where each consumer stood after this runner's last step. Only for grouping the
        # consumers of a catch-up (a step reads the real positions under their row
        # locks), so a stale one costs a read, never an event.
        self._known: dict[str, int] = {}
        self._read_statement = _read_statement(recorder)
        with self._pool.connection() as conn:
            with conn.transaction():
                take_schema_turn(conn)
                conn.execute(TRACKING_SCHEMA)
                dead_letters.ensure_schema(conn)
            for consumer in self.consumers:
                with conn.transaction():
                    take_schema_turn(conn)
                    ensure_tracking(conn, consumer.name)
                    consumer.create_tables(conn)

    def position(self, name: str) -> int:
        with self._pool.connection() as conn:
            return read_position(conn, name)

    def replace(self, old_name: str, consumer: Consumer) -> None:
        """Follow ``consumer`` instead of the consumer named ``old_name`` (a promotion).

        Its tracking row must exist already: a promoted version has one, built by the
        rebuild, and creating one here at 0 would quietly rebuild it once more.
        """
        with self._pool.connection() as conn:
            found = conn.execute("SELECT 1 FROM kami_tracking WHERE name = %s", (consumer.name,)).fetchone()
        if found is None:
            raise LookupError(f"{consumer.name} has no tracking row: it was never built")
        consumers = [consumer if c.name == old_name else c for c in self.consumers]
        _check_names(consumers)
        # One assignment: a reader of ``consumers`` on another thread sees old or new.
        self.consumers = consumers
        self.retired.discard(consumer.name)

    def step(self, consumer: Consumer) -> int:
        """Apply the next batch of the log to one consumer; returns notifications read."""
        return self.step_many([consumer])

    def step_many(self, consumers: Sequence[Consumer] | None = None, until: int | None = None) -> int:
        """One read of the log for these consumers (all by default), applied to each.

        Returns the notifications read: 0 when the consumers had nothing left to read,
        though their positions may still have moved up to the head past events they
        ignore. ``until`` bounds the read: no consumer goes past that position.
        """
        read, _, _ = self._step(list(self.consumers if consumers is None else consumers), until)
        return read

    def step_in(
        self, conn: psycopg.Connection[Any], consumers: Sequence[Consumer], until: int | None = None
    ) -> dict[str, int]:
        """One step inside the caller's transaction (a rebuild's switch holds locks while
        it brings a version to a position); returns each consumer's position after it.
        Any failure other than a dead letter propagates at once."""
        _, after, _, failure = self._step_in(conn, list(consumers), until)
        if failure is not None:
            raise failure
        return after

    def catch_up(self, until: int | None = None, deadline: float | None = None) -> int:
        """Run every consumer until it has read the whole log as it stands now; returns
        the notifications read.

        Consumers at the same position share each read (after a first catch-up they all
        sit at the head together). One far behind, such as a rebuild from zero, reads on
        its own, so the others keep up with the log meanwhile instead of waiting for it.
        ``until`` stops every consumer at that position; past ``deadline`` (a
        ``time.monotonic()`` value) it returns after the current round even if behind.
        """
        return self._catch_up(until, deadline)[0]

    def _catch_up(self, until: int | None, deadline: float | None) -> tuple[int, bool]:
        """(notifications read, whether every consumer has read up to the head)."""
        total = 0
        positions = self._positions()
        while True:
            cohorts: dict[int, list[Consumer]] = {}
            for consumer in self.consumers:
                cohorts.setdefault(positions.get(consumer.name, 0), []).append(consumer)
            more = False
            for cohort in cohorts.values():
                read, after, head = self._step(cohort, until)
                total += read
                # Short of the head its step read to, a consumer that moved has more to
                # read (a full batch, or a dead letter to be found stopped). One at the
                # head is done: no confirming step, whose lock, head read and commit
                # were a third of a small step's round trips.
                more = more or any(
                    after[c.name] != positions.get(c.name, 0) and after[c.name] < head
                    for c in cohort
                    if c.name in after
                )
                positions.update(after)
            if not more:
                return total, True
            if deadline is not None and time.monotonic() >= deadline:
                return total, False

    def run_forever(
        self,
        stop: threading.Event,
        on_idle: Callable[[], object] | None = None,
        idle_every: float = 1.0,
        gather: float = 0.0,
        gather_after: int = GATHER_AFTER,
    ) -> None:
        """Follow the log: wake on NOTIFY from writers, and at least every second.

        ``on_idle`` runs after each catch-up, and at least every ``idle_every`` seconds
        even under a steady stream of writes (catching up could otherwise last as long
        as the writes do): process managers tick, and promotions are noticed.

        ``gather`` (seconds): once a notification wakes it after a catch-up that read at
        least ``gather_after`` notifications, the follower waits that long before
        reading, so that commits arriving one at a time are applied together: one read,
        one transaction and one position update for the lot instead of one each.
        """
        channel = self._recorder.channel_name
        with psycopg.connect(self._pool.conninfo, autocommit=True) as listener:
            listener.execute(f'LISTEN "{channel}"')
            # Whether the last catch-up followed a notification: the backlog read at
            # start-up, or on a round no commit woke, says nothing of the load.
            woken = False
            while not stop.is_set():
                read, done = self._catch_up(None, time.monotonic() + idle_every)
                busy = woken and read >= gather_after
                if on_idle is not None:
                    on_idle()
                if not done:
                    continue  # still behind: no waiting for a notification
                woken = any(True for _ in listener.notifies(timeout=1.0, stop_after=1))
                if woken and gather > 0 and busy and stop.wait(gather):
                    return
                # The commits that notified meanwhile are read by the next catch-up: one
                # wake-up for all of them, not an empty catch-up per notification.
                for _ in listener.notifies(timeout=0.0):
                    pass

    # ------------------------------------------------------------------------ a step

    def _positions(self) -> dict[str, int]:
        """Where the consumers stand, as of this runner's last steps when it knows them all."""
        names = [c.name for c in self.consumers if c.name not in self.retired]
        if all(name in self._known for name in names):
            return dict(self._known)
        with self._pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT name, position FROM kami_tracking WHERE name = ANY(%s)", (names,))
            self._known.update({name: int(position) for name, position in cur})
        return dict(self._known)

    def _step(self, consumers: list[Consumer], until: int | None = None) -> tuple[int, dict[str, int], int]:
        """(notifications read, each consumer's position after the step, the head it read to)."""
        if not consumers:
            return 0, {}, 0
        with self._pool.connection() as conn:
            try:
                with conn.transaction():
                    read, after, head, failure = self._step_in(conn, consumers, until, careful=False)
            except _Careful:
                # A consumer failed: the step is undone and done again with each consumer
                # in a savepoint, so that a failure undoes that consumer's work only and
                # its dead letter is recorded as its policy says.
                with conn.transaction():
                    read, after, head, failure = self._step_in(conn, consumers, until)
        self._known.update(after)
        if failure is not None:
            # The others' work is committed; the failed consumer kept its position.
            raise failure
        return read, after, head

    def _step_in(
        self,
        conn: psycopg.Connection[Any],
        consumers: list[Consumer],
        until: int | None,
        *,
        careful: bool = True,
    ) -> tuple[int, dict[str, int], int, BaseException | None]:
        """(notifications read, positions after, the head read to, a consumer's failure).

        Not ``careful``: the consumers apply straight into the step's transaction, and
        the first failure raises _Careful for the caller to undo the step and redo it
        carefully. A savepoint per consumer costs two round trips, and under load the
        follower ran one step per few commits with a dozen consumers."""
        failure: BaseException | None = None
        with conn.cursor(row_factory=tuple_row) as cur:
            # Locked in name order, so two runners over overlapping consumers queue
            # rather than deadlock; the second then starts from the first's positions.
            # A consumer stopped on a dead letter is read along, to be left alone.
            cur.execute(
                "SELECT t.name, t.position, EXISTS (SELECT 1 FROM kami_dead_letters d"
                " WHERE d.consumer = t.name AND d.status = %s)"
                " FROM kami_tracking t WHERE t.name = ANY(%s) ORDER BY t.name FOR UPDATE OF t",
                (dead_letters.STOPPED, [c.name for c in consumers]),
            )
            rows = cur.fetchall()
        before = {str(name): int(position) for name, position, _ in rows}
        stopped = {str(name) for name, _, is_stopped in rows if is_stopped}
        retired = {c.name for c in consumers if c.name not in before} - self.retired
        if retired:
            log.info("leaving %s alone: a rebuild replaced and dropped it", sorted(retired))
            self.retired |= retired
        readers = [c for c in consumers if c.name in before and c.name not in stopped]
        if not readers:
            return 0, before, 0, None
        start = min(before[c.name] for c in readers)
        head, notifications = self._read(conn, start, until, frozenset().union(*(c.topics for c in readers)))
        behind = [c for c in readers if before[c.name] < head]
        if not behind:
            return 0, before, head, None
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
            if events and not careful:
                try:
                    consumer.apply(conn, events)
                except Exception as error:
                    raise _Careful from error
            elif events:
                try:
                    stopped_at = self._apply(conn, consumer, events, notifications, ids)
                except Exception as error:
                    failure = failure or error
                    continue
                if stopped_at is not None:
                    after[consumer.name] = stopped_at
                    continue
            after[consumer.name] = end
        moved = [(name, after[name]) for name in after if after[name] != before[name]]
        if moved:
            conn.execute(
                "UPDATE kami_tracking t SET position = m.position"
                " FROM unnest(%s::text[], %s::bigint[]) AS m(name, position)"
                " WHERE t.name = m.name",
                ([n for n, _ in moved], [p for _, p in moved]),
            )
        return len(notifications), after, head, failure

    def _apply(
        self,
        conn: psycopg.Connection[Any],
        consumer: Consumer,
        events: list[tuple[int, Any]],
        notifications: Sequence[Notification],
        ids: list[int],
    ) -> int | None:
        """Apply a consumer's slice in a savepoint, sending a failed event to the dead
        letters; returns the position it stopped at (right before the event) under the
        ``stop`` policy, None when the slice went through."""
        while True:
            try:
                with conn.transaction():  # a savepoint: a failure undoes this one only
                    consumer.apply(conn, events)
                return None
            except HandlerFailed as failed:
                at = bisect.bisect_left(ids, failed.position)
                if at == len(ids) or ids[at] != failed.position:
                    raise  # not an event of this read: nothing to record it from
                policy = getattr(consumer, "on_failure", STOP)
                dead_letters.record(conn, consumer.name, policy, notifications[at], failed.position, failed)
                if policy != SKIP:
                    # Stop right before it, keeping the work of the events before it.
                    earlier = [pair for pair in events if pair[0] < failed.position]
                    if earlier:
                        with conn.transaction():
                            consumer.apply(conn, earlier)
                    return failed.position - 1
                events = [pair for pair in events if pair[0] != failed.position]

    def _read(
        self, conn: psycopg.Connection[Any], start: int, until: int | None, topics: Iterable[str]
    ) -> tuple[int, list[Notification]]:
        """(the head of the log, the next batch of these topics after ``start`` up to it).

        One statement, so one snapshot: every id up to the head it sees is committed
        (writers take turns on a table lock, and commit in id order), so the read is
        complete, never missing an event that commits later with a lower id. Nothing
        wanted (no topics): no rows, and the positions simply move to the head.
        """
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._read_statement,
                {"start": start, "until": until, "topics": sorted(topics), "limit": self._batch_size},
                prepare=True,
            )
            rows = cur.fetchall()
        head = int(rows[0][0] or 0) if rows else 0
        if until is not None:
            head = min(head, until)
        notifications = [
            Notification(
                id=row[1], originator_id=row[2], originator_version=row[3], topic=row[4], state=bytes(row[5])
            )
            for row in rows
            if row[1] is not None
        ]
        return head, notifications

    def _decode_once(self, notification: Notification, decoded: dict[int, Any]) -> Any:
        # Consumers sharing a read share the decoded event: decoding is most of the
        # cost of a light consumer, and handlers never change their events.
        event = decoded.get(notification.id)
        if event is None:
            event = decoded[notification.id] = self._decode(notification)
        return event

    def _decode(self, notification: Notification) -> Any:
        return self._mapper.to_domain_event(notification)


def _read_statement(recorder: PostgresApplicationRecorder) -> SQL | Any:
    """The head (bounded by ``until``) and the batch after ``start`` up to it; a row with
    the head alone when there is nothing to read."""
    table = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    return SQL(
        "SELECT h.head, e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
        " FROM (SELECT max(notification_id) AS head FROM {table}) AS h"
        " LEFT JOIN LATERAL (SELECT * FROM {table} WHERE notification_id > %(start)s"
        " AND notification_id <= least(h.head, %(until)s::bigint) AND topic = ANY(%(topics)s::text[])"
        " ORDER BY notification_id LIMIT %(limit)s) AS e ON true"
        " ORDER BY e.notification_id"
    ).format(table=table)


class _Careful(Exception):
    """A consumer failed in a step run without savepoints: undo it, run it carefully."""


def _check_names(consumers: Sequence[Consumer]) -> None:
    names = [c.name for c in consumers]
    if len(set(names)) != len(names):
        raise ValueError(f"two consumers share a tracking name: {names}")
