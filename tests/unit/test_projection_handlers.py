"""Handlers without a database: given events, the batch's changes (rows, holds, counts)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from domain.card_stock import CardBucket
from domain.order import Order
from domain.posting import Posting
from domain.promoter import Promoter
from projections.also_bought import AlsoBoughtBatch, AlsoBoughtProjection
from projections.dashboard import DashboardBatch, DashboardProjection
from projections.payouts import PayoutsBatch, PayoutsProjection

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def event(cls: type, originator_id: UUID, **fields: Any) -> Any:
    if issubclass(cls, Aggregate.Created):
        fields["originator_topic"] = get_topic(cls).rsplit(".", 1)[0]
    return cls(originator_id=originator_id, originator_version=2, timestamp=NOW, **fields)


# --------------------------------------------------------------------------- dashboard


def holds(batch: DashboardBatch, cards: list[str]) -> dict[str, UUID | None]:
    result = {}
    for card in cards:
        row = batch["holds"].get((card,))
        result[card] = row["order_id"] if row else None
    return result


def test_a_card_taken_by_another_order_is_held_once_and_paying_ends_the_holds() -> None:
    projection = DashboardProjection()
    batch = DashboardBatch(projection)
    bucket, product = uuid4(), uuid4()
    batch["buckets"].seed({(bucket,): {"bucket_id": bucket, "product_id": product}})
    cards = ["c1", "c2", "c3"]
    batch["holds"].seed({(c,): None for c in cards})
    batch["products"].seed({(product,): None})
    first, second = uuid4(), uuid4()

    projection.card_bucket_cards_reserved(
        batch, 1, event(CardBucket.CardsReserved, bucket, order_id=first, card_ids=cards, until=NOW)
    )
    # The first reservation lapsed; the second order takes c1.
    projection.card_bucket_cards_reserved(
        batch, 2, event(CardBucket.CardsReserved, bucket, order_id=second, card_ids=["c1"], until=NOW)
    )
    assert holds(batch, cards) == {"c1": second, "c2": first, "c3": first}
    # The first order is paid (a late payment that found too few cards): its holds end,
    # in this batch's memory and, at flush, those of earlier batches.
    projection.order_paid(
        batch,
        3,
        event(Order.Paid, first, provider="p", txn_id="t", amount=1, fee_rate_bps=0, commissions=[]),
    )
    assert holds(batch, cards) == {"c1": second, "c2": None, "c3": None}
    [ending] = list(batch.before_flush())
    assert ending.text.startswith("DELETE") and ending.params == [[first]]
    projection.card_bucket_cards_claimed(
        batch, 4, event(CardBucket.CardsClaimed, bucket, order_id=second, card_ids=["c1"])
    )
    assert holds(batch, cards) == {"c1": None, "c2": None, "c3": None}
    assert batch["products"].get((product,)) == {"claimed": 1}


# ----------------------------------------------------------------------------- payouts


def test_a_refund_reverses_only_commissions_still_pending() -> None:
    projection = PayoutsProjection()
    batch = PayoutsBatch(projection)
    sharer, referrer = uuid4(), uuid4()
    batch["promoters"].seed({(sharer,): None, (referrer,): None})
    settled_order, refunded_order = uuid4(), uuid4()
    for order_id in (settled_order, refunded_order):
        projection.order_paid(
            batch,
            1,
            event(
                Order.Paid,
                order_id,
                provider="p",
                txn_id=str(order_id),
                amount=1000,
                fee_rate_bps=500,
                commissions=[[sharer, 1, 50], [referrer, 2, 20]],
            ),
        )
    for promoter, amount in ((sharer, 50), (referrer, 20)):
        projection.promoter_commission_credited(
            batch,
            2,
            event(Promoter.CommissionCredited, promoter, order_id=settled_order, level=1, amount=amount),
        )
    for order_id in (settled_order, refunded_order):
        projection.order_refunded(batch, 3, event(Order.Refunded, order_id, reason="", amount=1000, by="m"))
    assert batch["promoters"].get((sharer,)) == {"pending": 0, "available": 50, "reversed": 50}
    assert batch["promoters"].get((referrer,)) == {"pending": 0, "available": 20, "reversed": 20}
    statuses = {k: batch["commissions"].get(k)["status"] for k in batch.by_order[refunded_order]}  # type: ignore[index]
    assert set(statuses.values()) == {"reversed"}
    assert batch["commissions"].get((settled_order, sharer))["status"] == "available"  # type: ignore[index]


# ------------------------------------------------------------------------- also-bought

BUYERS = ["ann", "ben", "cy"]
PRODUCTS = [uuid4() for _ in range(4)]


@given(st.lists(st.tuples(st.sampled_from(BUYERS), st.sampled_from(PRODUCTS)), max_size=25))
def test_also_bought_counts_equal_a_recount_from_scratch(purchases: list[tuple[str, UUID]]) -> None:
    projection = AlsoBoughtProjection()
    batch = AlsoBoughtBatch(projection)
    for buyer in BUYERS:
        batch.bought[f"{buyer}@example.com"] = {}
    for buyer, product in purchases:
        order_id = uuid4()
        projection.order_placed(
            batch,
            1,
            event(
                Order.Placed,
                order_id,
                product_id=product,
                merchant_id=uuid4(),
                delivery="auto",
                quantity=1,
                unit_price=100,
                amount=100,
                contact=f" {buyer.upper()}@example.com ",
                token_hash="",
                promoter_chain=[],
                reservation=[],
                expires_at=NOW,
            ),
        )
        projection.posting_recorded(
            batch,
            2,
            event(Posting.Recorded, uuid4(), kind="payment", ref="", order_id=order_id, entries={}),
        )
    # The definition, recounted: count(P, Q) = Q's paid orders by buyers who bought P.
    bought: dict[str, Counter[UUID]] = defaultdict(Counter)
    for buyer, product in purchases:
        bought[buyer][product] += 1
    want: Counter[tuple[UUID, UUID]] = Counter()
    for orders in bought.values():
        for p in orders:
            for q, n in orders.items():
                if q != p:
                    want[(p, q)] += n
    pairs = batch["pairs"]
    pairs.seed({(p, q): None for p in PRODUCTS for q in PRODUCTS})
    got = {k: row["orders"] for k in want.keys() | set(pairs._adds) if (row := pairs.get(k))}
    assert got == dict(want)
