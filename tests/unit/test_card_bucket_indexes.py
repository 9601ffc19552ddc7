"""A card bucket's indexes (the card map's copies, the free count, the mark, the returned
and held cards) always agree with the cards themselves, through any run of commands,
copies and replays: checked against a plain model of every card's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.aggregate_cache import copy_of
from domain.card_stock import FREE, RESERVED, SOLD, CardBucket, CardMap
from domain.exceptions import InvalidState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


@dataclass
class Model:
    """Each card's (status, order, deadline), and what may be taken now: the plain rule."""

    cards: dict[str, tuple[str, UUID | None, datetime | None]] = field(default_factory=dict)

    def available(self, now: datetime) -> set[str]:
        return {
            cid
            for cid, (status, _, until) in self.cards.items()
            if status == FREE or (status == RESERVED and until is not None and until <= now)
        }


def agree(bucket: CardBucket, model: Model, now: datetime) -> None:
    assert {cid: (c.status, c.order_id, c.until) for cid, c in bucket.cards.items()} == model.cards
    assert len(bucket.cards) == len(model.cards)
    assert bucket.count_available(now) == len(model.available(now))
    listed = bucket.available(now)
    assert len(listed) == len(set(listed)) and set(listed) == model.available(now)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("import"), st.integers(1, 40)),
        st.tuples(st.just("reserve"), st.integers(1, 6)),
        st.tuples(st.just("claim"), st.integers(0, 30)),
        st.tuples(st.just("release"), st.integers(0, 30)),
        st.tuples(st.just("void"), st.integers(0, 200)),
        st.tuples(st.just("late"), st.integers(1, 3)),
        st.tuples(st.just("wait"), st.integers(1, 20)),
        st.tuples(st.just("copy"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_indexes_agree_with_the_cards_through_any_run(run: list[tuple[str, int]]) -> None:
    bucket = CardBucket.open(uuid4(), uuid4(), 0, T0)
    model = Model()
    now = T0
    orders: list[tuple[UUID, list[str]]] = []
    copies: list[tuple[CardBucket, Model, datetime]] = []
    events: list[Any] = list(bucket.collect_events())
    for op, n in run:
        if op == "import":
            ids = [str(uuid4()) for _ in range(n)]
            bucket.add_cards([[cid, f"fp-{cid}", f"sealed-{cid}"] for cid in ids], now)
            model.cards.update({cid: (FREE, None, None) for cid in ids})
        elif op == "reserve":
            order = uuid4()
            before = model.available(now)
            taken = bucket.reserve(order, n, now + TTL, now)
            assert len(taken) == len(set(taken)) == min(n, len(before)) and set(taken) <= before
            model.cards.update({cid: (RESERVED, order, now + TTL) for cid in taken})
            orders.append((order, taken))
        elif op in ("claim", "release") and orders:
            order, ids = orders[n % len(orders)]
            held = [c for c in ids if model.cards[c][:2] == (RESERVED, order)]
            assert bucket.reserved_for(order, ids) == held
            if op == "release":
                bucket.release(order, ids, now)
                model.cards.update({cid: (FREE, None, None) for cid in held})
            elif held == ids:
                bucket.claim(order, ids, now)
                model.cards.update({cid: (SOLD, order, None) for cid in ids})
        elif op == "void" and model.cards:
            cid = list(model.cards)[n % len(model.cards)]
            status, _, until = model.cards[cid]
            try:
                bucket.void(cid, "leaked", now)
            except InvalidState:
                assert status == SOLD or (status == RESERVED and until is not None and until > now)
            else:
                model.cards[cid] = ("void", None, None)
        elif op == "late":
            # A late payment takes free cards by name (``Shop._claim_cards``).
            order = uuid4()
            ids = bucket.available(now, n)
            assert set(ids) <= model.available(now)
            bucket.reserve_these(order, ids, now)
            model.cards.update({cid: (RESERVED, order, now) for cid in ids})
            orders.append((order, ids))
        elif op == "wait":
            now += timedelta(minutes=n)
        elif op == "copy":
            # The copy goes on, as a command's would: the original must not see it.
            clone, own = copy_of(bucket), Model(dict(model.cards))
            order = uuid4()
            taken = clone.reserve(order, 2, now + TTL, now)
            own.cards.update({cid: (RESERVED, order, now + TTL) for cid in taken})
            copies.append((clone, own, now))
        agree(bucket, model, now)
        events.extend(bucket.collect_events())
    # Nothing the original did later changed a copy: each is as it was taken, with its
    # own reservation.
    for clone, own, at in copies:
        agree(clone, own, at)
    # A replay from the events builds the same cards and indexes.
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, CardBucket)
    agree(replayed, model, now)
    assert (replayed.free, replayed.next_mark) == (bucket.free, bucket.next_mark)


def test_a_card_map_copy_shares_its_base_and_folds_changes_in_later() -> None:
    from domain.card_stock import Card

    base = {str(i): Card(f"fp{i}", f"s{i}", FREE, None, None) for i in range(2000)}
    cards = CardMap().merged(base)
    clone = cards.copy()
    for i in range(200):
        clone.put(str(i), base[str(i)]._replace(status=SOLD))
    assert all(cards[str(i)].status == FREE for i in range(2000))
    assert [clone[str(i)].status for i in (0, 199, 200)] == [SOLD, SOLD, FREE]
    assert list(clone) == list(base) and len(clone) == 2000
    assert str(5000) not in clone and clone.get(str(5000)) is None
