"""Payment callbacks through Shop: idempotent by txn id, exact amounts, second payments returned."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest

from domain import ledger
from domain.exceptions import AmountMismatch, DuplicateTxn, InvalidInput, NotFound
from domain.results import OrderPlaced, PaymentResult
from domain.shop import Shop


def kinds(shop: Shop, order_id: UUID) -> Counter[str]:
    found: Counter[str] = Counter()
    after = 0
    while batch := shop.recorder.select_notifications(after + 1, 1000):
        for n in batch:
            after = n.id
            if n.topic.endswith("Posting.Recorded"):
                p = shop.mapper.to_domain_event(n)
                if p.order_id == order_id:
                    found[p.kind] += 1
    return found


def two_orders(shop: Shop) -> tuple[OrderPlaced, OrderPlaced]:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, "Key", 1290, "auto")
    shop.import_cards(merchant.merchant_id, product.product_id, [uuid4().hex for _ in range(3)])
    return (
        shop.place_order(product.product_id, 1, "a@example.com"),
        shop.place_order(product.product_id, 1, "b@example.com"),
    )


def test_a_txn_id_used_on_another_order_is_refused_and_writes_nothing(shop: Shop) -> None:
    first, second = two_orders(shop)
    txn = uuid4().hex
    shop.record_payment("sandbox", first.order_id, txn, first.amount)
    before = shop.position()

    with pytest.raises(DuplicateTxn):
        shop.record_payment("sandbox", second.order_id, txn, second.amount)

    assert shop.position() == before
    assert shop.get_order(second.order_id, second.token).status == "pending"
    assert kinds(shop, second.order_id) == Counter()
    # The order is still payable with its own txn id.
    assert shop.record_payment("sandbox", second.order_id, uuid4().hex, second.amount).status == "delivered"


def test_one_txn_id_sent_for_two_orders_at_once_pays_exactly_one(shop: Shop) -> None:
    first, second = two_orders(shop)
    txn = uuid4().hex
    barrier = threading.Barrier(2)

    def pay(order: OrderPlaced) -> PaymentResult | DuplicateTxn:
        barrier.wait()
        try:
            return shop.record_payment("sandbox", order.order_id, txn, order.amount)
        except DuplicateTxn as error:
            return error

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(pay, [first, second]))

    assert Counter(type(o).__name__ for o in outcomes) == {"PaymentResult": 1, "DuplicateTxn": 1}
    statuses = sorted(shop.get_order(o.order_id, o.token).status for o in (first, second))
    assert statuses == ["delivered", "pending"]


def test_the_same_txn_again_changes_nothing(shop: Shop) -> None:
    order, _ = two_orders(shop)
    txn = uuid4().hex
    first = shop.record_payment("sandbox", order.order_id, txn, order.amount)
    position = shop.position()
    again = shop.record_payment("sandbox", order.order_id, txn, order.amount)
    assert (first.status, first.duplicate) == ("delivered", False)
    assert (again.status, again.duplicate) == ("delivered", True)
    assert shop.position() == position
    assert kinds(shop, order.order_id) == {"payment": 1}


def test_the_same_txn_id_from_another_provider_is_another_payment(shop: Shop) -> None:
    order, _ = two_orders(shop)
    txn = uuid4().hex
    shop.record_payment("sandbox", order.order_id, txn, order.amount)
    result = shop.record_payment("epay", order.order_id, txn, order.amount)
    assert (result.status, result.duplicate) == ("delivered", False)
    assert kinds(shop, order.order_id) == {"payment": 1, "unmatched": 1, "return": 1}


def test_a_second_payment_is_returned_and_the_order_keeps_its_cards(shop: Shop) -> None:
    order, _ = two_orders(shop)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    cards = shop.get_order(order.order_id, order.token).cards

    result = shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)

    assert (result.status, result.duplicate) == ("delivered", False)
    assert shop.get_order(order.order_id, order.token).cards == cards
    assert kinds(shop, order.order_id) == {"payment": 1, "unmatched": 1, "return": 1}


def test_a_payment_after_a_refund_is_returned(shop: Shop) -> None:
    order, _ = two_orders(shop)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    shop.refund_order(order.order_id, "asked", None)
    result = shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    assert result.status == "refunded"
    assert kinds(shop, order.order_id) == {"payment": 1, "refund": 1, "unmatched": 1, "return": 1}


@pytest.mark.parametrize("delta", [-1, 1, -1290])
def test_a_wrong_amount_is_refused_and_writes_nothing(shop: Shop, delta: int) -> None:
    order, _ = two_orders(shop)
    before = shop.position()
    with pytest.raises(AmountMismatch):
        shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount + delta)
    assert shop.position() == before
    assert shop.get_order(order.order_id, order.token).status == "pending"


def test_a_payment_for_an_unknown_order_is_not_found(shop: Shop) -> None:
    before = shop.position()
    with pytest.raises(NotFound):
        shop.record_payment("sandbox", uuid4(), uuid4().hex, 100)
    assert shop.position() == before


@pytest.mark.parametrize("txn", ["", "x" * 129])
def test_a_txn_id_must_have_one_to_128_characters(shop: Shop, txn: str) -> None:
    order, _ = two_orders(shop)
    with pytest.raises(InvalidInput):
        shop.record_payment("sandbox", order.order_id, txn, order.amount)


def test_a_payment_posting_splits_fee_and_merchant_net(shop: Shop) -> None:
    order, _ = two_orders(shop)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    view = shop.get_order_for_merchant(order.order_id, None)
    after = 0
    payment = None
    while batch := shop.recorder.select_notifications(after + 1, 1000):
        for n in batch:
            after = n.id
            if n.topic.endswith("Posting.Recorded"):
                p = shop.mapper.to_domain_event(n)
                if p.order_id == order.order_id and p.kind == "payment":
                    payment = p.entries
    fee = order.amount * 500 // 10_000  # a new merchant is in the basic tier
    assert payment == {
        ledger.CLEARING: order.amount,
        ledger.FEES: -fee,
        ledger.merchant_account(view.merchant_id): -(order.amount - fee),
    }


def test_two_different_payments_at_once_deliver_once_and_return_the_other(shop: Shop) -> None:
    order, _ = two_orders(shop)
    barrier = threading.Barrier(2)

    def pay(_: int) -> PaymentResult:
        barrier.wait()
        return shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(pay, range(2)))

    assert [r.status for r in results] == ["delivered", "delivered"]
    assert not any(r.duplicate for r in results)
    view = shop.get_order(order.order_id, order.token)
    assert view.cards is not None and len(view.cards) == 1
    assert kinds(shop, order.order_id) == {"payment": 1, "unmatched": 1, "return": 1}
