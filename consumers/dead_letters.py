"""Dead letters: events a projection's handler could not process, kept for ops to act on.

When a handler raises (``HandlerFailed``), the runner records the event here, in the
same transaction as the step, with the consumer's tracking name, the log position, the
stored event exactly as the event store holds it (topic, state, originator) and the
traceback. Then the projection's policy (``Projection.on_failure``) decides:

- ``stop``: the consumer stays right before that event (its position never passes it)
  until ops retry or skip the letter; the other consumers go on. Status ``stopped``.
- ``skip``: the consumer goes on without that event. Status ``left_out``: still open,
  listed and counted until ops retry it (once the code is fixed) or skip it for good.

Nothing is ever dropped silently: every letter stays in the table after it is resolved
(``retried``, ``skipped`` with who and why, ``obsolete`` when its version was dropped
by a rebuild), as the audit trail of what happened to that event.

A retried ``stop`` letter is applied where the consumer stopped, so the view ends as if
the event had never failed. A ``skip`` letter's event is applied late, after events of
its own aggregate that came later: the projection's per-aggregate order rule no longer
holds for it, which is why ``stop`` is the default policy.
"""

from __future__ import annotations

import getpass
import logging
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper, Notification, StoredEvent
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kami_dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    position bigint NOT NULL,
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL,
    error text NOT NULL,
    traceback text NOT NULL,
    policy text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 1,
    kafka_topic text,
    kafka_partition integer,
    kafka_offset bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    resolved_by text,
    note text,
    UNIQUE (consumer, position)
);
CREATE INDEX IF NOT EXISTS kami_dead_letters_open ON kami_dead_letters (consumer)
    WHERE status IN ('stopped', 'left_out');
"""

STOPPED = "stopped"  # the consumer waits right before this event
LEFT_OUT = "left_out"  # the consumer went on without this event
RETRIED = "retried"  # applied later, once the code was fixed
SKIPPED = "skipped"  # ops decided the event is not to be applied (who and why recorded)
OBSOLETE = "obsolete"  # the consumer's version was dropped (a rebuild replaced it)
OPEN = (STOPPED, LEFT_OUT)

_COLUMNS = (
    "id, consumer, position, originator_id, originator_version, topic, state, error, traceback,"
    " policy, status, attempts, kafka_topic, kafka_partition, kafka_offset, recorded_at,"
    " updated_at, resolved_by, note"
)


@dataclass(frozen=True)
class KafkaSource:
    """Where a letter came from when a Kafka consumer recorded it."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes
    error: str
    traceback: str
    policy: str
    status: str
    attempts: int
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    recorded_at: datetime
    updated_at: datetime
    resolved_by: str | None
    note: str | None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def notification(self) -> Notification:
        """The stored event as it failed, for the mapper to decode again."""
        return Notification(
            id=self.position,
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            topic=self.topic,
            state=self.state,
        )

    def summary(self) -> dict[str, Any]:
        """What ``kami dlq list`` shows: everything but the raw state."""
        return {
            "id": self.id,
            "consumer": self.consumer,
            "position": self.position,
            "topic": self.topic,
            "originator_id": str(self.originator_id),
            "originator_version": self.originator_version,
            "policy": self.policy,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "kafka": None
            if self.kafka_topic is None
            else {"topic": self.kafka_topic, "partition": self.kafka_partition, "offset": self.kafka_offset},
            "recorded_at": self.recorded_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "resolved_by": self.resolved_by,
            "note": self.note,
            "traceback": self.traceback,
        }


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(SCHEMA)


def _exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('kami_dead_letters') IS NOT NULL").fetchone()
    return bool(row and row[0])


