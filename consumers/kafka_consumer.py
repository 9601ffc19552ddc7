"""Kafka consumers for the read side (`kami consume`): effectively once.

Each consumer (a projection or a process manager) is its own consumer group. The
offsets live in PostgreSQL, one row per partition, and are written in the same
transaction as the read-model rows; on assignment the consumer seeks to them. The
relay is at least once, so an event whose log id is not above the partition's last
applied id is a duplicate and is skipped.

A read model's position is the lowest watermark over all partitions: only then is
every event up to that log position known to be applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from psycopg_pool import ConnectionPool

from consumers.runner import Consumer
from consumers.wire import Watermark, decode

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
        # Nothing to flush: every batch committed its offsets with its rows.
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.seek_to_stored(list(assigned))


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
    ) -> None:
        self._pool = pool
        self._mapper = mapper
        self.consumer = consumer
        self._bootstrap = bootstrap
        self.topic = topic
        self.group = f"{group_prefix}.{consumer.name}"
        self._on_idle = on_idle
        self._kafka: KafkaConsumer | None = None
        self.failed = False
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(SCHEMA)
            consumer.create_tables(conn)

    def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        assert self._kafka is not None
        with self._pool.connection() as conn:
            for tp in assigned:
                row = conn.execute(
                    "SELECT next_offset FROM kami_kafka_offsets"
                    " WHERE consumer = %s AND topic = %s AND partition = %s",
                    (self.consumer.name, tp.topic, tp.partition),
                ).fetchone()
                self._kafka.seek(tp, int(row[0]) if row else 0)

    def _register_partitions(self, kafka: KafkaConsumer) -> None:
        partitions = kafka.partitions_for_topic(self.topic) or set()
        with self._pool.connection() as conn:
            for p in partitions:
                conn.execute(
                    "INSERT INTO kami_kafka_offsets (consumer, topic, partition) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (self.consumer.name, self.topic, p),
                )

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
        )
        self._kafka = kafka
        try:
            kafka.subscribe([self.topic], listener=_Seek(self))
            registered = False
            while not stop.is_set():
                batch = kafka.poll(timeout_ms=500, max_records=MAX_RECORDS)
                if not registered and kafka.assignment():
                    self._register_partitions(kafka)
                    registered = True
                if batch:
                    self.apply(batch)
                elif self._on_idle is not None:
                    self._on_idle()
        finally:
            kafka.close(autocommit=False)
            self._kafka = None

    def apply(self, batch: dict[TopicPartition, list[Any]]) -> int:
        """Apply one poll's records and their offsets in one transaction."""
        with self._pool.connection() as conn, conn.transaction():
            state: dict[int, list[int]] = {}
            for tp in batch:
                conn.execute(
                    "INSERT INTO kami_kafka_offsets (consumer, topic, partition) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (self.consumer.name, tp.topic, tp.partition),
                )
            rows = conn.execute(
                "SELECT partition, next_offset, applied_id, watermark FROM kami_kafka_offsets"
                " WHERE consumer = %s AND topic = %s AND partition = ANY(%s) FOR UPDATE",
                (self.consumer.name, self.topic, [tp.partition for tp in batch]),
            ).fetchall()
            for partition, next_offset, applied_id, watermark in rows:
                state[partition] = [next_offset, applied_id, watermark]
            events: list[tuple[int, Any]] = []
            for tp, records in batch.items():
                st = state[tp.partition]
                for record in records:
                    if record.offset < st[0]:
                        continue  # applied before (a redelivery, or another member's batch)
                    st[0] = record.offset + 1
                    item = decode(record.headers, record.value)
                    if isinstance(item, Watermark):
                        st[2] = max(st[2], item.position)
                        continue
                    if item.id <= st[1]:
                        continue  # the relay published this range twice
                    st[1] = item.id
                    if item.topic in self.consumer.topics:
                        events.append((item.id, self._mapper.to_domain_event(item)))
            events.sort(key=lambda pair: pair[0])
            if events:
                self.consumer.apply(conn, events)
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE kami_kafka_offsets SET next_offset = %s, applied_id = %s, watermark = %s"
                    " WHERE consumer = %s AND topic = %s AND partition = %s",
                    [
                        (st[0], st[1], st[2], self.consumer.name, self.topic, p)
                        for p, st in state.items()
                    ],
                )
            return len(events)
