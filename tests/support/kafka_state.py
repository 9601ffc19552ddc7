"""What the Kafka consumers have stored in PostgreSQL, as the Kafka tests wait on it."""

from __future__ import annotations

from consumers import dead_letters
from consumers.positions import read_model_position
from kami.bootstrap import Kami


def position(kami: Kami, name: str) -> int:
    """A read model's position: the lowest watermark over its partitions."""
    with kami.pool.connection() as conn:
        return read_model_position(conn, name)


def letters(kami: Kami) -> list[dead_letters.DeadLetter]:
    with kami.pool.connection() as conn:
        return dead_letters.letters(conn)


def others_at(kami: Kami, name: str, stopped: int | None, head: int, partitions: int) -> bool:
    """Whether every partition of ``name`` but ``stopped`` has its watermark at ``head``."""
    with kami.pool.connection() as conn:
        found = conn.execute(
            "SELECT partition, watermark FROM kami_kafka_offsets WHERE consumer = %s", (name,)
        ).fetchall()
    others = [w for p, w in found if p != stopped]
    return len(others) == partitions - 1 and min(others) >= head
