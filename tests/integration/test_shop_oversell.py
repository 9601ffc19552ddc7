"""Oversell under concurrency: 200 buyers for 50 cards, then every order paid twice at once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from uuid import uuid4

from domain.exceptions import OutOfStock
from domain.results import OrderPlaced
from domain.shop import Shop

T = TypeVar("T")

CARDS = 50
BUYERS = 200


def all_at_once(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run every call on its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | BaseException:
        barrier.wait()
        try:
            return call()
        except BaseException as error:  # noqa: BLE001 - the test inspects every outcome
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_two_hundred_buyers_for_fifty_cards_never_oversell(shop: Shop) -> None:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, "Hot top-up", 990, "auto")
    imported = {f"HOT-{uuid4().hex}" for _ in range(CARDS)}
    assert shop.import_cards(merchant.merchant_id, product.product_id, sorted(imported)).imported == CARDS

    outcomes = all_at_once(
        [lambda i=i: shop.place_order(product.product_id, 1, f"buyer{i}@example.com") for i in range(BUYERS)]
    )

    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"OrderPlaced": CARDS, "OutOfStock": BUYERS - CARDS}, kinds
    assert all(isinstance(o, (OrderPlaced, OutOfStock)) for o in outcomes)
    orders = [o for o in outcomes if isinstance(o, OrderPlaced)]
    assert shop.get_product(product.product_id).stock == 0

    # Each order paid twice at the same time with one txn id: the duplicate changes nothing.
    txns = {o.order_id: f"txn-{uuid4().hex}" for o in orders}
    payments = all_at_once(
        [
            lambda o=o: shop.record_payment("sandbox", o.order_id, txns[o.order_id], o.amount)
            for o in orders
            for _ in range(2)
        ]
    )
    errors = [p for p in payments if isinstance(p, BaseException)]
    assert errors == []
    assert Counter(p.duplicate for p in payments) == {False: CARDS, True: CARDS}
    assert Counter((p.status, p.duplicate) for p in payments) == {
        ("delivered", False): CARDS,
        ("delivered", True): CARDS,
    }

    delivered: list[str] = []
    for o in orders:
        view = shop.get_order(o.order_id, o.token)
        assert view.status == "delivered"
        assert view.cards is not None and len(view.cards) == 1
        delivered.extend(view.cards)
    assert len(delivered) == CARDS
    assert set(delivered) == imported
    assert shop.get_product(product.product_id).stock == 0
