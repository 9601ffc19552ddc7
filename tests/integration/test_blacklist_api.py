"""Buyer blacklists over HTTP: a merchant's for its own products, the admin's for all; and
idempotent placement with an Idempotency-Key."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest

from domain.results import OrderPlaced
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, bearer, in_process, random_cards, unique


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def order_body(product_id: str, contact: str, quantity: int = 1) -> dict[str, object]:
    return {"product_id": product_id, "quantity": quantity, "contact": contact}


def test_a_merchant_refuses_a_blacklisted_buyer_for_its_own_products_only(api: Api, kami: Kami) -> None:
    merchant_id, merchant = api.merchant()
    _, other = api.merchant()
    mine, theirs = api.product(merchant, random_cards(3)), api.product(other, random_cards(3))
    buyer = f"{unique('bob')}@Example.com"

    listing = {"contact": f"  {buyer.upper()} ", "reason": "chargebacks"}
    r = api.http.post(f"/v1/merchants/{merchant_id}/blacklist", json=listing, headers=merchant)
    assert r.status_code == 200, r.text
    assert (r.json()["contact"], r.json()["changed"]) == (buyer.lower(), True)
    position = kami.shop.position()
    stock = api.stock(mine)

    refused = api.http.post("/v1/orders", json=order_body(mine, buyer))

    assert refused.status_code == 403
    assert refused.json() == {"error": "buyer_blacklisted", "detail": "orders from this contact are refused"}
    assert (kami.shop.position(), api.stock(mine)) == (position, stock)  # nothing was written
    assert api.http.post("/v1/orders", json=order_body(theirs, buyer)).status_code == 201
    assert api.http.post("/v1/orders", json=order_body(mine, unique("alice"))).status_code == 201


def test_the_admin_blacklist_refuses_a_buyer_everywhere_until_removed(api: Api) -> None:
    _, merchant = api.merchant()
    product = api.product(merchant, random_cards(2))
    buyer = unique("mallory")

    listing = {"contact": buyer, "reason": "fraud"}
    added = api.http.post("/v1/admin/blacklist", json=listing, headers=api.admin)
    listed = api.http.get("/v1/admin/blacklist", headers=api.admin)

    assert added.status_code == 200
    assert listed.json()["merchant_id"] is None
    entry = next(e for e in listed.json()["entries"] if e["contact"] == buyer)
    assert (entry["reason"], entry["by"]) == ("fraud", "admin")
    assert api.http.post("/v1/orders", json=order_body(product, buyer)).json()["error"] == "buyer_blacklisted"

    removed = api.http.post("/v1/admin/blacklist/remove", json={"contact": buyer}, headers=api.admin)

    assert (removed.status_code, removed.json()["changed"]) == (200, True)
    assert api.http.post("/v1/orders", json=order_body(product, buyer)).status_code == 201


def test_adding_twice_or_removing_an_unlisted_buyer_changes_nothing(api: Api, kami: Kami) -> None:
    merchant_id, merchant = api.merchant()
    path = f"/v1/merchants/{merchant_id}/blacklist"
    api.http.post(path, json={"contact": "dup@x"}, headers=merchant)
    position = kami.shop.position()

    again = api.http.post(path, json={"contact": "DUP@x"}, headers=merchant)
    absent = api.http.post(f"{path}/remove", json={"contact": "nobody@x"}, headers=merchant)

    assert (again.json()["changed"], absent.json()["changed"]) == (False, False)
    assert kami.shop.position() == position
    assert [e["contact"] for e in api.http.get(path, headers=merchant).json()["entries"]] == ["dup@x"]


def test_only_the_merchant_itself_or_the_admin_manage_its_blacklist(api: Api) -> None:
    merchant_id, merchant = api.merchant()
    _, other = api.merchant()
    promoter = api.promoter()
    path = f"/v1/merchants/{merchant_id}/blacklist"
    body = {"contact": "x@y"}

    assert api.http.post(path, json=body, headers=other).status_code == 403
    assert api.http.get(path, headers=other).status_code == 403
    assert api.http.post(path, json=body, headers=bearer(promoter["token"])).status_code == 403
    assert api.http.post(path, json=body).status_code == 401
    assert api.http.post("/v1/admin/blacklist", json=body, headers=merchant).status_code == 403
    assert api.http.get("/v1/admin/blacklist", headers=api.auditor).status_code == 403
    assert api.http.post(path, json=body, headers=api.admin).json()["changed"] is True
    assert api.http.get(path, headers=merchant).json()["entries"][0]["by"] == "admin"
    unknown = api.http.post(f"/v1/merchants/{uuid4()}/blacklist", json=body, headers=api.admin)
    assert unknown.status_code == 404


MALFORMED: list[dict[str, object]] = [
    {"contact": ""},
    {"contact": "   "},
    {"contact": "x" * 201},
    {"reason": "r"},
    {"contact": "a", "x": 1},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_a_blank_or_oversized_contact_is_malformed(api: Api, body: dict[str, object]) -> None:
    assert api.http.post("/v1/admin/blacklist", json=body, headers=api.admin).status_code == 422


def test_the_same_idempotency_key_is_the_same_order_and_token(api: Api, kami: Kami) -> None:
    _, merchant = api.merchant()
    product = api.product(merchant, random_cards(3))
    key = {"Idempotency-Key": str(uuid4())}
    body = order_body(product, unique("b"))

    first = api.http.post("/v1/orders", json=body, headers=key)
    position = kami.shop.position()
    again = api.http.post("/v1/orders", json=body, headers=key)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert kami.shop.position() == position  # the retry wrote nothing
    assert api.stock(product) == 2
    paid = api.pay(again.json())
    assert paid["status"] == "delivered"
    assert len(api.read_order(first.json())["cards"]) == 1


def test_an_idempotency_key_sent_with_another_request_is_refused(api: Api) -> None:
    _, merchant = api.merchant()
    product = api.product(merchant, random_cards(3))
    key = {"Idempotency-Key": str(uuid4())}
    body = order_body(product, unique("b"))
    assert api.http.post("/v1/orders", json=body, headers=key).status_code == 201

    other = api.http.post("/v1/orders", json=body | {"quantity": 2}, headers=key)

    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert api.http.post("/v1/orders", json=body, headers={"Idempotency-Key": "has space"}).status_code == 422


def test_concurrent_placements_with_one_key_place_one_order(kami: Kami, api: Api) -> None:
    _, merchant = api.merchant()
    product = api.product(merchant, random_cards(10))
    key, contact = str(uuid4()), unique("b")

    def place() -> OrderPlaced:
        return kami.shop.place_order(UUID(product), 1, contact, None, key)

    with ThreadPoolExecutor(8) as pool:
        placed = list(pool.map(lambda _: place(), range(8)))

    assert len({(p.order_id, p.token) for p in placed}) == 1
    assert api.stock(product) == 9
