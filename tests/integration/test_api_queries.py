"""Query routes over HTTP: figures from the projections, consistent with ?after=."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from consumers.embedded import EmbeddedWorkers
from domain.commissions import LEVEL_RATE_BPS
from domain.fees import NEW_MERCHANT_TIER, fee_rate_for
from domain.money import format_yuan, parse_yuan, share
from domain.promoter_levels import next_level
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    workers = EmbeddedWorkers(kami).start()
    try:
        with in_process(kami) as client:
            yield client
    finally:
        workers.stop()
        assert workers.error is None


def test_a_merchant_dashboard_shows_exactly_what_the_commands_did(api: Api) -> None:
    merchant_id, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(6), price="12.50")
    buyer = unique("buyer")
    orders = [api.order(product_id, contact=buyer) for _ in range(2)]
    orders.append(api.order(product_id, quantity=2))
    for order in orders:
        api.pay(order)
    refunded = orders[2]
    r = api.http.post(f"/v1/orders/{refunded['order_id']}/refund", json={"reason": "x"}, headers=merchant)
    assert r.status_code == 200
    review = api.http.post(
        f"/v1/orders/{orders[0]['order_id']}/review", params={"token": orders[0]["token"]}, json={"rating": 5}
    )
    assert review.status_code == 200
    last = review.json()["position"]

    r = api.http.get(f"/v1/merchants/{merchant_id}/dashboard", params={"after": last}, headers=merchant)

    assert r.status_code == 200, r.text
    d = r.json()
    amounts = [parse_yuan(o["amount"]) for o in orders]
    fee_rate = fee_rate_for(NEW_MERCHANT_TIER)
    gmv = sum(amounts)
    fees_kept = sum(share(a, fee_rate) for a in amounts[:2])
    assert d["position"] >= last
    assert d["gmv"] == format_yuan(gmv)
    assert (d["orders_paid"], d["orders_refunded"]) == (3, 1)
    assert d["refund_amount"] == format_yuan(amounts[2])
    assert d["platform_fees"] == format_yuan(fees_kept)
    assert d["net_revenue"] == format_yuan(sum(amounts[:2]) - fees_kept)
    assert (d["buyers"], d["repeat_buyers"]) == (2, 1)
    assert d["repeat_rate"] == 0.5
    assert (d["reviews"], d["avg_rating"], d["good_review_rate"]) == (1, 5.0, 1.0)
    assert [(p["product_id"], p["stock"], p["sold"]) for p in d["products"]] == [(product_id, 2, 4)]
    assert sum(Decimal(day["gmv"]) for day in d["daily"]) == Decimal(format_yuan(gmv))


def test_payouts_show_both_levels_of_commission(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(2), price="100.00")
    top = api.promoter()
    sharer = api.promoter(top["code"])
    order = api.order(product_id, promoter_code=sharer["code"])
    paid = api.pay(order)
    amount = parse_yuan(order["amount"])

    level1 = api.http.get(
        f"/v1/promoters/{sharer['promoter_id']}/payouts",
        params={"after": paid["position"]},
        headers={"Authorization": f"Bearer {sharer['token']}"},
    )
    level2 = api.http.get(
        f"/v1/promoters/{top['promoter_id']}/payouts", params={"after": paid["position"]}, headers=api.admin
    )

    assert level1.status_code == level2.status_code == 200
    assert level1.json()["pending"] == format_yuan(share(amount, LEVEL_RATE_BPS[1]))
    assert level2.json()["pending"] == format_yuan(share(amount, LEVEL_RATE_BPS[2]))
    assert level2.json()["direct_referrals"] == 1
    above = next_level(level1.json()["level"])
    assert above is not None
    assert level1.json()["next_level"] == above.level
    assert level1.json()["next_threshold"] == format_yuan(above.threshold)
    assert [h["level"] for h in level2.json()["history"]] == [2]


def test_the_ledger_balances_to_zero_and_is_for_auditors_only(api: Api) -> None:
    _, merchant = api.merchant()
    product_id = api.product(merchant, random_cards(1))
    paid = api.pay(api.order(product_id))

    r = api.http.get("/v1/audit/ledger", params={"after": paid["position"]}, headers=api.auditor)

    assert r.status_code == 200
    assert r.json()["total"] == "0.00"
    assert r.json()["accounts"]["platform:clearing"] != "0.00"
    assert api.http.get("/v1/audit/ledger", headers=merchant).status_code == 403
    assert api.http.get("/v1/audit/ledger").status_code == 401


def test_a_view_that_cannot_reach_the_position_answers_projection_lagging(api: Api) -> None:
    api.http.app.state.read_wait_seconds = 0.1  # type: ignore[attr-defined]

    r = api.http.get("/v1/audit/ledger", params={"after": 10**12}, headers=api.admin)

    assert r.status_code == 503
    assert r.json()["error"] == "projection_lagging"


def test_also_bought_and_the_overview(api: Api) -> None:
    _, merchant = api.merchant()
    first = api.product(merchant, random_cards(2))
    second = api.product(merchant, random_cards(2))
    buyer = unique("buyer")
    api.pay(api.order(first, contact=buyer))
    paid = api.pay(api.order(second, contact=buyer))

    r = api.http.get(f"/v1/products/{first}/also-bought", params={"after": paid["position"]})
    overview = api.http.get("/v1/admin/overview", params={"after": paid["position"]}, headers=api.admin)

    assert r.status_code == 200
    assert [(i["product_id"], i["orders"]) for i in r.json()["items"]] == [(second, 1)]
    assert overview.status_code == 200
    assert overview.json()["merchants"] >= 1
    assert api.http.get("/v1/admin/overview", headers=merchant).status_code == 403
