"""The projection machinery without a database: names, topics, DDL, batched changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.utils import get_topic

from domain.order import Order
from projections.base import (
    Batch,
    Changes,
    HandlerFailed,
    NotLoaded,
    Projection,
    Table,
    counter,
    earliest,
    fact,
    handler_name,
    handles,
    key,
    value,
)
from projections.dashboard import DashboardProjection
from projections.registry import PROJECTIONS, build_all, projection_class

ROWS = Table(
    "rows",
    (key("id", "uuid"), fact("name", "text"), value("note", "text"), counter("hits")),
    ("id",),
)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_table_names_and_ddl_carry_the_version() -> None:
    live, rebuild = DashboardProjection(), DashboardProjection(version=2)
    assert live.name == "rm_dashboard_v1" and rebuild.name == "rm_dashboard_v2"
    assert live.table_names()["merchants"] == "rm_dashboard_v1_merchants"
    assert live.table_names(2) == rebuild.table_names()
    ddl = live.ddl(2)
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS rm_dashboard_v2_merchants (") for s in ddl)
    assert not any("_v1_" in s for s in ddl)


def test_every_projection_subscribes_to_exactly_the_events_it_handles() -> None:
    for cls in PROJECTIONS:
        assert cls.topics == frozenset(get_topic(t) for t in cls.handlers)
        assert all(name == handler_name(t) for t, name in cls.handlers.items())
        assert projection_class(cls.read_model) is cls
    names = [p.name for p in build_all()]
    assert len(set(names)) == len(names)


def test_a_handler_is_named_after_its_event() -> None:
    assert handler_name(Order.DisputeResolved) == "order_dispute_resolved"
    with pytest.raises(TypeError, match="name it order_paid"):

        class Misnamed(Projection[Batch]):
            read_model = "misnamed"

            @handles(Order.Paid)
            def paid(self, b: Batch, position: int, e: Order.Paid) -> None: ...


def test_changes_show_a_batch_its_own_writes() -> None:
    changes = Changes(ROWS, "rm_t_v1_rows")
    a, b, c = (uuid4(),), (uuid4(),), (uuid4(),)
    changes.seed({a: {"id": a[0], "name": "ann", "note": "x", "hits": 3}, b: None})
    changes.add(a, hits=2)
    changes.put(a, note="y")
    assert changes.get(a) == {"id": a[0], "name": "ann", "note": "y", "hits": 5}
    assert changes.get(b) is None
    changes.add(b, hits=1)  # a counter row that did not exist yet
    assert changes.get(b) == {"hits": 1}
    with pytest.raises(NotLoaded):
        changes.get(c)
    changes.put(c, name="cy", note=None)
    changes.delete(c)
    assert changes.get(c) is None
    changes.put(c, name="cy again", note=None)  # replaces the deleted row
    assert changes.get(c) == {"name": "cy again", "note": None}


def test_changes_are_written_in_a_few_set_based_statements() -> None:
    changes = Changes(ROWS, "rm_t_v1_rows")
    whole = [(uuid4(),) for _ in range(3)]
    for k in whole:
        changes.put(k, name="n", note=None)
        changes.add(k, hits=1)
    partial = (uuid4(),)
    changes.put(partial, note="only a note")
    gone = (uuid4(),)
    changes.delete(gone)
    statements = list(changes.statements())
    assert [s.text.split()[0] for s in statements] == ["DELETE", "INSERT", "UPDATE", "INSERT"]
    insert, update, add = statements[1], statements[2], statements[3]
    assert "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name" in insert.text
    assert len(insert.params[0]) == 3  # three rows, one statement
    # A put without the row's facts updates the row an earlier event created, and
    # must find it.
    assert update.rows == 1
    assert "hits = t.hits + EXCLUDED.hits" in add.text
    with pytest.raises(ValueError, match="never deleted"):
        changes.delete(whole[0])


FIRSTS = Table("firsts", (key("id", "text"), earliest("first", "timestamptz"), counter("hits")), ("id",))


def test_earliest_values_keep_the_least_in_memory_and_in_sql() -> None:
    changes = Changes(FIRSTS, "rm_t_v1_firsts")
    k = ("ann",)
    changes.seed({k: {"id": "ann", "first": NOW, "hits": 1}})
    later, earlier = NOW.replace(year=2031), NOW.replace(year=2029)
    changes.lower(k, first=later)
    assert changes.get(k)["first"] == NOW  # type: ignore[index]
    changes.lower(k, first=earlier)
    changes.add(k, hits=1)
    assert changes.get(k) == {"id": "ann", "first": earlier, "hits": 2}
    [add, least] = list(changes.statements())
    assert "first = LEAST(t.first, EXCLUDED.first)" in least.text
    assert least.params == [["ann"], [earlier]]
    with pytest.raises(ValueError, match="never deleted"):
        changes.delete(k)


def test_statements_write_rows_in_key_order() -> None:
    changes = Changes(ROWS, "rm_t_v1_rows")
    ids = [(uuid4(),) for _ in range(20)]
    for k in ids:
        changes.add(k, hits=1)
        changes.put(k, name="n", note=None)
    put, add = list(changes.statements())
    assert put.params[0] == add.params[0] == sorted(k[0] for k in ids)


class Exploding(Projection[Batch]):
    read_model = "exploding"
    tables = (ROWS,)

    def begin(self, conn: Any, events: Any) -> Batch:
        return Batch(self)

    @handles(Order.Expired)
    def order_expired(self, b: Batch, position: int, e: Order.Expired) -> None:
        b["rows"].add((e.originator_id,), hits=1)
        if position == 8:
            raise ValueError("poison")


def test_a_failing_handler_names_its_event_and_writes_nothing() -> None:
    events = [
        (position, Order.Expired(originator_id=uuid4(), originator_version=3, timestamp=NOW))
        for position in (7, 8, 9)
    ]
    with pytest.raises(HandlerFailed) as failure:
        # No connection: the batch never reaches its flush.
        Exploding().apply(None, events)  # type: ignore[arg-type]
    assert failure.value.position == 8 and failure.value.event is events[1][1]
    assert failure.value.projection == "rm_exploding_v1"
    assert isinstance(failure.value.__cause__, ValueError)
