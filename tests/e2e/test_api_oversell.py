"""Oversell under concurrency, over real HTTP: a live uvicorn server and 200 buyers."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from api.main import create_app
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, live_server, random_cards, random_settings, unique

CARDS = 50
BUYERS = 200
WORKERS = 80


def test_two_hundred_buyers_share_fifty_cards_and_double_callbacks_deliver_each_once(kami: Kami) -> None:
    settings = random_settings()
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    with (
        live_server(create_app(kami, settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=120, limits=limits) as http,
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
    ):
        api = Api(http, settings)
        _, merchant = api.merchant()
        cards = random_cards(CARDS)
        product_id = api.product(merchant, cards)

        def buy(_: int) -> httpx.Response:
            body = {"product_id": product_id, "quantity": 1, "contact": unique("buyer")}
            return http.post("/v1/orders", json=body)

        answers = list(pool.map(buy, range(BUYERS)))

        assert Counter(r.status_code for r in answers) == {201: CARDS, 409: BUYERS - CARDS}
        assert {r.json()["error"] for r in answers if r.status_code == 409} == {"out_of_stock"}
        orders = [r.json() for r in answers if r.status_code == 201]
        assert api.stock(product_id) == 0

        # Each order is paid twice at once with the same txn id, as a provider retrying would.
        callbacks = [(order, f"txn-{order['order_id']}") for order in orders for _ in range(2)]
        random.shuffle(callbacks)

        def pay(job: tuple[dict[str, Any], str]) -> httpx.Response:
            order, txn_id = job
            return api.notify(order["order_id"], order["amount"], txn_id)

        payments = list(pool.map(pay, callbacks))
        views = list(pool.map(api.read_order, orders))

    assert Counter(r.status_code for r in payments) == {200: 2 * CARDS}
    by_order: dict[str, list[dict[str, Any]]] = {}
    for r in payments:
        by_order.setdefault(r.json()["order_id"], []).append(r.json())
    assert len(by_order) == CARDS
    for answers_for_order in by_order.values():
        assert sorted(a["duplicate"] for a in answers_for_order) == [False, True]
        assert {a["status"] for a in answers_for_order} == {"delivered"}

    # Read back over HTTP by each buyer: one card each, together exactly the imported set.
    assert {view["status"] for view in views} == {"delivered"}
    assert all(len(view["cards"]) == 1 for view in views)
    delivered = [card for view in views for card in view["cards"]]
    assert len(delivered) == CARDS
    assert set(delivered) == set(cards)
