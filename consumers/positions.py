"""How far a read model has got, whichever transport feeds it.

Embedded: the runner's tracking row, the last log position applied in order.
Kafka: the lowest watermark over the consumer's partitions, since one partition can
be past a position while another still holds an event below it.
"""

from __future__ import annotations

from typing import Any

import psycopg


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def read_model_position(conn: psycopg.Connection[Any], name: str) -> int:
    if _exists(conn, "kami_kafka_offsets"):
        row = conn.execute(
            "SELECT count(*), min(watermark) FROM kami_kafka_offsets WHERE consumer = %s", (name,)
        ).fetchone()
        if row and row[0]:
            return int(row[1])
    if _exists(conn, "kami_tracking"):
        row = conn.execute("SELECT position FROM kami_tracking WHERE name = %s", (name,)).fetchone()
        if row:
            return int(row[0])
    return 0
