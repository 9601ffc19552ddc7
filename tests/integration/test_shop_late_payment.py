"""Payments that arrive after an order expired: delivered while cards can still be claimed,
refunded (unmatched + return) when they cannot."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from domain import ledger
from domain.clock import ManualClock
from domain.shop import Shop

PRICE = 990
TTL = timedelta(minutes=15)


def postings(shop: Shop, order_id: UUID) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    after = 0
    while batch := shop.recorder.select_notifications(after + 1, 1000):
        for n in batch:
            after = n.id
            if n.topic.endswith("Posting.Recorded"):
                p = shop.mapper.to_domain_event(n)
                if p.order_id == order_id:
                    assert p.kind not in found
                    found[p.kind] = p.entries
    return found


def stocked(shop: Shop, cards: int) -> tuple[UUID, UUID, list[str]]:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, "Gift card", PRICE, "auto")
    keys = [f"LATE-{uuid4().hex}" for _ in range(cards)]
    shop.import_cards(merchant.merchant_id, product.product_id, keys)
    return merchant.merchant_id, product.product_id, keys


@pytest.mark.parametrize("expiry_ran", [True, False], ids=["expired", "lapsed"])
def test_a_late_payment_delivers_when_cards_can_still_be_claimed(
    shop: Shop, clock: ManualClock, expiry_ran: bool
) -> None:
    _, product_id, keys = stocked(shop, 2)
    order = shop.place_order(product_id, 2, "buyer@example.com")
    clock.advance(TTL + timedelta(minutes=1))
    if expiry_ran:
        assert shop.expire_order(order.order_id).status == "expired"
    assert shop.get_product(product_id).stock == 2

    result = shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)

    assert (result.status, result.duplicate) == ("delivered", False)
    view = shop.get_order(order.order_id, order.token)
    assert view.status == "delivered" and sorted(view.cards or []) == sorted(keys)
    assert shop.get_product(product_id).stock == 0
    assert set(postings(shop, order.order_id)) == {"payment"}


def test_a_late_payment_takes_other_cards_when_its_own_were_taken(shop: Shop, clock: ManualClock) -> None:
    merchant_id, product_id, keys = stocked(shop, 1)
    late = shop.place_order(product_id, 1, "late@example.com")
    clock.advance(TTL + timedelta(minutes=1))
    prompt = shop.place_order(product_id, 1, "prompt@example.com")  # takes the lapsed card
    fresh = f"LATE-{uuid4().hex}"
    shop.import_cards(merchant_id, product_id, [fresh])

    assert shop.record_payment("sandbox", late.order_id, uuid4().hex, late.amount).status == "delivered"
    assert shop.record_payment("sandbox", prompt.order_id, uuid4().hex, prompt.amount).status == "delivered"
    assert shop.get_order(late.order_id, late.token).cards == [fresh]
    assert shop.get_order(prompt.order_id, prompt.token).cards == keys


@pytest.mark.parametrize("expiry_ran", [True, False], ids=["expired", "lapsed"])
def test_a_late_payment_is_refunded_when_no_card_is_left(
    shop: Shop, clock: ManualClock, expiry_ran: bool
) -> None:
    _, product_id, keys = stocked(shop, 1)
    late = shop.place_order(product_id, 1, "late@example.com")
    clock.advance(TTL + timedelta(minutes=1))
    if expiry_ran:
        shop.expire_order(late.order_id)
    prompt = shop.place_order(product_id, 1, "prompt@example.com")
    assert shop.record_payment("sandbox", prompt.order_id, uuid4().hex, prompt.amount).status == "delivered"

    txn = uuid4().hex
    result = shop.record_payment("sandbox", late.order_id, txn, late.amount)

    assert (result.status, result.duplicate) == ("refunded", False)
    view = shop.get_order(late.order_id, late.token)
    assert view.status == "refunded" and not view.cards
    assert shop.get_order(prompt.order_id, prompt.token).cards == keys
    booked = postings(shop, late.order_id)
    assert set(booked) == {"unmatched", "return"}
    assert booked["unmatched"] == {ledger.CLEARING: late.amount, ledger.REFUNDS: -late.amount}
    assert booked["return"] == {ledger.REFUNDS: late.amount, ledger.CLEARING: -late.amount}

    # The provider retries its callback: nothing changes.
    again = shop.record_payment("sandbox", late.order_id, txn, late.amount)
    assert (again.status, again.duplicate) == ("refunded", True)
    assert set(postings(shop, late.order_id)) == {"unmatched", "return"}


def test_a_late_payment_for_two_cards_with_one_left_is_refunded_whole(shop: Shop, clock: ManualClock) -> None:
    _, product_id, _ = stocked(shop, 2)
    late = shop.place_order(product_id, 2, "late@example.com")
    clock.advance(TTL + timedelta(minutes=1))
    other = shop.place_order(product_id, 1, "other@example.com")
    shop.record_payment("sandbox", other.order_id, uuid4().hex, other.amount)

    result = shop.record_payment("sandbox", late.order_id, uuid4().hex, late.amount)

    assert result.status == "refunded"
    assert shop.get_product(product_id).stock == 1  # the one left is not lost
    assert set(postings(shop, late.order_id)) == {"unmatched", "return"}
