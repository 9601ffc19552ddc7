"""A command's copy of a cached aggregate shares nothing the command could change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from eventsourcing.domain import Aggregate

from domain.aggregate_cache import copy_of
from domain.card_stock import CardBucket

AT = datetime(2026, 1, 1, tzinfo=UTC)


class Ledgerish(Aggregate):
    def __init__(self) -> None:
        self.owner = uuid4()
        self.when = AT
        self.rows: list[list[object]] = [[uuid4(), 1], [uuid4(), 2]]
        self.by_key: dict[str, list[int]] = {"a": [1, 2]}
        self.tags: set[str] = {"x"}
        self.pair = (1, [2])
        self.note: str | None = None


def test_containers_are_copied_and_immutable_values_shared() -> None:
    original = Ledgerish()
    clone = copy_of(original)

    clone.rows[0][1] = 99
    clone.rows.append([uuid4(), 3])
    clone.by_key["a"].append(3)
    clone.tags.add("y")
    clone.pair[1].append(3)
    clone.note = "changed"

    assert original.rows[0][1] == 1 and len(original.rows) == 2
    assert original.by_key == {"a": [1, 2]}
    assert original.tags == {"x"}
    assert original.pair == (1, [2])
    assert original.note is None
    assert clone.owner is original.owner and clone.when is original.when
    assert (clone.id, clone.version, type(clone)) == (original.id, original.version, Ledgerish)


def test_new_events_on_the_copy_stay_off_the_original() -> None:
    original = Ledgerish()
    original.collect_events()
    clone = copy_of(original)

    clone.trigger_event(Aggregate.Event, timestamp=AT)

    assert clone.version == original.version + 1
    assert original.collect_events() == []
    assert len(clone.collect_events()) == 1


def test_an_aggregate_with_its_own_deepcopy_is_copied_its_way() -> None:
    bucket = CardBucket.open(uuid4(), uuid4(), 0, AT)
    bucket.add_cards([["c1", "fp1", "sealed1"]], AT)
    clone = copy_of(bucket)

    clone.reserve(uuid4(), 1, AT + timedelta(minutes=15), AT)

    assert bucket.available(AT) == ["c1"]
    assert clone.available(AT) == []
