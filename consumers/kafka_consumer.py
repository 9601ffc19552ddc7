"""Kafka consumers for the read side (`kami consume`): effectively once.

One Kafka consumer (one consumer group, ``KafkaGroup``) feeds several consumers: the
projections of a ``kami consume`` process share it, so each record is fetched, checked
and decoded once, not once per read model. Every poll is applied in one PostgreSQL
transaction, each consumer in a savepoint of its own, as the log runner's ``step_many``
does in the embedded mode. The group's name comes from the set of read models (or
process managers) it feeds, so processes running the same set share the partitions
and processes running different sets are groups of their own; it carries no state
(the offsets live in PostgreSQL) and outlives promotions.

Offsets are per consumer: one row per (consumer, topic, partition) in
``kami_kafka_offsets``, written in the same transaction as that consumer's rows. On
assignment the group seeks each partition to the lowest next offset of its consumers,
and each consumer skips records below its own next offset. The relay is at least once,
so an event whose log id is not above the consumer's last applied id on that partition
is a duplicate and is skipped.

A read model's position is the lowest watermark over all partitions: only then is
every event up to that log position known to be applied.

A consumer that takes over a version the log runner built (a rebuild's new version,
or a deployment moving from embedded to Kafka) starts its partitions at that version's
tracking position: events up to it are skipped as already applied.

Dead letters: a handler that fails on an event records it (``consumers.dead_letters``,
with its partition and offset). Under the ``skip`` policy the consumer's slice is
applied again without it. Under ``stop`` that consumer stops on that partition right
before the record: its offset and watermark stay below it, so the read model's
position never passes the event, and the group leaves that consumer's records of that
partition alone while the other consumers (and its other partitions) go on, which
keeps each aggregate's order. When ops retry or skip the letter the group seeks the
partition back to the lowest next offset, so the resumed consumer reads again from
where it stopped (the others skip those records as below their own). A partition on
which every consumer of the group is stopped is paused.

Promotions (``follow_live``, what ``kami consume`` uses): while it applies a poll the
group holds its read models' catalog rows, which a rebuild's switch updates; seeing
another version live, it drops the poll, swaps in the promoted version (whose offsets
start from the rebuild's tracking position) and seeks back for it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from consumers import dead_letters
from consumers.runner import Consumer
from consumers.wire import Watermark, decode
from domain.event_store import take_schema_turn
from projections.base import SKIP, STOP, HandlerFailed, Projection

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kami_kafka_offsets (
    consumer text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    applied_id bigint NOT NULL DEFAULT 0,
    watermark bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, topic, partition)
)
"""
MAX_RECORDS = 5000
# How often an idle consumer that follows the live version looks for a promotion.
PROMOTION_CHECK_SECONDS = 1.0
# Group names longer than this become a hash of the names they list.
MAX_GROUP_NAME = 120

# (next offset, applied id, watermark) of one consumer on one partition.
State = tuple[int, int, int]


def kafka_position(conn: psycopg.Connection[Any], consumer: str, topic: str, partitions: int) -> int:
    row = conn.execute(
        "SELECT count(*), coalesce(min(watermark), 0) FROM kami_kafka_offsets"
        " WHERE consumer = %s AND topic = %s",
        (consumer, topic),
    ).fetchone()
    if row is None or row[0] < partitions:
        return 0
    return int(row[1])


def group_key(consumer: Consumer) -> str:
    """What a consumer contributes to its group's name: the read model rather than the
    version, so a promotion (or a process restarted after one) keeps the same group."""
    return consumer.read_model if isinstance(consumer, Projection) else consumer.name


