"""Merchants, products and card stock over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest

from domain.shop import Shop
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def test_the_admin_registers_a_merchant_whose_key_authenticates(api: Api, shop: Shop) -> None:
    r = api.http.post("/v1/merchants", json={"name": unique("m"), "contact": "qq 10001"}, headers=api.admin)

    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"merchant_id", "api_key", "position"}
    assert body["position"] == shop.position()
    assert shop.authenticate_merchant(body["api_key"]) == UUID(body["merchant_id"])


def test_a_listed_product_reads_back_with_money_in_yuan(api: Api) -> None:
    merchant_id, merchant = api.merchant()
    title = unique("月卡")
    body = {
        "title": title,
        "price": "12.50",
        "delivery": "auto",
        "wholesale": [{"min_qty": 10, "price": "11"}, {"min_qty": 50, "price": "10.05"}],
        "max_per_order": 100,
    }

    r = api.http.post("/v1/products", json=body, headers=merchant)

    assert r.status_code == 201
    product_id = r.json()["product_id"]
    assert r.json()["position"] > 0
    assert api.http.get(f"/v1/products/{product_id}").json() == {
        "product_id": product_id,
        "merchant_id": merchant_id,
        "title": title,
        "price": "12.50",
        "delivery": "auto",
        "stock": 0,
        "wholesale": [{"min_qty": 10, "price": "11.00"}, {"min_qty": 50, "price": "10.05"}],
        "max_per_order": 100,
        "listed": True,
    }


def test_importing_cards_skips_duplicates_and_reports_the_stock(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant)
    first, second, third = random_cards(3)

    r1 = api.http.post(
        f"/v1/products/{product_id}/cards", json={"cards": [first, second, first]}, headers=merchant
    )
    r2 = api.http.post(f"/v1/products/{product_id}/cards", json={"cards": [second, third]}, headers=merchant)

    assert r1.status_code == 200 and r2.status_code == 200
    one, two = r1.json(), r2.json()
    assert (one["imported"], one["duplicates"], one["stock"]) == (2, 1, 2)
    assert (two["imported"], two["duplicates"], two["stock"]) == (1, 1, 3)
    assert len({*one["card_ids"], *two["card_ids"]}) == 3
    assert two["position"] > one["position"]
    assert api.stock(product_id) == 3


def test_a_voided_card_leaves_the_stock(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant)
    imported = api.http.post(
        f"/v1/products/{product_id}/cards", json={"cards": random_cards(2)}, headers=merchant
    ).json()

    r = api.http.post(
        f"/v1/products/{product_id}/cards/{imported['card_ids'][0]}/void",
        json={"reason": "leaked"},
        headers=merchant,
    )

    assert r.status_code == 200
    assert r.json()["position"] > imported["position"]
    assert api.stock(product_id) == 1


def test_a_new_price_applies_to_new_orders(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(2), price="9.90")
    before = api.order(product_id)

    r = api.http.post(f"/v1/products/{product_id}/price", json={"price": "5.00"}, headers=merchant)

    assert r.status_code == 200 and r.json()["position"] > before["position"]
    assert api.http.get(f"/v1/products/{product_id}").json()["price"] == "5.00"
    assert api.order(product_id)["amount"] == "5.00"
    assert api.read_order(before)["amount"] == "9.90"


def test_a_delisted_product_takes_no_new_orders(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(2))

    r = api.http.post(f"/v1/products/{product_id}/delist", headers=merchant)

    assert r.status_code == 200
    assert api.http.get(f"/v1/products/{product_id}").json()["listed"] is False
    refused = api.http.post("/v1/orders", json={"product_id": product_id, "quantity": 1, "contact": "b"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "product_unavailable"


def test_the_wholesale_price_applies_from_its_quantity(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(
        merchant, random_cards(5), price="10.00", wholesale=[{"min_qty": 3, "price": "8.50"}]
    )

    small = api.order(product_id, quantity=2)
    large = api.order(product_id, quantity=3)

    assert (small["unit_price"], small["amount"]) == ("10.00", "20.00")
    assert (large["unit_price"], large["amount"]) == ("8.50", "25.50")
    assert api.stock(product_id) == 0


def test_a_manual_product_has_no_card_stock(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, delivery="manual")

    view = api.http.get(f"/v1/products/{product_id}").json()

    assert (view["delivery"], view["stock"]) == ("manual", 0)
