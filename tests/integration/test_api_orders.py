"""Orders over HTTP: placement, the buyer's view, manual delivery, reviews, disputes, refunds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from domain.clock import ManualClock
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, bearer, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def test_an_order_reserves_its_cards_until_it_expires(api: Api, clock: ManualClock) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(3), price="9.90")

    r = api.http.post("/v1/orders", json={"product_id": product_id, "quantity": 2, "contact": unique("b")})

    assert r.status_code == 201
    placed = r.json()
    assert placed["status"] == "pending"
    assert (placed["amount"], placed["unit_price"], placed["quantity"]) == ("19.80", "9.90", 2)
    expected = (clock() + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    assert placed["expires_at"] == expected
    assert placed["token"] and placed["position"] > 0
    assert api.stock(product_id) == 1
    view = api.read_order(placed)
    assert view["status"] == "pending"
    assert "cards" not in view and "content" not in view


def test_the_buyer_sees_the_cards_of_a_paid_order_and_the_merchant_does_not(api: Api) -> None:
    _, merchant = api.merchant()
    cards = random_cards(2)
    product_id = api.product(merchant, cards)
    order = api.order(product_id, quantity=2)

    paid = api.pay(order)

    assert paid["status"] == "delivered"
    view = api.read_order(order)
    assert view["status"] == "delivered"
    assert sorted(view["cards"]) == sorted(cards)
    seen_by_merchant = api.http.get(f"/v1/orders/{order['order_id']}/merchant-view", headers=merchant)
    assert seen_by_merchant.status_code == 200
    assert seen_by_merchant.json()["status"] == "delivered"
    assert "cards" not in seen_by_merchant.json() and "content" not in seen_by_merchant.json()
    assert api.http.get(f"/v1/orders/{order['order_id']}/merchant-view", headers=api.admin).status_code == 200


def test_manual_goods_wait_for_their_merchant_to_deliver(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, delivery="manual", price="30.00")
    order = api.order(product_id)

    assert api.pay(order)["status"] == "paid"
    assert api.read_order(order)["status"] == "paid"
    assert "content" not in api.read_order(order)

    r = api.http.post(
        f"/v1/orders/{order['order_id']}/deliver",
        json={"content": "account: a / password: b"},
        headers=merchant,
    )

    assert r.status_code == 200
    assert r.json()["status"] == "delivered" and r.json()["position"] > 0
    view = api.read_order(order)
    assert (view["status"], view["content"]) == ("delivered", "account: a / password: b")
    again = api.http.post(f"/v1/orders/{order['order_id']}/deliver", json={"content": "x"}, headers=merchant)
    assert again.status_code == 409


def test_the_buyer_reviews_once_and_disputes_and_the_merchant_resolves(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1)))
    api.pay(order)
    path, token = f"/v1/orders/{order['order_id']}", {"token": order["token"]}

    review = api.http.post(f"{path}/review", params=token, json={"rating": 4, "comment": "快"})
    twice = api.http.post(f"{path}/review", params=token, json={"rating": 1})
    dispute = api.http.post(f"{path}/dispute", params=token, json={"reason": "the key was used"})
    resolve = api.http.post(f"{path}/dispute/resolve", json={"resolution": "replaced"}, headers=merchant)

    assert review.status_code == 200 and set(review.json()) == {"position"}
    assert (twice.status_code, twice.json()["error"]) == (409, "already_reviewed")
    assert dispute.status_code == 201 and dispute.json()["position"] > review.json()["position"]
    assert resolve.status_code == 200 and resolve.json()["position"] > dispute.json()["position"]
    view = api.read_order(order)
    assert (view["rating"], view["disputed"]) == (4, True)


def test_the_admin_resolves_a_dispute(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1)))
    api.pay(order)
    api.http.post(
        f"/v1/orders/{order['order_id']}/dispute", params={"token": order["token"]}, json={"reason": "x"}
    )

    r = api.http.post(f"/v1/orders/{order['order_id']}/dispute/resolve", json={}, headers=api.admin)

    assert r.status_code == 200


def test_the_merchant_refunds_its_delivered_order(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1)))
    api.pay(order)

    r = api.http.post(
        f"/v1/orders/{order['order_id']}/refund", json={"reason": "buyer asked"}, headers=merchant
    )

    assert r.status_code == 200
    assert r.json()["status"] == "refunded" and r.json()["position"] > 0
    view = api.read_order(order)
    assert view["status"] == "refunded" and "cards" not in view
    again = api.http.post(f"/v1/orders/{order['order_id']}/refund", json={"reason": "x"}, headers=merchant)
    assert (again.status_code, again.json()["error"]) == (409, "invalid_state")


def test_the_admin_refunds_any_merchants_paid_order(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, delivery="manual"))
    api.pay(order)

    r = api.http.post(f"/v1/orders/{order['order_id']}/refund", json={"reason": "fraud"}, headers=api.admin)

    assert r.status_code == 200 and r.json()["status"] == "refunded"
    assert api.read_order(order)["status"] == "refunded"


def test_an_order_through_a_promoter_code_is_placed(api: Api) -> None:
    _, merchant = api.merchant()
    promoter = api.promoter()
    product_id = api.product(merchant, random_cards(1))

    order = api.order(product_id, promoter_code=promoter["code"].lower())

    assert api.pay(order)["status"] == "delivered"
    joined = api.http.get(f"/v1/promoters/{promoter['promoter_id']}", headers=bearer(promoter["token"]))
    assert joined.json()["available"] == "0.00"  # pending until the after-sales window closes
