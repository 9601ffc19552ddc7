"""A flush writes exactly the values its handlers gave, whatever their type: the rows
go to PostgreSQL as a JSON document (few) or arrays (many), and each column type must
survive either trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from projections import base
from projections.base import Batch, Projection, Table, counter, earliest, fact, key, value

EVERY_TYPE = Table(
    "every_type",
    (
        key("id", "uuid"),
        key("name", "text"),
        value("small", "integer"),
        value("big", "bigint"),
        value("flag", "boolean"),
        value("day", "date"),
        value("at", "timestamptz"),
        value("other", "uuid"),
        earliest("first", "timestamptz"),
        counter("hits"),
    ),
    ("id", "name"),
)
# A table with a fact: a put without it updates the row (UPDATE ... FROM).
FACTS = Table("facts", (key("id", "uuid"), fact("name", "text"), value("note", "text")), ("id",))


class EveryType(Projection[Batch]):
    read_model = "flush_every_type"
    tables = (EVERY_TYPE, FACTS)


@pytest.mark.parametrize("json_rows", [base.JSON_ROWS, 0], ids=["json", "arrays"])
def test_a_flush_writes_every_column_type_exactly(
    database_url: str, json_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both forms of a statement's rows (a JSON document when few, arrays when many).
    monkeypatch.setattr(base, "JSON_ROWS", json_rows)
    projection = EveryType()
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    a, b, gone = uuid4(), uuid4(), uuid4()
    with psycopg.connect(database_url) as conn:
        projection.create_tables(conn)
        first = Batch(projection)
        rows = first["every_type"]
        rows.put((gone, "x"), small=1, big=None, flag=None, day=None, at=None, other=None)
        rows.put(
            (a, "quote ' \" \\ {} , ü 🙂"),
            small=-(2**31),
            big=2**63 - 1,
            flag=True,
            day=date(1, 1, 1),
            at=at,
            other=b,
        )
        rows.put((b, ""), small=0, big=-(2**53) - 1, flag=False, day=None, at=None, other=None)
        rows.lower((b, ""), first=at)
        rows.add((b, ""), hits=2**40)
        first["facts"].put((a,), name="ann", note=None)
        first["facts"].put((b,), name="bob", note="x")
        first["facts"].put((gone,), name="gone", note=None)
        first.flush(conn)
        second = Batch(projection)
        second["every_type"].delete((gone, "x"))
        second["every_type"].lower((b, ""), first=at + timedelta(microseconds=1))
        second["every_type"].add((b, ""), hits=1)
        second["every_type"].put((b, ""), day=date(9999, 12, 31), at=datetime(2030, 1, 1, tzinfo=UTC))
        second["facts"].put((a,), note="later")
        second["facts"].delete((gone,))
        second.flush(conn)
        found: dict[str, list[tuple[Any, ...]]] = projection.rows(conn)
        conn.rollback()
    assert sorted(found["every_type"]) == sorted(
        [
            (a, "quote ' \" \\ {} , ü 🙂", -(2**31), 2**63 - 1, True, date(1, 1, 1), at, b, None, 0),
            (
                b,
                "",
                0,
                -(2**53) - 1,
                False,
                date(9999, 12, 31),
                datetime(2030, 1, 1, tzinfo=UTC),
                None,
                at,
                2**40 + 1,
            ),
        ]
    )
