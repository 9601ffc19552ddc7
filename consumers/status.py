"""Where every consumer of the log stands: what ``kami status`` prints and /metrics exports.

Per read model (the live version, and a version a rebuild is building), per process
manager, for the relay and the hash chain: position, the head of the log, the lag in
events and in seconds, and the open dead letters. Lag in seconds is business time: the
head event's timestamp minus the timestamp of the last event the consumer has applied
(the clock is injected, so this is the time the events describe, not the wall clock).
Kafka consumers also show each partition's stored offset, last applied id and
watermark; their position is the lowest watermark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper, Notification
from psycopg import sql
from psycopg.rows import tuple_row

from consumers import dead_letters
from projections import catalog
from projections.registry import PROJECTIONS

LIVE = "live"
REBUILDING = "rebuilding"
OTHER = "other"  # a version neither live nor being built (a leftover, a comparison)


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    next_offset: int
    applied_id: int
    watermark: int


@dataclass(frozen=True)
class ConsumerStatus:
    name: str  # the tracking name (``rm_dashboard_v2``, ``pm_deadlines``, ``relay``)
    kind: str  # projection, process manager, relay, chain
    transport: str  # log (in order, in-process) or kafka
    position: int
    lag_events: int
    lag_seconds: float
    dead_letters: int
    read_model: str | None = None
    version: int | None = None
    state: str | None = None  # projections: live, rebuilding or other
    partitions: list[PartitionStatus] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    head: int
    head_time: datetime | None
    consumers: list[ConsumerStatus]

    def as_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "head_time": self.head_time.isoformat() if self.head_time else None,
            "consumers": [asdict(c) for c in self.consumers],
        }


def collect(conn: psycopg.Connection[Any], events_table: str, mapper: Mapper[Any]) -> Status:
    """Everything at one instant (a repeatable-read snapshot, unless the caller has a transaction)."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return _collect(conn, events_table, mapper)
    return _collect(conn, events_table, mapper)


def _collect(conn: psycopg.Connection[Any], events_table: str, mapper: Mapper[Any]) -> Status:
    times = _Times(conn, events_table, mapper)
    head = times.head
    tracking = _rows(conn, "kami_tracking", "SELECT name, position FROM kami_tracking ORDER BY name")
    positions = {str(n): int(p) for n, p in tracking}
    partitions: dict[str, list[PartitionStatus]] = {}
    for consumer, topic, partition, next_offset, applied_id, watermark in _rows(
        conn,
        "kami_kafka_offsets",
        "SELECT consumer, topic, partition, next_offset, applied_id, watermark FROM kami_kafka_offsets"
        " ORDER BY consumer, topic, partition",
    ):
        partitions.setdefault(str(consumer), []).append(
            PartitionStatus(str(topic), int(partition), int(next_offset), int(applied_id), int(watermark))
        )
    letters = dead_letters.open_counts(conn)
    live = catalog.live_versions(conn)
    rebuilding = {name: version for name, (version, _) in catalog.rebuilding(conn).items()}

    def one(name: str, kind: str, **extra: Any) -> ConsumerStatus:
        parts = partitions.get(name, [])
        if parts:
            position, transport = min(p.watermark for p in parts), "kafka"
        else:
            position, transport = positions.get(name, 0), "log"
        return ConsumerStatus(
            name=name,
            kind=kind,
            transport=transport,
            position=position,
            lag_events=max(head - position, 0),
            lag_seconds=times.lag(position),
            dead_letters=letters.get(name, 0),
            partitions=parts,
            **extra,
        )

    consumers: list[ConsumerStatus] = []
    seen: set[str] = set()
    for cls in PROJECTIONS:
        versions = [(live.get(cls.read_model) or cls.VERSION, LIVE)]
        if cls.read_model in rebuilding:
            versions.append((rebuilding[cls.read_model], REBUILDING))
        for version, state in versions:
            name = cls(version).name
            seen.add(name)
            consumers.append(one(name, "projection", read_model=cls.read_model, version=version, state=state))
    for name in sorted((set(positions) | set(partitions) | set(letters)) - seen):
        if name.startswith("rm_"):
            read_model, _, version = name[3:].rpartition("_v")
            consumers.append(
                one(
                    name,
                    "projection",
                    read_model=read_model,
                    version=int(version) if version.isdigit() else None,
                    state=OTHER,
                )
            )
        else:
            consumers.append(one(name, "process manager"))
    for topic, position in _rows(conn, "kami_relay", "SELECT topic, position FROM kami_relay ORDER BY topic"):
        consumers.append(
            ConsumerStatus(
                f"relay:{topic}",
                "relay",
                "log",
                int(position),
                max(head - int(position), 0),
                times.lag(int(position)),
                0,
            )
        )
    chain = _rows(conn, "kami_chain", "SELECT coalesce(max(position), 0) FROM kami_chain")
    if chain:
        position = int(chain[0][0])
        consumers.append(
            ConsumerStatus("chain", "chain", "log", position, max(head - position, 0), times.lag(position), 0)
        )
    return Status(head, times.at(head) if head else None, consumers)


def _rows(conn: psycopg.Connection[Any], table: str, query: str) -> list[tuple[Any, ...]]:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return []
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query)
        return list(cur.fetchall())


class _Times:
    """Business timestamps of the events at given positions, each decoded once."""

    def __init__(self, conn: psycopg.Connection[Any], table: str, mapper: Mapper[Any]) -> None:
        self._conn = conn
        self._table = table
        self._mapper = mapper
        self._cache: dict[int, datetime | None] = {}
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        self.head = int(row[0]) if row else 0

    def at(self, position: int) -> datetime | None:
        """The timestamp of the last event at or before ``position`` (None before the first)."""
        if position not in self._cache:
            with self._conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    sql.SQL(
                        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
                        " WHERE notification_id <= %s ORDER BY notification_id DESC LIMIT 1"
                    ).format(sql.Identifier(self._table)),
                    (position,),
                )
                row = cur.fetchone()
            if row is None:
                self._cache[position] = None
            else:
                nid, oid, version, topic, state = row
                event = self._mapper.to_domain_event(
                    Notification(
                        id=nid, originator_id=oid, originator_version=version, topic=topic, state=bytes(state)
                    )
                )
                self._cache[position] = event.timestamp
        return self._cache[position]

    def lag(self, position: int) -> float:
        """Seconds of business time between the last event applied and the head's."""
        if position >= self.head:
            return 0.0
        head = self.at(self.head)
        if head is None:
            return 0.0
        at = self.at(position) if position > 0 else None
        if at is None:
            at = self._first()
        return max((head - at).total_seconds(), 0.0) if at is not None else 0.0

    def _first(self) -> datetime | None:
        row = self._conn.execute(
            sql.SQL("SELECT min(notification_id) FROM {}").format(sql.Identifier(self._table))
        ).fetchone()
        return self.at(int(row[0])) if row and row[0] is not None else None
