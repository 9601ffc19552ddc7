"""Kafka consumers for the read side (`kami consume`): effectively once.

Each consumer (a projection or a process manager) is its own consumer group. The
offsets live in PostgreSQL, one row per partition, and are written in the same
transaction as the read-model rows; on assignment the consumer seeks to them. The
relay is at least once, so an event whose log id is not above the partition's last
applied id is a duplicate and is skipped.

A read model's position is the lowest watermark over all partitions: only then is
every event up to that log position known to be applied.

A consumer that takes over a version the log runner built (a rebuild's new version,
or a deployment moving from embedded to Kafka) starts its partitions at that version's
tracking position: events up to it are skipped as already applied.

Dead letters: a handler that fails on an event records it (``consumers.dead_letters``,
with its partition and offset). Under the ``skip`` policy the batch is applied again
without it. Under ``stop`` that partition stops right before the record: its offset
and watermark stay below it, so the read model's position never passes the event, and
the partition is paused (the others go on, which keeps each aggregate's order) until
ops retry or skip the letter; then it seeks back to its stored offset and resumes.

Promotions (``follow_live``, what ``kami consume`` uses): while it applies a batch a
consumer holds its read model's catalog row, which a rebuild's switch updates; seeing
another version live, it drops the batch and moves to the promoted version's group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from psycopg_pool import ConnectionPool

from consumers import dead_letters
from consumers.runner import Consumer
from consumers.wire import Watermark, decode
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
SCHEMA_LOCK_KEY = 0x6B616D6A  # any fixed number shared by every kami process
# How often an idle consumer that follows the live version looks for a promotion.
PROMOTION_CHECK_SECONDS = 1.0


def kafka_position(conn: psycopg.Connection[Any], consumer: str, topic: str, partitions: int) -> int:
    row = conn.execute(
        "SELECT count(*), coalesce(min(watermark), 0) FROM kami_kafka_offsets"
        " WHERE consumer = %s AND topic = %s",
        (consumer, topic),
    ).fetchone()
    if row is None or row[0] < partitions:
        return 0
    return int(row[1])


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaProjector) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Nothing to flush: every batch committed its offsets with its rows. A parked
        # partition is parked again by whoever gets it (its letter is in PostgreSQL).
        for tp in revoked:
            self._owner.parked.discard(tp.partition)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.seek_to_stored(list(assigned))


class _Promoted(Exception):
    """Another version of the read model went live while a batch was being applied."""


@dataclass
class _Entry:
    """A wanted event of one poll: where it came from, and the stored event itself."""

    partition: int
    offset: int
    notification: Any


class KafkaProjector:
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
        self._pool = pool
        self._mapper = mapper
        self.consumer = consumer
        self._bootstrap = bootstrap
        self.topic = topic
        self._group_prefix = group_prefix
        self.group = f"{group_prefix}.{consumer.name}"
        self._on_idle = on_idle
        self._kafka: KafkaConsumer | None = None
        self.failed = False
        # Follow promotions of this projection's read model (``kami consume`` does).
        self._follow_live = follow_live and isinstance(consumer, Projection)
        # Partitions stopped on a dead letter, paused until it is retried or skipped.
        self.parked: set[int] = set()
        with self._pool.connection() as conn, conn.transaction():
            # Replicas start together: CREATE ... IF NOT EXISTS is not safe against a
            # concurrent twin (a unique violation on pg_type), so they take turns.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            conn.execute(SCHEMA)
            dead_letters.ensure_schema(conn)
            consumer.create_tables(conn)
        if self._follow_live:
            self._adopt_promoted()

    def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        assert self._kafka is not None
        with self._pool.connection() as conn:
            stopped = self._stopped_partitions(conn)
            for tp in assigned:
                row = conn.execute(
                    "SELECT next_offset FROM kami_kafka_offsets"
                    " WHERE consumer = %s AND topic = %s AND partition = %s",
                    (self.consumer.name, tp.topic, tp.partition),
                ).fetchone()
                self._kafka.seek(tp, int(row[0]) if row else 0)
        parked = [tp for tp in assigned if tp.partition in stopped]
        if parked:
            self._kafka.pause(*parked)
            self.parked.update(tp.partition for tp in parked)

    def _stopped_partitions(self, conn: psycopg.Connection[Any]) -> set[int]:
        rows = conn.execute(
            "SELECT DISTINCT kafka_partition FROM kami_dead_letters WHERE consumer = %s"
            " AND kafka_topic = %s AND status = %s",
            (self.consumer.name, self.topic, dead_letters.STOPPED),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def _ensure_partitions(self, conn: psycopg.Connection[Any], partitions: Sequence[int]) -> None:
        """Offset rows for these partitions, new ones starting where the log runner left
        this consumer (its tracking position), or at 0 for a consumer it never ran."""
        tracked = conn.execute("SELECT to_regclass('kami_tracking') IS NOT NULL").fetchone()
        base = 0
        if tracked and tracked[0]:
            row = conn.execute(
                "SELECT position FROM kami_tracking WHERE name = %s", (self.consumer.name,)
            ).fetchone()
            base = int(row[0]) if row else 0
        conn.execute(
            "INSERT INTO kami_kafka_offsets (consumer, topic, partition, applied_id, watermark)"
            " SELECT %s, %s, p, %s, %s FROM unnest(%s::int[]) AS p ON CONFLICT DO NOTHING",
            (self.consumer.name, self.topic, base, base, sorted(partitions)),
        )

    def _register_partitions(self, kafka: KafkaConsumer) -> None:
        partitions = kafka.partitions_for_topic(self.topic) or set()
        with self._pool.connection() as conn:
            self._ensure_partitions(conn, sorted(partitions))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._run_group(stop)

    def _run_group(self, stop: threading.Event) -> None:
        """Consume as this version's group until stopped or a promotion is seen."""
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
        )
        self._kafka = kafka
        self.parked = set()
        try:
            kafka.subscribe([self.topic], listener=_Seek(self))
            registered = False
            checked = time.monotonic()
            while not stop.is_set():
                if self._follow_live and time.monotonic() - checked >= PROMOTION_CHECK_SECONDS:
                    checked = time.monotonic()
                    if self._adopt_promoted():
                        return
                batch = kafka.poll(timeout_ms=500, max_records=MAX_RECORDS)
                if not registered and kafka.assignment():
                    self._register_partitions(kafka)
                    registered = True
                if batch:
                    try:
                        self.apply(batch)
                    except _Promoted:
                        self._adopt_promoted()
                        return
                elif self._on_idle is not None:
                    self._on_idle()
                if self.parked:
                    self._resume_resolved(kafka)
        finally:
            kafka.close(autocommit=False)
            self._kafka = None

    def _adopt_promoted(self) -> bool:
        """Move to the catalog's live version if it is not ours; True when moved."""
        from projections import catalog

        assert isinstance(self.consumer, Projection)
        with self._pool.connection() as conn:
            version = catalog.live_version(conn, self.consumer.read_model)
        if version is None or version == self.consumer.version:
            return False
        old = self.consumer.name
        promoted = type(self.consumer)(version)
        with self._pool.connection() as conn, conn.transaction():
            promoted.create_tables(conn)
        self.consumer = promoted
        self.group = f"{self._group_prefix}.{promoted.name}"
        log.info("following %s, promoted in place of %s", promoted.name, old)
        return True

    def _resume_resolved(self, kafka: KafkaConsumer) -> None:
        """Resume parked partitions whose letters ops have retried or skipped."""
        with self._pool.connection() as conn:
            stopped = self._stopped_partitions(conn)
            resolved = sorted(self.parked - stopped)
            for partition in resolved:
                row = conn.execute(
                    "SELECT next_offset FROM kami_kafka_offsets"
                    " WHERE consumer = %s AND topic = %s AND partition = %s",
                    (self.consumer.name, self.topic, partition),
                ).fetchone()
                tp = TopicPartition(self.topic, partition)
                if tp in kafka.assignment():
                    kafka.seek(tp, int(row[0]) if row else 0)
                    kafka.resume(tp)
                self.parked.discard(partition)

    def apply(self, batch: dict[TopicPartition, list[Any]]) -> int:
        """Apply one poll's records and their offsets in one transaction."""
        parked: set[int] = set()
        with self._pool.connection() as conn, conn.transaction():
            if self._follow_live:
                self._hold_catalog(conn)
            self._ensure_partitions(conn, [tp.partition for tp in batch])
            rows = conn.execute(
                "SELECT partition, next_offset, applied_id, watermark FROM kami_kafka_offsets"
                " WHERE consumer = %s AND topic = %s AND partition = ANY(%s) FOR UPDATE",
                (self.consumer.name, self.topic, [tp.partition for tp in batch]),
            ).fetchall()
            start = {int(p): (int(o), int(a), int(w)) for p, o, a, w in rows}
            records = {tp.partition: batch[tp] for tp in batch}
            state: dict[int, tuple[int, int, int]] = {}
            entries: dict[int, _Entry] = {}
            for partition, polled in records.items():
                found, state[partition] = self._scan(polled, start[partition])
                entries.update(found)
            applied = self._apply_entries(conn, entries, records, start, state, parked)
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE kami_kafka_offsets SET next_offset = %s, applied_id = %s, watermark = %s"
                    " WHERE consumer = %s AND topic = %s AND partition = %s",
                    [(st[0], st[1], st[2], self.consumer.name, self.topic, p) for p, st in state.items()],
                )
        if parked:
            self.parked |= parked
            if self._kafka is not None:
                self._kafka.pause(*(TopicPartition(self.topic, p) for p in sorted(parked)))
        return applied

    def _hold_catalog(self, conn: psycopg.Connection[Any]) -> None:
        """Hold the read model's catalog row to commit: a switch waits for this batch, and
        a batch after a switch sees it and goes to the promoted version instead."""
        assert isinstance(self.consumer, Projection)
        exists = conn.execute("SELECT to_regclass('rm_catalog') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return
        row = conn.execute(
            "SELECT live_version FROM rm_catalog WHERE read_model = %s FOR SHARE", (self.consumer.read_model,)
        ).fetchone()
        if row is not None and int(row[0]) != self.consumer.version:
            raise _Promoted(self.consumer.read_model)

    def _scan(
        self, records: list[Any], st: tuple[int, int, int]
    ) -> tuple[dict[int, _Entry], tuple[int, int, int]]:
        """A partition's wanted events in this poll, and its (next offset, applied id,
        watermark) after them. Redeliveries and republished ranges are skipped."""
        next_offset, applied_id, watermark = st
        found: dict[int, _Entry] = {}
        for record in records:
            if record.offset < next_offset:
                continue  # applied before (a redelivery, or another member's batch)
            next_offset = record.offset + 1
            item = decode(record.headers, record.value)
            if isinstance(item, Watermark):
                watermark = max(watermark, item.position)
                continue
            if item.id <= applied_id:
                continue  # the relay published this range twice
            applied_id = item.id
            if item.topic in self.consumer.topics:
                found[item.id] = _Entry(record.partition, record.offset, item)
        return found, (next_offset, applied_id, watermark)

    def _apply_entries(
        self,
        conn: psycopg.Connection[Any],
        entries: dict[int, _Entry],
        records: dict[int, list[Any]],
        start: dict[int, tuple[int, int, int]],
        state: dict[int, tuple[int, int, int]],
        parked: set[int],
    ) -> int:
        """Apply the events in log order, sending failed ones to the dead letters."""
        decoded = {i: self._mapper.to_domain_event(e.notification) for i, e in entries.items()}
        left_out: set[int] = set()
        while True:
            events = [(i, decoded[i]) for i in sorted(entries) if i not in left_out]
            if not events:
                return 0
            try:
                with conn.transaction():  # a savepoint: a failure leaves only its letter
                    self.consumer.apply(conn, events)
                return len(events)
            except HandlerFailed as failed:
                entry = entries.get(failed.position)
                if entry is None:
                    raise
                policy = getattr(self.consumer, "on_failure", STOP)
                source = dead_letters.KafkaSource(self.topic, entry.partition, entry.offset)
                dead_letters.record(
                    conn, self.consumer.name, policy, entry.notification, failed.position, failed, source
                )
                if policy == SKIP:
                    left_out.add(failed.position)
                    continue
                # Stop this partition right before the record: its state as of the records
                # before it, and none of its later events in this batch.
                p = entry.partition
                earlier = [r for r in records[p] if r.offset < entry.offset]
                _, state[p] = self._scan(earlier, start[p])
                for i in [i for i, e in entries.items() if e.partition == p and e.offset >= entry.offset]:
                    del entries[i]
                parked.add(p)