def record(
    conn: psycopg.Connection[Any],
    consumer: str,
    policy: str,
    stored: StoredEvent,
    position: int,
    error: BaseException,
    kafka: KafkaSource | None = None,
) -> int:
    """Record (or record again) a failed event in the caller's transaction; returns its id.

    The same event failing again (a restart, a rebalance, a failed retry) updates its
    letter rather than adding one: one letter per consumer and position.
    """
    status = STOPPED if policy != "skip" else LEFT_OUT
    cause = error.__cause__ or error
    text = "".join(traceback.format_exception(error))
    row = conn.execute(
        "INSERT INTO kami_dead_letters (consumer, position, originator_id, originator_version, topic,"
        " state, error, traceback, policy, status, kafka_topic, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (consumer, position) DO UPDATE SET error = EXCLUDED.error,"
        " traceback = EXCLUDED.traceback, policy = EXCLUDED.policy, status = EXCLUDED.status,"
        " attempts = kami_dead_letters.attempts + 1, updated_at = now(),"
        " kafka_topic = EXCLUDED.kafka_topic, kafka_partition = EXCLUDED.kafka_partition,"
        " kafka_offset = EXCLUDED.kafka_offset"
        " RETURNING id",
        (
            consumer,
            position,
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            stored.state,
            f"{type(cause).__name__}: {cause}",
            text,
            policy,
            status,
            kafka.topic if kafka else None,
            kafka.partition if kafka else None,
            kafka.offset if kafka else None,
        ),
    ).fetchone()
    assert row is not None
    # Loud on purpose: a dead letter is an incident for ops, never routine.
    log.error(
        "dead letter %s: %s could not process the event at position %s (%s); %s",
        row[0],
        consumer,
        position,
        stored.topic,
        "stopped there until `kami dlq retry|skip`" if status == STOPPED else "went on without it",
    )
    return int(row[0])


def letters(
    conn: psycopg.Connection[Any],
    *,
    consumer: str | None = None,
    ids: Sequence[int] | None = None,
    only_open: bool = True,
) -> list[DeadLetter]:
    if not _exists(conn):
        return []
    where, params = ["TRUE"], []
    if consumer is not None:
        where.append("consumer = %s")
        params.append(consumer)
    if ids is not None:
        where.append("id = ANY(%s)")
        params.append(list(ids))
    if only_open:
        where.append("status = ANY(%s)")
        params.append(list(OPEN))
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM kami_dead_letters WHERE {' AND '.join(where)}"
            " ORDER BY consumer, position",
            params,
        )
        return [_letter(row) for row in cur]


def _letter(row: Sequence[Any]) -> DeadLetter:
    values = list(row)
    values[6] = bytes(values[6])
    return DeadLetter(*values)


