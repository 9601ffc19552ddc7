"""Card buckets: reserve, lapse, claim, release and void, given past events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.card_stock import FREE, RESERVED, SOLD, VOID, CardBucket
from domain.exceptions import InvalidState, NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = T0 + timedelta(minutes=15)
LAPSED = UNTIL + timedelta(seconds=1)


def replay(events: list[Any]) -> CardBucket:
    bucket = None
    for event in events:
        bucket = event.mutate(bucket)
    assert bucket is not None
    return bucket


def stocked(n: int = 3) -> tuple[list[Any], list[str]]:
    bucket = CardBucket.open(uuid4(), uuid4(), 0, T0)
    ids = [str(uuid4()) for _ in range(n)]
    bucket.add_cards([[cid, f"fp{i}", f"sealed{i}"] for i, cid in enumerate(ids)], T0)
    return bucket.collect_events(), ids


def then(bucket: CardBucket) -> list[str]:
    return [type(e).__name__ for e in bucket.collect_events()]


def with_reservation(count: int = 2) -> tuple[list[Any], list[str], Any, list[str]]:
    events, ids = stocked()
    bucket = replay(events)
    order = uuid4()
    taken = bucket.reserve(order, count, UNTIL, T0)
    return events + bucket.collect_events(), ids, order, taken


def test_imported_cards_are_available_and_remembered_by_fingerprint() -> None:
    events, ids = stocked()
    bucket = replay(events)
    assert bucket.count_available(T0) == 3
    assert sorted(bucket.available(T0)) == sorted(ids)
    assert bucket.has_fingerprint("fp1") and not bucket.has_fingerprint("fp9")


def test_an_empty_import_records_nothing() -> None:
    bucket = replay(stocked()[0])
    bucket.add_cards([], T0)
    assert then(bucket) == []


def test_reserving_takes_available_cards_for_the_order() -> None:
    bucket = replay(stocked()[0])
    order = uuid4()
    taken = bucket.reserve(order, 2, UNTIL, T0)
    assert len(taken) == 2
    assert then(bucket) == ["CardsReserved"]
    assert bucket.count_available(T0) == 1
    assert bucket.reserved_for(order, taken) == taken


def test_reserving_more_than_available_takes_what_there_is() -> None:
    bucket = replay(stocked(2)[0])
    assert len(bucket.reserve(uuid4(), 5, UNTIL, T0)) == 2
    assert bucket.reserve(uuid4(), 1, UNTIL, T0) == []
    assert then(bucket) == ["CardsReserved"]


def test_a_reserved_card_is_not_offered_to_another_order_before_its_deadline() -> None:
    events, _, _, taken = with_reservation(3)
    bucket = replay(events)
    assert bucket.reserve(uuid4(), 1, UNTIL, UNTIL - timedelta(seconds=1)) == []


def test_a_lapsed_reservation_becomes_available_again() -> None:
    events, _, first, taken = with_reservation(3)
    bucket = replay(events)
    assert bucket.count_available(UNTIL) == 3
    second = uuid4()
    retaken = bucket.reserve(second, 1, LAPSED + timedelta(minutes=15), LAPSED)
    assert len(retaken) == 1
    assert bucket.reserved_for(first, taken) == [c for c in taken if c not in retaken]
    assert bucket.reserved_for(second, retaken) == retaken


def test_claiming_needs_the_cards_reserved_for_this_order() -> None:
    events, ids, order, taken = with_reservation(2)
    free = [c for c in ids if c not in taken]
    bucket = replay(events)
    with pytest.raises(InvalidState):
        bucket.claim(order, free, T0)
    with pytest.raises(InvalidState):
        bucket.claim(uuid4(), taken, T0)
    assert then(bucket) == []
    bucket.claim(order, taken, T0)
    assert then(bucket) == ["CardsClaimed"]
    assert all(bucket.cards[c].status == SOLD for c in taken)


def test_a_lapsed_reservation_can_still_be_claimed_if_nobody_took_it() -> None:
    events, _, order, taken = with_reservation(2)
    bucket = replay(events)
    bucket.claim(order, taken, LAPSED)
    assert then(bucket) == ["CardsClaimed"]


def test_a_lapsed_reservation_taken_by_another_order_cannot_be_claimed() -> None:
    events, _, first, taken = with_reservation(3)
    bucket = replay(events)
    bucket.reserve(uuid4(), 3, LAPSED + timedelta(minutes=15), LAPSED)
    with pytest.raises(InvalidState):
        bucket.claim(first, taken, LAPSED)


def test_a_sold_card_is_never_available_again() -> None:
    events, _, order, taken = with_reservation(3)
    bucket = replay(events)
    bucket.claim(order, taken, T0)
    far = T0 + timedelta(days=365)
    assert bucket.count_available(far) == 0
    assert bucket.reserve(uuid4(), 1, far, far) == []
    bucket.release(order, taken, far)
    assert bucket.count_available(far) == 0


def test_release_frees_only_the_cards_still_held_by_the_order() -> None:
    events, _, first, taken = with_reservation(3)
    bucket = replay(events)
    second = uuid4()
    retaken = bucket.reserve(second, 1, LAPSED + timedelta(minutes=15), LAPSED)
    bucket.collect_events()
    bucket.release(first, taken, LAPSED)
    assert then(bucket) == ["CardsReleased"]
    assert bucket.cards[retaken[0]].status == RESERVED
    assert bucket.reserved_for(second, retaken) == retaken
    assert sum(1 for c in taken if bucket.cards[c].status == FREE) == 2


def test_releasing_nothing_held_records_nothing() -> None:
    events, ids, _, _ = with_reservation(1)
    bucket = replay(events)
    bucket.release(uuid4(), ids, T0)
    assert then(bucket) == []


def test_reserve_these_refuses_a_card_that_is_not_available() -> None:
    events, ids, _, taken = with_reservation(1)
    bucket = replay(events)
    with pytest.raises(InvalidState):
        bucket.reserve_these(uuid4(), taken, T0)
    free = [c for c in ids if c not in taken]
    late = uuid4()
    bucket.reserve_these(late, free, T0)
    bucket.claim(late, free, T0)
    assert then(bucket) == ["CardsReserved", "CardsClaimed"]


def test_a_free_card_can_be_voided_once() -> None:
    events, ids = stocked()
    bucket = replay(events)
    bucket.void(ids[0], "leaked", T0)
    bucket.void(ids[0], "leaked again", T0)
    assert then(bucket) == ["CardVoided"]
    assert bucket.cards[ids[0]].status == VOID
    assert bucket.count_available(T0) == 2
    assert ids[0] not in bucket.reserve(uuid4(), 3, UNTIL, T0)


def test_a_card_reserved_by_an_open_order_cannot_be_voided() -> None:
    events, _, _, taken = with_reservation(1)
    bucket = replay(events)
    with pytest.raises(InvalidState):
        bucket.void(taken[0], "leaked", T0)
    bucket.void(taken[0], "leaked", UNTIL)  # the reservation has lapsed
    assert then(bucket) == ["CardVoided"]


def test_a_sold_card_cannot_be_voided() -> None:
    events, _, order, taken = with_reservation(1)
    bucket = replay(events)
    bucket.claim(order, taken, T0)
    bucket.collect_events()
    with pytest.raises(InvalidState):
        bucket.void(taken[0], "leaked", LAPSED)
    assert then(bucket) == []


def test_voiding_an_unknown_card_is_not_found() -> None:
    bucket = replay(stocked()[0])
    with pytest.raises(NotFound):
        bucket.void(str(uuid4()), "?", T0)


def test_a_voided_reserved_card_cannot_be_claimed_by_its_order() -> None:
    events, _, order, taken = with_reservation(1)
    bucket = replay(events)
    bucket.void(taken[0], "leaked", LAPSED)
    with pytest.raises(InvalidState):
        bucket.claim(order, taken, LAPSED)


def test_an_import_does_not_disturb_a_reader_walking_the_cards() -> None:
    # The repository's cached bucket is fast-forwarded while other threads deep-copy it.
    bucket = replay(stocked()[0])
    walking = iter(bucket.cards.items())
    next(walking)
    bucket.add_cards([[str(uuid4()), "fp-new", "sealed-new"]], T0)
    assert len(list(walking)) == 2  # no "dictionary changed size during iteration"
    assert len(bucket.cards) == 4 and bucket.has_fingerprint("fp-new")
