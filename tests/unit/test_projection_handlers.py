"""Handlers without a database: given events, the batch's changes (rows, holds, counts)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from domain.card_stock import CardBucket
from domain.order import Order
from domain.promoter import Promoter
from projections.also_bought import AlsoBoughtProjection
from projections.base import Batch
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


def test_a_card_taken_by_another_order_is_held_once_and_only_its_bucket_ends_the_hold() -> None:
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
    # The first order's late payment finds too few cards: the order is paid (not
    # honoured) and refunded, which holds nothing by itself; its bucket releases the
    # cards it still holds.
    order = {"merchant_id": uuid4(), "product_id": product, "buyer": "b", "quantity": 3}
    batch["orders"].seed({(first,): order})
    projection.order_paid(
        batch,
        3,
        event(
            Order.Paid,
            first,
            provider="p",
            txn_id="t",
            amount=1,
            fee_rate_bps=0,
            commissions=[],
            honoured=False,
        ),
    )
    assert holds(batch, cards) == {"c1": second, "c2": first, "c3": first}
    assert batch["products"].get((product,)) is None  # not a sale: nothing sold
    projection.card_bucket_cards_released(
        batch, 4, event(CardBucket.CardsReleased, bucket, order_id=first, card_ids=["c2", "c3"])
    )
    assert holds(batch, cards) == {"c1": second, "c2": None, "c3": None}
    projection.card_bucket_cards_claimed(
        batch, 5, event(CardBucket.CardsClaimed, bucket, order_id=second, card_ids=["c1"])
    )
    assert holds(batch, cards) == {"c1": None, "c2": None, "c3": None}
    assert batch["products"].get((product,)) == {"claimed": 1}


# ----------------------------------------------------------------------------- payouts


def paid(order_id: UUID, commissions: list[list[Any]], amount: int = 1000) -> Any:
    return event(
        Order.Paid,
        order_id,
        provider="p",
        txn_id=str(order_id),
        amount=amount,
        fee_rate_bps=500,
        commissions=commissions,
        honoured=True,
    )


def test_a_refund_reverses_only_commissions_still_pending() -> None:
    projection = PayoutsProjection()
    batch = PayoutsBatch(projection)
    sharer, referrer = uuid4(), uuid4()
    batch["promoters"].seed({(sharer,): None, (referrer,): None})
    settled_order, refunded_order = uuid4(), uuid4()
    for order_id in (settled_order, refunded_order):
        projection.order_paid(batch, 1, paid(order_id, [[sharer, 1, 50], [referrer, 2, 20]]))
    # The order's own event settles its commissions: no promoter event is needed.
    projection.order_commissions_settled(batch, 2, event(Order.CommissionsSettled, settled_order))
    for order_id in (settled_order, refunded_order):
        projection.order_refunded(batch, 3, event(Order.Refunded, order_id, reason="", amount=1000, by="m"))
    assert batch["promoters"].get((sharer,)) == {"pending": 0, "available": 50, "reversed": 50}
    assert batch["promoters"].get((referrer,)) == {"pending": 0, "available": 20, "reversed": 20}
    statuses = {k: batch["commissions"].get(k)["status"] for k in batch.by_order[refunded_order]}  # type: ignore[index]
    assert set(statuses.values()) == {"reversed"}
    assert batch["commissions"].get((settled_order, sharer))["status"] == "available"  # type: ignore[index]


def test_referrals_are_counted_from_the_joining_promoter_alone() -> None:
    projection = PayoutsProjection()
    batch = PayoutsBatch(projection)
    top, mid, low = uuid4(), uuid4(), uuid4()
    batch["promoters"].seed({(p,): None for p in (top, mid, low)})

    def joined(promoter_id: UUID, upline: list[UUID]) -> Any:
        return event(
            Promoter.Joined,
            promoter_id,
            name="n",
            contact="c",
            code="C",
            token_hash="",
            referrer_id=upline[0] if upline else None,
            upline=upline,
        )

    # The lowest joins first as far as this consumer sees: nothing is read from the
    # others' rows, so the order does not matter.
    projection.promoter_joined(batch, 3, joined(low, [mid, top]))
    projection.promoter_joined(batch, 1, joined(top, []))
    projection.promoter_joined(batch, 2, joined(mid, [top]))
    figures = {p: batch["promoters"].get((p,)) for p in (top, mid, low)}
    assert (figures[top]["direct_referrals"], figures[top]["indirect_referrals"]) == (1, 1)  # type: ignore[index]
    assert (figures[mid]["direct_referrals"], figures[mid].get("indirect_referrals", 0)) == (1, 0)  # type: ignore[union-attr,index]
    assert "direct_referrals" not in figures[low]  # type: ignore[operator]


# ------------------------------------------------------------------------- also-bought

BUYERS = ["ann", "ben", "cy"]
PRODUCTS = [uuid4() for _ in range(4)]


@given(st.lists(st.tuples(st.sampled_from(BUYERS), st.sampled_from(PRODUCTS)), max_size=25))
def test_also_bought_counts_each_buyers_paid_orders_per_product(purchases: list[tuple[str, UUID]]) -> None:
    projection = AlsoBoughtProjection()
    batch = Batch(projection)
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
        projection.order_paid(batch, 2, paid(order_id, []))
        # A payment sent back is not a purchase.
        refused = uuid4()
        batch["orders"].seed({(refused,): {"product_id": product, "buyer": buyer}})
        projection.order_paid(batch, 3, replace_honoured(paid(refused, []), honoured=False))
    # Pure counters: the pairs are derived from them when read (integration tests).
    want = Counter((f"{buyer}@example.com", product) for buyer, product in purchases)
    rows = batch["buyer_products"]
    rows.seed({k: None for k in want})
    assert {k: rows.get(k)["orders"] for k in want} == dict(want)  # type: ignore[index]
    assert set(rows._adds) == set(want)


def replace_honoured(e: Any, *, honoured: bool) -> Any:
    e.__dict__["honoured"] = honoured
    return e