def open_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Open letters (stopped or left out) per consumer: what status and /metrics report."""
    if not _exists(conn):
        return {}
    rows = conn.execute(
        "SELECT consumer, count(*) FROM kami_dead_letters WHERE status = ANY(%s) GROUP BY consumer",
        (list(OPEN),),
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


def retire(conn: psycopg.Connection[Any], consumer: str, note: str) -> int:
    """Close the open letters of a consumer whose version was dropped; returns how many."""
    if not _exists(conn):
        return 0
    cur = conn.execute(
        "UPDATE kami_dead_letters SET status = %s, note = %s, updated_at = now()"
        " WHERE consumer = %s AND status = ANY(%s)",
        (OBSOLETE, note, consumer, list(OPEN)),
    )
    return cur.rowcount


# ------------------------------------------------------------------- ops' actions


class DeadLetterError(Exception):
    """An action on a letter that cannot be done (unknown id, already resolved, no consumer)."""


@dataclass(frozen=True)
class Outcome:
    letter_id: int
    consumer: str
    position: int
    ok: bool
    status: str
    detail: str


# Tracking name -> the consumer that should apply its letters, or None when unknown.
Resolver = Callable[[str], Any]


def registry_resolver(name: str) -> Any:
    """The projection a tracking name (``rm_dashboard_v2``) stands for, from the registry."""
    from projections.registry import PROJECTIONS

    for cls in PROJECTIONS:
        prefix = f"rm_{cls.read_model}_v"
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return cls(int(name[len(prefix) :]))
    return None


def actor() -> str:
    """Who acts, for the audit trail: KAMI_OPERATOR, else the login name."""
    try:
        return os.environ.get("KAMI_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def retry(
    pool: ConnectionPool,
    mapper: Mapper[Any],
    letter_id: int,
    resolve: Resolver = registry_resolver,
) -> Outcome:
    """Apply a letter's event again with the code as it is now.

    On success the letter is ``retried`` and, if the consumer had stopped on it, its
    position moves past the event in the same transaction, so it resumes from there. On
    failure the attempt is recorded (count, new traceback) and the consumer stays put.
    """
    with pool.connection() as conn, conn.transaction():
        letter = _lock(conn, letter_id)
        consumer = resolve(letter.consumer)
        if consumer is None:
            raise DeadLetterError(f"no consumer named {letter.consumer} here: nothing to apply it with")
        _lock_position(conn, letter)
        event = mapper.to_domain_event(letter.notification())
        try:
            with conn.transaction():  # a savepoint: a failure leaves only the attempt recorded
                consumer.apply(conn, [(letter.position, event)])
        except Exception as error:
            cause = error.__cause__ or error
            conn.execute(
                "UPDATE kami_dead_letters SET attempts = attempts + 1, error = %s, traceback = %s,"
                " updated_at = now() WHERE id = %s",
                (f"{type(cause).__name__}: {cause}", "".join(traceback.format_exception(error)), letter.id),
            )
            return Outcome(letter.id, letter.consumer, letter.position, False, letter.status, str(cause))
        if letter.status == STOPPED:
            _move_past(conn, letter)
        conn.execute(
            "UPDATE kami_dead_letters SET status = %s, resolved_by = %s, updated_at = now() WHERE id = %s",
            (RETRIED, actor(), letter.id),
        )
    log.warning("dead letter %s retried: %s applied position %s", letter.id, letter.consumer, letter.position)
    return Outcome(letter.id, letter.consumer, letter.position, True, RETRIED, "applied")


def skip(pool: ConnectionPool, letter_id: int, reason: str, by: str | None = None) -> Outcome:
    """Decide for good that a letter's event is not applied; a stopped consumer resumes past it.

    Who and why are kept on the letter: skipping is an audited decision, never a default.
    """
    if not reason.strip():
        raise DeadLetterError("a skip needs a reason: it is kept as the audit trail")
    who = by or actor()
    with pool.connection() as conn, conn.transaction():
        letter = _lock(conn, letter_id)
        if letter.status == STOPPED:
            _lock_position(conn, letter)
            _move_past(conn, letter)
        conn.execute(
            "UPDATE kami_dead_letters SET status = %s, resolved_by = %s, note = %s, updated_at = now()"
            " WHERE id = %s",
            (SKIPPED, who, reason, letter.id),
        )
    log.warning(
        "dead letter %s skipped by %s: %s will never apply position %s (%s)",
        letter.id,
        who,
        letter.consumer,
        letter.position,
        reason,
    )
    return Outcome(letter.id, letter.consumer, letter.position, True, SKIPPED, reason)


def _lock(conn: psycopg.Connection[Any], letter_id: int) -> DeadLetter:
    if not _exists(conn):
        raise DeadLetterError("no dead letters recorded")
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM kami_dead_letters WHERE id = %s FOR UPDATE", (letter_id,))
        row = cur.fetchone()
    if row is None:
        raise DeadLetterError(f"no dead letter {letter_id}")
    letter = _letter(row)
    if not letter.is_open:
        raise DeadLetterError(f"dead letter {letter_id} is already {letter.status}")
    return letter


def _lock_position(conn: psycopg.Connection[Any], letter: DeadLetter) -> None:
    """Hold the consumer's position row, so no runner steps it while the letter is acted on."""
    if letter.kafka_partition is None:
        conn.execute("SELECT position FROM kami_tracking WHERE name = %s FOR UPDATE", (letter.consumer,))
    else:
        conn.execute(
            "SELECT next_offset FROM kami_kafka_offsets WHERE consumer = %s AND topic = %s"
            " AND partition = %s FOR UPDATE",
            (letter.consumer, letter.kafka_topic, letter.kafka_partition),
        )


def _move_past(conn: psycopg.Connection[Any], letter: DeadLetter) -> None:
    """The consumer stopped right before this event: its position now covers it."""
    if letter.kafka_partition is None:
        conn.execute(
            "UPDATE kami_tracking SET position = GREATEST(position, %s) WHERE name = %s",
            (letter.position, letter.consumer),
        )
    else:
        assert letter.kafka_offset is not None
        conn.execute(
            "UPDATE kami_kafka_offsets SET next_offset = GREATEST(next_offset, %s),"
            " applied_id = GREATEST(applied_id, %s)"
            " WHERE consumer = %s AND topic = %s AND partition = %s",
            (
                letter.kafka_offset + 1,
                letter.position,
                letter.consumer,
                letter.kafka_topic,
                letter.kafka_partition,
            ),
        )


def retry_all(
    pool: ConnectionPool,
    mapper: Mapper[Any],
    resolve: Resolver = registry_resolver,
    consumers: Iterable[str] | None = None,
) -> list[Outcome]:
    """Retry every open letter (of these consumers), each consumer's in log order; a
    consumer's first failure ends its turn, since its later letters come after it."""
    with pool.connection() as conn:
        pending = letters(conn)
    wanted = None if consumers is None else set(consumers)
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for letter in pending:
        if (wanted is not None and letter.consumer not in wanted) or letter.consumer in failed:
            continue
        outcome = retry(pool, mapper, letter.id, resolve)
        outcomes.append(outcome)
        if not outcome.ok:
            failed.add(letter.consumer)
    return outcomes
