"""``GET /v1/products?sort=recommended`` on real PostgreSQL, with a moving clock.

The expected order is worked out here by hand from the published formula
(domain.ranking's docstring): rank = tier weight x (0.5 x quality + 0.5 x sales + cold
start), quality = (good + 4) / (reviews + 5), sales = ln(1 + units) / ln(1001), cold
start = 0.25 x (1 - age / 30 days). On day 40, every sale made on day 35:

| product | merchant      | units | reviews (good) | quality | sales | boost | rank  |
|---------|---------------|-------|----------------|---------|-------|-------|-------|
| A       | core (1.5)    | 5     | 5 (5)          | 0.900   | 0.259 | 0     | 0.870 |
| F       | basic (1.0)   | 20    | 20 (20)        | 0.960   | 0.441 | 0     | 0.700 |
| N       | new, 2 days   | 0     | 0              | 0.800   | 0     | 0.233 | 0.633 |
| S       | basic         | 200   | 10 (2)         | 0.400   | 0.768 | 0     | 0.584 |
| B       | basic         | 3     | 3 (3)          | 0.875   | 0.201 | 0     | 0.538 |
| W       | watch (0.5)   | 3     | 3 (3)          | 0.875   | 0.201 | 0     | 0.269 |

S sells ten times what F sells but disappoints its buyers, so F leads it; B and W are
the same product in different tiers. D is delisted and never shown. On day 60 N's boost
has faded to 0.067 (rank 0.467) and it falls below B.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from consumers.embedded import EmbeddedWorkers
from domain.clock import ManualClock
from domain.shop import Shop
from kami.bootstrap import Kami, build
from tests.e2e.api_client import Api, in_process
from tests.support.databases import fresh_database

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def kami_world(database_url: str) -> Iterator[tuple[Kami, ManualClock, Api]]:
    with fresh_database(database_url, "kami_ranking") as url:
        clock = ManualClock(T0)
        kami = build(url, clock=clock)
        try:
            with in_process(kami) as api:
                yield kami, clock, api
        finally:
            kami.close()


def sell(shop: Shop, merchant_id: UUID, product_id: UUID, units: int, ratings: list[int]) -> None:
    """``units`` sold: one order per rating (one unit each, reviewed), the rest in one order."""
    shop.import_cards(merchant_id, product_id, [uuid4().hex for _ in range(units)])
    for rating in ratings:
        placed = shop.place_order(product_id, 1, f"{uuid4().hex[:8]}@buyer")
        shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)
        shop.review_order(placed.order_id, placed.token, rating, "")
    rest = units - len(ratings)
    if rest:
        placed = shop.place_order(product_id, rest, f"{uuid4().hex[:8]}@buyer")
        shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)


def listing(api: Api, kami: Kami, **params: Any) -> dict[str, Any]:
    r = api.http.get("/v1/products", params={"after": kami.shop.position(), **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_recommended_order_blends_tier_quality_sales_and_a_cold_start(
    kami_world: tuple[Kami, ManualClock, Api],
) -> None:
    kami, clock, api = kami_world
    shop = kami.shop
    core, basic, seller, watch = (shop.register_merchant(f"m{i}", "m@x").merchant_id for i in range(4))
    shop.change_tier(core, "core", 92.0, "set for the test")
    shop.change_tier(watch, "watch", 40.0, "set for the test")
    owners = {"A": core, "F": basic, "S": seller, "B": basic, "W": watch, "D": basic}
    product = {name: shop.list_product(m, name, 1_000, "auto").product_id for name, m in owners.items()}
    shop.delist_product(basic, product["D"])

    clock.set(T0 + 35 * DAY)
    sell(shop, core, product["A"], 5, [5] * 5)
    sell(shop, basic, product["F"], 20, [5] * 20)
    sell(shop, seller, product["S"], 200, [5, 4] + [1] * 8)
    sell(shop, basic, product["B"], 3, [5] * 3)
    sell(shop, watch, product["W"], 3, [5] * 3)
    clock.set(T0 + 38 * DAY)
    newcomer = shop.register_merchant("new", "n@x").merchant_id
    product["N"] = shop.list_product(newcomer, "N", 1_000, "auto").product_id
    name_of = {str(pid): name for name, pid in product.items()}

    workers = EmbeddedWorkers(kami)
    clock.set(T0 + 40 * DAY)
    workers.runner.catch_up()
    body = listing(api, kami)
    assert body["sort"] == "recommended" and body["total"] == 6
    assert [name_of[i["product_id"]] for i in body["items"]] == ["A", "F", "N", "S", "B", "W"]
    by_name = {name_of[i["product_id"]]: i for i in body["items"]}
    assert [by_name[n]["rank"] for n in "AFNSBW"] == pytest.approx(
        [0.870, 0.700, 0.633, 0.584, 0.538, 0.269], abs=0.001
    )
    s = by_name["S"]
    assert (s["sold_30d"], s["reviews"], s["good_review_rate"]) == (200, 10, 0.2)
    assert (by_name["A"]["merchant_tier"], by_name["W"]["merchant_tier"]) == ("core", "watch")
    assert by_name["N"]["good_review_rate"] is None

    by_sales = listing(api, kami, sort="sales")
    assert [name_of[i["product_id"]] for i in by_sales["items"][:3]] == ["S", "F", "A"]
    page = listing(api, kami, limit=2, offset=2)
    assert [name_of[i["product_id"]] for i in page["items"]] == ["N", "S"]
    mine = listing(api, kami, merchant_id=str(basic))
    assert {name_of[i["product_id"]] for i in mine["items"]} == {"F", "B"}
    assert api.http.get("/v1/products", params={"sort": "cheapest"}).status_code == 422

    # The boost fades with the merchant's age; a promotion lifts every product of the merchant.
    clock.set(T0 + 60 * DAY)
    shop.change_tier(watch, "growth", 75.0, "set for the test")
    workers.runner.catch_up()
    later = [name_of[i["product_id"]] for i in listing(api, kami)["items"]]
    assert later.index("B") < later.index("N")
    assert later.index("W") < later.index("B")  # growth now outweighs basic for the same product


def test_a_restricted_merchant_is_not_listed_until_reinstated(
    kami_world: tuple[Kami, ManualClock, Api],
) -> None:
    kami, _, api = kami_world
    shop = kami.shop
    merchant = shop.register_merchant("r", "r@x").merchant_id
    product = str(shop.list_product(merchant, "R", 1_000, "auto").product_id)
    workers = EmbeddedWorkers(kami)

    shop.restrict_merchant(merchant, "chargebacks")
    workers.runner.catch_up()
    assert product not in [i["product_id"] for i in listing(api, kami)["items"]]

    shop.reinstate_merchant(merchant, "cleared")
    workers.runner.catch_up()
    assert product in [i["product_id"] for i in listing(api, kami)["items"]]