def group_name(prefix: str, consumers: Iterable[Consumer]) -> str:
    names = "+".join(sorted({group_key(c) for c in consumers}))
    if len(names) > MAX_GROUP_NAME:
        names = hashlib.sha256(names.encode()).hexdigest()[:16]
    return f"{prefix}.{names}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaGroup) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Nothing to flush: every poll committed its offsets with its rows. A stopped
        # partition is stopped again by whoever gets it (its letter is in PostgreSQL).
        self._owner.forget([tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.take([tp.partition for tp in assigned])


class _Promoted(Exception):
    """Another version of a read model went live while a poll was being applied."""


@dataclass
class _Entry:
    """A wanted event of one poll: where it came from, and the stored event itself."""

    partition: int
    offset: int
    notification: Any


# One poll, decoded once: per partition, (offset, decoded record) in offset order.
Decoded = dict[int, list[tuple[int, Any]]]


class KafkaGroup:
    """One Kafka consumer group feeding several consumers, each with its own offsets."""

    def __init__(
        self,
        pool: ConnectionPool,
        mapper: Mapper[Any],
        consumers: Sequence[Consumer],
        bootstrap: str,
        topic: str,
        *,
        group_prefix: str = "kami",
        on_idle: Callable[[], object] | None = None,
        follow_live: bool = False,
    ) -> None:
        if not consumers:
            raise ValueError("a group needs at least one consumer")
        names = [c.name for c in consumers]
        if len(set(names)) != len(names):
            raise ValueError(f"two consumers share a name: {names}")
        self._pool = pool
        self._mapper = mapper
        self.consumers = list(consumers)
        self._bootstrap = bootstrap
        self.topic = topic
        self.group = group_name(group_prefix, self.consumers)
        self._on_idle = on_idle
        self._kafka: KafkaConsumer | None = None
        self.failed = False
        # Follow promotions of the projections' read models (``kami consume`` does).
        self._follow_live = follow_live
        # Consumer name -> partitions it is stopped on (a dead letter), left alone until
        # the letter is retried or skipped.
        self.stopped: dict[str, set[int]] = {}
        # Partitions paused because every consumer of the group is stopped on them.
        self.parked: set[int] = set()
        # (consumer, partition) pairs known to have an offset row.
        self._registered: set[tuple[str, int]] = set()
        with self._pool.connection() as conn, conn.transaction():
            # Replicas start together: CREATE ... IF NOT EXISTS is not safe against a
            # concurrent twin (a unique violation on pg_type), so they take turns.
            take_schema_turn(conn)
            conn.execute(SCHEMA)
            dead_letters.ensure_schema(conn)
            for consumer in self.consumers:
                consumer.create_tables(conn)
        if self._follow_live:
            self._adopt_promoted()

    @property
    def name(self) -> str:
        return self.group

    def _following(self) -> list[Projection[Any]]:
        if not self._follow_live:
            return []
        return [c for c in self.consumers if isinstance(c, Projection)]

    # ----------------------------------------------------------- assignment and seeks

    def forget(self, partitions: Sequence[int]) -> None:
        for stopped in self.stopped.values():
            stopped.difference_update(partitions)
        self.parked.difference_update(partitions)

    def take(self, partitions: Sequence[int]) -> None:
        """Newly assigned partitions: offset rows for every partition of the topic (so
        that a position counts all of them), the stops recorded in PostgreSQL, a seek."""
        assert self._kafka is not None
        known = self._kafka.partitions_for_topic(self.topic) or set()
        with self._pool.connection() as conn:
            self._ensure_partitions(conn, self.consumers, sorted(set(known) | set(partitions)))
            stopped = self._stopped_in(conn)
        for consumer in self.consumers:
            mine = self.stopped.setdefault(consumer.name, set())
            mine.difference_update(partitions)
            mine.update(p for c, p in stopped if c == consumer.name and p in partitions)
        self._seek(partitions)

    def _stopped_in(self, conn: psycopg.Connection[Any]) -> set[tuple[str, int]]:
        rows = conn.execute(
            "SELECT DISTINCT consumer, kafka_partition FROM kami_dead_letters"
            " WHERE consumer = ANY(%s) AND kafka_topic = %s AND status = %s",
            ([c.name for c in self.consumers], self.topic, dead_letters.STOPPED),
        ).fetchall()
        return {(str(c), int(p)) for c, p in rows}

    def _seek(self, partitions: Iterable[int]) -> None:
        """Each partition to the lowest next offset of the consumers not stopped on it,
        so that every one of them sees its next record; paused if all are stopped."""
        kafka = self._kafka
        assert kafka is not None
        partitions = sorted(partitions)
        if not partitions:
            return
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT consumer, partition, next_offset FROM kami_kafka_offsets"
                " WHERE topic = %s AND consumer = ANY(%s) AND partition = ANY(%s)",
                (self.topic, [c.name for c in self.consumers], partitions),
            ).fetchall()
        offsets = {(str(c), int(p)): int(o) for c, p, o in rows}
        assigned = kafka.assignment()
        for p in partitions:
            tp = TopicPartition(self.topic, p)
            if tp not in assigned:
                continue
            active = [c.name for c in self.consumers if p not in self.stopped.get(c.name, ())]
            if not active:
                kafka.pause(tp)
                self.parked.add(p)
                continue
            kafka.seek(tp, min(offsets.get((name, p), 0) for name in active))
            if p in self.parked:
                kafka.resume(tp)
                self.parked.discard(p)

    def _pause_blocked(self) -> None:
        """Pause the partitions every consumer is stopped on: nothing there to read."""
        assert self._kafka is not None
        for tp in self._kafka.assignment():
            p = tp.partition
            if p not in self.parked and all(p in self.stopped.get(c.name, ()) for c in self.consumers):
                self._kafka.pause(tp)
                self.parked.add(p)

    def _resume_resolved(self) -> None:
        """Seek back the partitions whose letters ops have retried or skipped."""
        with self._pool.connection() as conn:
            stopped = self._stopped_in(conn)
        resolved: set[int] = set()
        for name, partitions in self.stopped.items():
            done = {p for p in partitions if (name, p) not in stopped}
            partitions.difference_update(done)
            resolved |= done
        self._seek(resolved)

    def _ensure_partitions(
        self, conn: psycopg.Connection[Any], consumers: Sequence[Consumer], partitions: Sequence[int]
    ) -> None:
        """Offset rows for these consumers and partitions, new ones starting where the
        log runner left that consumer (its tracking position), or at 0 if it never ran."""
        wanted = [(c.name, p) for c in consumers for p in partitions]
        if all(pair in self._registered for pair in wanted):
            return
        names = sorted({c.name for c in consumers})
        tracked = conn.execute("SELECT to_regclass('kami_tracking') IS NOT NULL").fetchone()
        base: dict[str, int] = {}
        if tracked and tracked[0]:
            rows = conn.execute(
                "SELECT name, position FROM kami_tracking WHERE name = ANY(%s)", (names,)
            ).fetchall()
            base = {str(n): int(p) for n, p in rows}
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO kami_kafka_offsets (consumer, topic, partition, applied_id, watermark)"
                " SELECT c, %s, p, b, b FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS n(c, p, b)"
                " ORDER BY c, p ON CONFLICT DO NOTHING",
                (
                    self.topic,
                    [n for n, _ in wanted],
                    [p for _, p in wanted],
                    [base.get(n, 0) for n, _ in wanted],
                ),
            )
        self._registered.update(wanted)

    # --------------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        kafka = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Short intervals: with the 300 s default a group join against Tansu stalls.
            max_poll_interval_ms=5000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_records=MAX_RECORDS,
            # kafka-python's fetch sizes (1 MiB a partition, 50 MiB a fetch) are kept:
            # 4 and 64 MiB made no difference in the pipeline benchmark.
        )
        self._kafka = kafka
        self.parked = set()
        self.stopped = {}
        self._registered = set()
        try:
            kafka.subscribe([self.topic], listener=_Rebalance(self))
            checked = time.monotonic()
            while not stop.is_set():
                if self._follow_live and time.monotonic() - checked >= PROMOTION_CHECK_SECONDS:
                    checked = time.monotonic()
                    self._adopt_promoted()
                batch = kafka.poll(timeout_ms=500, max_records=MAX_RECORDS)
                if batch:
                    try:
                        self.apply(batch)
                    except _Promoted:
                        self._adopt_promoted()
                        # The poll was rolled back: read it again, whatever was swapped.
                        self._seek(tp.partition for tp in kafka.assignment())
                elif self._on_idle is not None:
                    self._on_idle()
                if any(self.stopped.values()):
                    self._resume_resolved()
        finally:
            kafka.close(autocommit=False)
            self._kafka = None

    def _adopt_promoted(self) -> list[str]:
        """Swap in the catalog's live version of every followed read model that moved;
        returns the names swapped out. Their partitions are sought back for the new one."""
        from projections import catalog

        following = self._following()
        if not following:
            return []
        with self._pool.connection() as conn:
            live = {p.name: catalog.live_version(conn, p.read_model) for p in following}
        moved = [p for p in following if live[p.name] not in (None, p.version)]
        if not moved:
            return []
        swaps: dict[str, Consumer] = {}
        for old in moved:
            version = live[old.name]
            assert version is not None
            promoted = type(old)(version)
            with self._pool.connection() as conn, conn.transaction():
                promoted.create_tables(conn)
            swaps[old.name] = promoted
            log.info("following %s, promoted in place of %s", promoted.name, old.name)
        self.consumers = [swaps.get(c.name, c) for c in self.consumers]
        for name in swaps:
            self.stopped.pop(name, None)
        self._registered = {pair for pair in self._registered if pair[0] not in swaps}
        if self._kafka is not None and self._kafka.assignment():
            assigned = sorted(tp.partition for tp in self._kafka.assignment())
            known = self._kafka.partitions_for_topic(self.topic) or set()
            promoted_ones = list(swaps.values())
            with self._pool.connection() as conn:
                self._ensure_partitions(conn, promoted_ones, sorted(set(known) | set(assigned)))
                stopped = self._stopped_in(conn)
            for consumer in promoted_ones:
                self.stopped[consumer.name] = {p for c, p in stopped if c == consumer.name}
            # Back to where the promoted versions start (the rebuild's position): the
            # others skip what they applied already.
            self._seek(assigned)
        return list(swaps)

    # ------------------------------------------------------------------------ a poll

    def apply(self, batch: dict[TopicPartition, list[Any]]) -> int:
        """Apply one poll's records and every consumer's offsets in one transaction;
        returns the events applied (summed over the consumers)."""
        records = {tp.partition: batch[tp] for tp in batch}
        partitions = sorted(records)
        names = sorted(c.name for c in self.consumers)
        failure: BaseException | None = None
        applied = 0
        newly_stopped: list[tuple[str, int]] = []
        with self._pool.connection() as conn, conn.transaction():
            if self._follow_live:
                self._hold_catalog(conn)
            self._ensure_partitions(conn, self.consumers, partitions)
            with conn.cursor(row_factory=tuple_row) as cur:
                # In (consumer, partition) order, as every member and the rebuild's switch
                # lock them: two members over a rebalance queue rather than deadlock.
                cur.execute(
                    "SELECT o.consumer, o.partition, o.next_offset, o.applied_id, o.watermark,"
                    " EXISTS (SELECT 1 FROM kami_dead_letters d WHERE d.consumer = o.consumer"
                    " AND d.kafka_topic = o.topic AND d.kafka_partition = o.partition AND d.status = %s)"
                    " FROM kami_kafka_offsets o WHERE o.topic = %s AND o.consumer = ANY(%s)"
                    " AND o.partition = ANY(%s) ORDER BY o.consumer, o.partition FOR UPDATE OF o",
                    (dead_letters.STOPPED, self.topic, names, partitions),
                )
                rows = cur.fetchall()
            start: dict[tuple[str, int], State] = {}
            for name, p, next_offset, applied_id, watermark, is_stopped in rows:
                if is_stopped:
                    # Stopped by another member before a rebalance gave us the partition.
                    self.stopped.setdefault(name, set()).add(p)
                start[(name, p)] = (int(next_offset), int(applied_id), int(watermark))
            decoded = self._decode(records, start)
            domain: dict[int, Any] = {}
            updates: list[tuple[str, int, State]] = []
            for consumer in self.consumers:
                mine = {
                    p: start[(consumer.name, p)]
                    for p in partitions
                    if (consumer.name, p) in start and p not in self.stopped.get(consumer.name, ())
                }
                if not mine:
                    continue  # a retired version, or stopped on every partition polled
                try:
                    count, state, stopped = self._apply_consumer(conn, consumer, decoded, mine, domain)
                except Exception as error:
                    # Its savepoint is undone and its offsets stay; the others' work commits.
                    failure = failure or error
                    continue
                applied += count
                newly_stopped += [(consumer.name, p) for p in stopped]
                updates += [(consumer.name, p, st) for p, st in state.items() if st != mine[p]]
            if updates:
                conn.execute(
                    "UPDATE kami_kafka_offsets o SET next_offset = u.n, applied_id = u.a, watermark = u.w"
                    " FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[], %s::bigint[])"
                    " AS u(c, p, n, a, w) WHERE o.consumer = u.c AND o.topic = %s AND o.partition = u.p",
                    (
                        [c for c, _, _ in updates],
                        [p for _, p, _ in updates],
                        [st[0] for _, _, st in updates],
                        [st[1] for _, _, st in updates],
                        [st[2] for _, _, st in updates],
                        self.topic,
                    ),
                )
        for name, p in newly_stopped:
            self.stopped.setdefault(name, set()).add(p)
        if any(self.stopped.values()) and self._kafka is not None:
            self._pause_blocked()
        if failure is not None:
            raise failure
        return applied

    def _decode(self, records: dict[int, list[Any]], start: dict[tuple[str, int], State]) -> Decoded:
        """Each record at most once, and only from the lowest next offset any consumer
        needs on its partition (a redelivery below all of them is skipped unread)."""
        decoded: Decoded = {}
        for p, polled in records.items():
            needed = [st[0] for (_, q), st in start.items() if q == p]
            low = min(needed) if needed else 0
            decoded[p] = [(r.offset, decode(r.headers, r.value)) for r in polled if r.offset >= low]
        return decoded

    def _hold_catalog(self, conn: psycopg.Connection[Any]) -> None:
        """Hold the read models' catalog rows to commit: a switch waits for this poll, and
        a poll after a switch sees it and goes to the promoted version instead."""
        following = self._following()
        if not following:
            return
        exists = conn.execute("SELECT to_regclass('rm_catalog') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return
        versions = {p.read_model: p.version for p in following}
        rows = conn.execute(
            "SELECT read_model, live_version FROM rm_catalog WHERE read_model = ANY(%s)"
            " ORDER BY read_model FOR SHARE",
            (sorted(versions),),
        ).fetchall()
        moved = [str(m) for m, v in rows if int(v) != versions[str(m)]]
        if moved:
            raise _Promoted(moved)

    def _apply_consumer(
        self,
        conn: psycopg.Connection[Any],
        consumer: Consumer,
        decoded: Decoded,
        start: dict[int, State],
        domain: dict[int, Any],
    ) -> tuple[int, dict[int, State], set[int]]:
        """One consumer's share of the poll in a savepoint of its own: (events applied,
        its state per partition after them, partitions it stopped on)."""
        state: dict[int, State] = {}
        entries: dict[int, _Entry] = {}
        for p, st in start.items():
            found, state[p] = _scan(decoded[p], st, consumer.topics, p)
            entries.update(found)
        stopped: set[int] = set()
        left_out: set[int] = set()
        while True:
            events = [
                (i, self._domain(entries[i].notification, domain))
                for i in sorted(entries)
                if i not in left_out
            ]
            if not events:
                return 0, state, stopped
            try:
                with conn.transaction():  # a savepoint: a failure leaves only its letter
                    consumer.apply(conn, events)
                return len(events), state, stopped
            except HandlerFailed as failed:
                entry = entries.get(failed.position)
                if entry is None:
                    raise
                policy = getattr(consumer, "on_failure", STOP)
                source = dead_letters.KafkaSource(self.topic, entry.partition, entry.offset)
                dead_letters.record(
                    conn, consumer.name, policy, entry.notification, failed.position, failed, source
                )
                if policy == SKIP:
                    left_out.add(failed.position)
                    continue
                # Stop this partition right before the record: its state as of the records
                # before it, and none of its later events in this poll.
                p = entry.partition
                earlier = [(o, item) for o, item in decoded[p] if o < entry.offset]
                _, state[p] = _scan(earlier, start[p], consumer.topics, p)
                for i in [i for i, e in entries.items() if e.partition == p and e.offset >= entry.offset]:
                    del entries[i]
                stopped.add(p)

    def _domain(self, notification: Any, domain: dict[int, Any]) -> Any:
        # Consumers sharing a poll share the domain event: handlers never change events.
        event = domain.get(notification.id)
        if event is None:
            event = domain[notification.id] = self._mapper.to_domain_event(notification)
        return event


def _scan(
    items: Sequence[tuple[int, Any]], st: State, topics: frozenset[str], partition: int
) -> tuple[dict[int, _Entry], State]:
    """A consumer's wanted events on one partition of a poll, and its (next offset,
    applied id, watermark) after them. Redeliveries and republished ranges are skipped."""
    next_offset, applied_id, watermark = st
    found: dict[int, _Entry] = {}
    for offset, item in items:
        if offset < next_offset:
            continue  # applied before (a redelivery, a seek back for another consumer)
        next_offset = offset + 1
        if isinstance(item, Watermark):
            watermark = max(watermark, item.position)
            continue
        if item.id <= applied_id:
            continue  # the relay published this range twice
        applied_id = item.id
        if item.topic in topics:
            found[item.id] = _Entry(partition, offset, item)
    return found, (next_offset, applied_id, watermark)


class KafkaProjector(KafkaGroup):
    """A group of one consumer (a process manager, or a read model run on its own)."""

    def __init__(
        self,
        pool: ConnectionPool,
        mapper: Mapper[Any],
        consumer: Consumer,
        bootstrap: str,
        topic: str,
        *,
        group_prefix: str = "kami",
        on_idle: Callable[[], object] | None = None,
        follow_live: bool = False,
    ) -> None:
        super().__init__(
            pool,
            mapper,
            [consumer],
            bootstrap,
            topic,
            group_prefix=group_prefix,
            on_idle=on_idle,
            follow_live=follow_live,
        )

    @property
    def consumer(self) -> Consumer:
        return self.consumers[0]
