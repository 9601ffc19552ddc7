"""Payment callbacks over HTTP: the signed sandbox JSON and the 易支付 protocol."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from domain.clock import ManualClock
from domain.shop import Shop
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, epay_params, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def test_a_signed_payment_delivers_auto_goods_in_the_same_answer(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1)))

    r = api.notify(order["order_id"], order["amount"], unique("txn"))

    assert r.status_code == 200
    assert r.json() == {
        "order_id": order["order_id"],
        "status": "delivered",
        "duplicate": False,
        "position": r.json()["position"],
    }
    assert r.json()["position"] > order["position"]
    assert len(api.read_order(order)["cards"]) == 1


def test_the_same_txn_again_is_a_duplicate_that_changes_nothing(api: Api, shop: Shop) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(2)))
    txn_id = unique("txn")
    api.notify(order["order_id"], order["amount"], txn_id)
    position, cards = shop.position(), api.read_order(order)["cards"]

    r = api.notify(order["order_id"], order["amount"], txn_id)

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["duplicate"]) == ("delivered", True)
    assert shop.position() == position
    assert api.read_order(order)["cards"] == cards


def test_a_second_payment_for_a_paid_order_is_returned_and_the_order_keeps_its_cards(
    api: Api, shop: Shop
) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(3))
    order = api.order(product_id)
    api.pay(order)
    cards = api.read_order(order)["cards"]
    position = shop.position()

    r = api.notify(order["order_id"], order["amount"], unique("txn"))

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["duplicate"]) == ("delivered", False)
    assert shop.position() > position  # recorded, and returned as a money movement of its own
    assert api.read_order(order)["cards"] == cards
    assert api.stock(product_id) == 2


def test_a_late_payment_delivers_while_cards_remain(api: Api, shop: Shop, clock: ManualClock) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(1))
    order = api.order(product_id)
    clock.advance(timedelta(minutes=16))
    shop.expire_order(UUID(order["order_id"]))
    assert api.read_order(order)["status"] == "expired"

    assert api.pay(order)["status"] == "delivered"
    assert len(api.read_order(order)["cards"]) == 1


def test_a_late_payment_without_cards_left_is_refunded(api: Api, shop: Shop, clock: ManualClock) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(1))
    late = api.order(product_id)
    clock.advance(timedelta(minutes=16))
    shop.expire_order(UUID(late["order_id"]))
    api.pay(api.order(product_id))  # someone else buys the last card

    assert api.pay(late)["status"] == "refunded"
    assert api.read_order(late)["status"] == "refunded"


def test_an_epay_get_notification_records_the_payment_and_its_repeat(api: Api, shop: Shop) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1), price="88.00"))
    params = epay_params(api.settings.epay_key, order["order_id"], order["amount"], unique("2024"))

    first = api.http.get("/v1/payments/epay/notify", params=params)
    position = shop.position()
    repeat = api.http.get("/v1/payments/epay/notify", params=params)

    assert (first.status_code, first.text) == (200, "success")
    assert first.headers["content-type"].startswith("text/plain")
    assert (repeat.status_code, repeat.text) == (200, "success")
    assert shop.position() == position
    assert api.read_order(order)["status"] == "delivered"


def test_an_epay_post_form_notification_records_the_payment(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, delivery="manual", price="0.01"))
    params = epay_params(api.settings.epay_key, order["order_id"], order["amount"], unique("2024"))

    first = api.http.post("/v1/payments/epay/notify", data=params)
    repeat = api.http.post("/v1/payments/epay/notify", data=params)

    assert (first.status_code, first.text) == (200, "success")
    assert (repeat.status_code, repeat.text) == (200, "success")
    assert api.read_order(order)["status"] == "paid"


def test_an_epay_post_may_carry_its_parameters_in_the_query_string(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1)))
    params = epay_params(api.settings.epay_key, order["order_id"], order["amount"], unique("2024"))

    r = api.http.post("/v1/payments/epay/notify", params=params)

    assert (r.status_code, r.text) == (200, "success")
    assert api.read_order(order)["status"] == "delivered"


def test_epay_money_without_decimals_matches_the_order(api: Api) -> None:
    _, merchant = api.merchant()
    order = api.order(api.product(merchant, random_cards(1), price="10.00"))
    # Gateways may send "10" for 10.00 yuan; the sign covers the text as sent.
    params = epay_params(api.settings.epay_key, order["order_id"], "10", unique("2024"))

    r = api.http.get("/v1/payments/epay/notify", params=params)

    assert (r.status_code, r.text) == (200, "success")
