"""The relay: publishes the notification log to Kafka (`kami relay`).

Kafka is transport, never the source of truth: the relay reads the log in order,
publishes each batch, waits for the broker's acknowledgement, sends a watermark to
every partition, and only then records its position in PostgreSQL. A crash between
the two republishes a range, which consumers recognise and skip.

One relay is active at a time: it holds a PostgreSQL advisory lock for as long as its
session lives. A second instance blocks on the lock as a hot standby.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from consumers.wire import event_headers, message_key, watermark_headers

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x6B616D69  # "kami"
SCHEMA = """
CREATE TABLE IF NOT EXISTS kami_relay (
    topic text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0
)
"""
DEFAULT_BATCH = 5000
# Larger producer batches than kafka-python's 16 KiB: each new batch wakes the sender
# thread and goes out in requests of its own. With this and ``Partitions`` the relay
# used 7 CPU seconds instead of 11 to publish the pipeline benchmark's 200,000 events.
PRODUCER_BATCH_BYTES = 256 * 1024
# Partitions remembered per aggregate key before the cache starts over.
PARTITION_CACHE = 200_000


class Partitions:
    """The partition of each key, as kafka-python's default partitioner picks it (murmur2,
    as the Java client), remembered: it is pure Python and an aggregate's events come in
    runs, so most keys repeat. Picking the same partitions as the default keeps every
    aggregate where a relay without this cache put its earlier events."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= PARTITION_CACHE:
                self._known.clear()
            partition = self._known[key] = (murmur2(key) & 0x7FFFFFFF) % self.count
        return partition


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> int:
    """Create the topic if missing; returns its partition count."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kami-admin")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        admin.close()


class Relay:
    def __init__(
        self,
        database_url: str,
        recorder: PostgresApplicationRecorder,
        bootstrap: str,
        topic: str,
        partitions: int,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self._url = database_url
        self._recorder = recorder
        self._bootstrap = bootstrap
        self.topic = topic
        self._partitions_wanted = partitions
        self._batch_size = batch_size
        self.active = threading.Event()
        self._partitions: Partitions | None = None

    def run(self, stop: threading.Event) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(
                "INSERT INTO kami_relay (topic) VALUES (%s) ON CONFLICT DO NOTHING", (self.topic,)
            )
            while not stop.is_set():
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,)).fetchone()
                if row and row[0]:
                    break
                stop.wait(0.5)  # hot standby: the lock frees the moment the active session ends
            else:
                return
            self.active.set()
            log.info("relay active on topic %s", self.topic)
            partitions = ensure_topic(self._bootstrap, self.topic, self._partitions_wanted)
            producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                linger_ms=5,
                batch_size=PRODUCER_BATCH_BYTES,
                retries=5,
                max_in_flight_requests_per_connection=1,  # keep each partition in order
            )
            conn.execute(f'LISTEN "{self._recorder.channel_name}"')
            try:
                while not stop.is_set():
                    if self.publish_batch(conn, producer, partitions) == 0:
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
            finally:
                producer.close(timeout=5)
                self.active.clear()

    def _partition_of(self, partitions: int) -> Partitions:
        if self._partitions is None or self._partitions.count != partitions:
            self._partitions = Partitions(partitions)
        return self._partitions

    def publish_batch(self, conn: psycopg.Connection[Any], producer: KafkaProducer, partitions: int) -> int:
        row = conn.execute("SELECT position FROM kami_relay WHERE topic = %s", (self.topic,)).fetchone()
        position = int(row[0]) if row else 0
        notifications = self._recorder.select_notifications(
            start=position, limit=self._batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        partition_of = self._partition_of(partitions)
        futures = []
        for n in notifications:
            key = message_key(n)
            futures.append(
                producer.send(
                    self.topic, key=key, value=n.state, headers=event_headers(n), partition=partition_of(key)
                )
            )
        last = notifications[-1].id
        futures += [
            producer.send(self.topic, partition=p, value=b"", headers=watermark_headers(last))
            for p in range(partitions)
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not take it: position stays put
        conn.execute("UPDATE kami_relay SET position = %s WHERE topic = %s", (last, self.topic))
        return len(notifications)


def run_relay_until_stopped(relay: Relay, stop: threading.Event) -> None:
    """Keep the relay going through broker outages; the log is the buffer meanwhile."""
    while not stop.is_set():
        try:
            relay.run(stop)
        except KafkaError as error:
            log.warning("broker unavailable (%s); retrying", error)
            stop.wait(1.0)
