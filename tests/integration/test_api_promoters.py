"""Promoters over HTTP: joining under a referrer, balances and withdrawals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from domain.clock import ManualClock
from domain.shop import Shop
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, bearer, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def test_a_promoter_joins_under_a_referrer(api: Api) -> None:
    referrer = api.promoter()

    r = api.http.post(
        "/v1/promoters",
        json={"name": unique("p"), "contact": "wx", "referrer_code": f" {referrer['code'].lower()} "},
    )

    assert r.status_code == 201
    joined = r.json()
    assert set(joined) == {"promoter_id", "code", "token", "position"}
    view = api.http.get(f"/v1/promoters/{joined['promoter_id']}", headers=bearer(joined["token"])).json()
    assert view["referrer_id"] == referrer["promoter_id"]
    assert (view["code"], view["available"], view["withdrawn"]) == (joined["code"], "0.00", "0.00")


def test_a_blank_referrer_code_means_no_referrer(api: Api) -> None:
    r = api.http.post("/v1/promoters", json={"name": unique("p"), "contact": "wx", "referrer_code": ""})

    assert r.status_code == 201
    view = api.http.get(f"/v1/promoters/{r.json()['promoter_id']}", headers=api.admin).json()
    assert view["referrer_id"] is None


def test_a_withdrawal_without_balance_is_refused(api: Api, shop: Shop) -> None:
    promoter = api.promoter()
    position = shop.position()

    r = api.http.post(
        f"/v1/promoters/{promoter['promoter_id']}/withdrawals",
        json={"amount": "0.01"},
        headers=bearer(promoter["token"]),
    )

    assert r.status_code == 409
    assert r.json()["error"] == "insufficient_balance"
    assert shop.position() == position


def test_a_promoter_withdraws_settled_commissions(api: Api, shop: Shop, clock: ManualClock) -> None:
    _, merchant = api.merchant()
    promoter = api.promoter()
    order = api.order(api.product(merchant, random_cards(1), price="100.00"), promoter_code=promoter["code"])
    api.pay(order)
    clock.advance(timedelta(days=8))
    shop.settle_commissions(UUID(order["order_id"]))
    auth = bearer(promoter["token"])
    available = api.http.get(f"/v1/promoters/{promoter['promoter_id']}", headers=auth).json()["available"]
    assert available != "0.00"

    r = api.http.post(
        f"/v1/promoters/{promoter['promoter_id']}/withdrawals", json={"amount": available}, headers=auth
    )

    assert r.status_code == 201
    assert set(r.json()) == {"withdrawal_id", "position"}
    after = api.http.get(f"/v1/promoters/{promoter['promoter_id']}", headers=auth).json()
    assert (after["available"], after["withdrawn"]) == ("0.00", available)
