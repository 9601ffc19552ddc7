"""Every refused request answers its contract status and code, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest

from domain.shop import Shop
from kami.bootstrap import Kami, build
from tests.e2e.api_client import (
    Api,
    bearer,
    epay_params,
    in_process,
    random_cards,
    sandbox_body,
    sandbox_headers,
    unique,
)


# Module-scoped: every case must leave the shop as it found it (each one asserts so), so
# they can all share one world instead of building it a hundred times.
@pytest.fixture(scope="module")
def kami(database_url: str) -> Iterator[Kami]:
    system = build(database_url)
    yield system
    system.close()


@pytest.fixture(scope="module")
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


@dataclass
class World:
    """A small shop in every state the bad requests aim at."""

    merchant: dict[str, str]
    other_merchant: dict[str, str]
    product: str  # auto, max 3 per order, stocked
    empty_product: str  # auto, no cards
    manual_product: str
    other_product: str  # another merchant's
    pending: dict[str, Any]
    delivered: dict[str, Any]
    manual_paid: dict[str, Any]
    promoter: dict[str, Any]
    other_promoter: dict[str, Any]


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    _, merchant = api.merchant()
    _, other_merchant = api.merchant()
    product = api.product(merchant, random_cards(6), max_per_order=3)
    manual_product = api.product(merchant, delivery="manual")
    delivered = api.order(product)
    assert api.pay(delivered, f"txn-of-{delivered['order_id']}")["status"] == "delivered"
    manual_paid = api.order(manual_product)
    assert api.pay(manual_paid)["status"] == "paid"
    return World(
        merchant=merchant,
        other_merchant=other_merchant,
        product=product,
        empty_product=api.product(merchant),
        manual_product=manual_product,
        other_product=api.product(other_merchant, random_cards(2)),
        pending=api.order(product),
        delivered=delivered,
        manual_paid=manual_paid,
        promoter=api.promoter(),
        other_promoter=api.promoter(),
    )


def snapshot(api: Api, shop: Shop, w: World) -> dict[str, Any]:
    """Everything a bad request could have touched."""
    orders = {name: api.read_order(getattr(w, name)) for name in ("pending", "delivered", "manual_paid")}
    promoters = {
        name: api.http.get(
            f"/v1/promoters/{getattr(w, name)['promoter_id']}", headers=bearer(getattr(w, name)["token"])
        ).json()
        for name in ("promoter", "other_promoter")
    }
    products = {
        name: api.http.get(f"/v1/products/{getattr(w, name)}").json() for name in ("product", "other_product")
    }
    return {"position": shop.position(), "orders": orders, "promoters": promoters, "products": products}


Call = Callable[[Api, World], httpx.Response]


def notify_raw(api: Api, body: bytes, secret: str | None = None) -> httpx.Response:
    """Post a sandbox callback body, signed with `secret` (default: the right one)."""
    headers = sandbox_headers(secret or api.settings.payment_secret, body)
    return api.http.post("/v1/payments/notify", content=body, headers=headers)


def order_body(w: World, **fields: Any) -> dict[str, Any]:
    return {"product_id": w.product, "quantity": 1, "contact": unique("b")} | fields


def product_body(**fields: Any) -> dict[str, Any]:
    return {"title": unique("p"), "price": "9.90", "delivery": "auto"} | fields


def buyer(order: dict[str, Any], path: str = "", token: str | None = None) -> str:
    query = "" if token is None else f"?token={token}"
    return f"/v1/orders/{order['order_id']}{path}{query}"


def forged_merchant_key() -> dict[str, str]:
    return bearer(f"mk_{uuid4().hex}_not-a-real-secret")


BAD_MONEY = ["abc", "1.234", "-1", "0", "0.00", "", "1e3", " 1.00"]

CASES: list[tuple[str, Call, int, str]] = [
    # payment callbacks
    (
        "bad signature",
        lambda a, w: notify_raw(
            a, sandbox_body(w.pending["order_id"], w.pending["amount"], unique("t")), "x" * 20
        ),
        400,
        "bad_signature",
    ),
    (
        "missing signature",
        lambda a, w: a.http.post(
            "/v1/payments/notify",
            content=sandbox_body(w.pending["order_id"], w.pending["amount"], unique("t")),
        ),
        400,
        "bad_signature",
    ),
    (
        "unsigned garbage is refused before parsing",
        lambda a, w: a.http.post(
            "/v1/payments/notify", content=b"{not json", headers={"X-Kami-Signature": "00"}
        ),
        400,
        "bad_signature",
    ),
    (
        "amount mismatch",
        lambda a, w: a.notify(w.pending["order_id"], "0.01"),
        400,
        "amount_mismatch",
    ),
    ("payment for unknown order", lambda a, w: a.notify(str(uuid4()), "9.90"), 404, "not_found"),
    ("signed malformed json", lambda a, w: notify_raw(a, b"{not json"), 422, "invalid_input"),
    (
        "signed payment with bad money",
        lambda a, w: a.notify(w.pending["order_id"], "abc"),
        422,
        "invalid_input",
    ),
    (
        "signed payment with a float amount",
        lambda a, w: notify_raw(
            a, json.dumps({"order_id": w.pending["order_id"], "amount": 9.9, "txn_id": "t"}).encode()
        ),
        422,
        "invalid_input",
    ),
    (
        "same txn id for another order",
        lambda a, w: a.notify(
            w.pending["order_id"], w.pending["amount"], f"txn-of-{w.delivered['order_id']}"
        ),
        409,
        "txn_conflict",
    ),
    # products
    ("unknown product", lambda a, w: a.http.get(f"/v1/products/{uuid4()}"), 404, "not_found"),
    ("malformed product id", lambda a, w: a.http.get("/v1/products/not-a-uuid"), 422, "invalid_input"),
    *[
        (
            f"product price {bad!r}",
            lambda a, w, bad=bad: a.http.post(
                "/v1/products", json=product_body(price=bad), headers=w.merchant
            ),
            422,
            "invalid_input",
        )
        for bad in BAD_MONEY
    ],
    (
        "product price as a number",
        lambda a, w: a.http.post("/v1/products", json=product_body(price=9.9), headers=w.merchant),
        422,
        "invalid_input",
    ),
    (
        "unknown delivery mode",
        lambda a, w: a.http.post("/v1/products", json=product_body(delivery="email"), headers=w.merchant),
        422,
        "invalid_input",
    ),
    (
        "wholesale price above list price",
        lambda a, w: a.http.post(
            "/v1/products",
            json=product_body(wholesale=[{"min_qty": 5, "price": "19.90"}]),
            headers=w.merchant,
        ),
        422,
        "invalid_input",
    ),
    (
        "unknown field",
        lambda a, w: a.http.post("/v1/products", json=product_body(colour="red"), headers=w.merchant),
        422,
        "invalid_input",
    ),
    (
        "malformed json body",
        lambda a, w: a.http.post(
            "/v1/products", content=b'{"title": ', headers=w.merchant | {"Content-Type": "application/json"}
        ),
        422,
        "invalid_input",
    ),
    (
        "price change to zero",
        lambda a, w: a.http.post(f"/v1/products/{w.product}/price", json={"price": "0"}, headers=w.merchant),
        422,
        "invalid_input",
    ),
    (
        "cards into an unknown product",
        lambda a, w: a.http.post(f"/v1/products/{uuid4()}/cards", json={"cards": ["X"]}, headers=w.merchant),
        404,
        "not_found",
    ),
    (
        "cards into a manual product",
        lambda a, w: a.http.post(
            f"/v1/products/{w.manual_product}/cards", json={"cards": ["X"]}, headers=w.merchant
        ),
        409,
        "invalid_state",
    ),
    (
        "void an unknown card",
        lambda a, w: a.http.post(
            f"/v1/products/{w.product}/cards/{uuid4()}/void", json={"reason": "x"}, headers=w.merchant
        ),
        404,
        "not_found",
    ),
    # orders
    (
        "order for unknown product",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, product_id=str(uuid4()))),
        404,
        "not_found",
    ),
    (
        "order over max_per_order",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, quantity=4)),
        422,
        "over_limit",
    ),
    (
        "order of zero",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, quantity=0)),
        422,
        "invalid_input",
    ),
    (
        "order quantity as a string",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, quantity="1")),
        422,
        "invalid_input",
    ),
    (
        "order out of stock",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, product_id=w.empty_product)),
        409,
        "out_of_stock",
    ),
    (
        "order with unknown promoter code",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, promoter_code="NOSUCHCODE")),
        422,
        "unknown_promoter",
    ),
    (
        "order with blank contact",
        lambda a, w: a.http.post("/v1/orders", json=order_body(w, contact="   ")),
        422,
        "invalid_input",
    ),
    (
        "order without contact",
        lambda a, w: a.http.post("/v1/orders", json={"product_id": w.product, "quantity": 1}),
        422,
        "invalid_input",
    ),
    (
        "order malformed json",
        lambda a, w: a.http.post("/v1/orders", content=b"[1,", headers={"Content-Type": "application/json"}),
        422,
        "invalid_input",
    ),
    ("read unknown order", lambda a, w: a.http.get(f"/v1/orders/{uuid4()}?token=x"), 404, "not_found"),
    ("read order with malformed id", lambda a, w: a.http.get("/v1/orders/123?token=x"), 422, "invalid_input"),
    (
        "read order with wrong token",
        lambda a, w: a.http.get(buyer(w.delivered, token="wrong")),
        404,
        "not_found",
    ),
    ("read order without token", lambda a, w: a.http.get(buyer(w.delivered)), 404, "not_found"),
    (
        "read order with another order's token",
        lambda a, w: a.http.get(buyer(w.delivered, token=w.pending["token"])),
        404,
        "not_found",
    ),
    *[
        (
            f"rating {rating}",
            lambda a, w, rating=rating: a.http.post(
                buyer(w.delivered, "/review", w.delivered["token"]), json={"rating": rating}
            ),
            422,
            "invalid_input",
        )
        for rating in (0, 6, -1, "5", 4.5)
    ],
    (
        "review with wrong token",
        lambda a, w: a.http.post(buyer(w.delivered, "/review", "wrong"), json={"rating": 5}),
        404,
        "not_found",
    ),
    (
        "review without token",
        lambda a, w: a.http.post(buyer(w.delivered, "/review"), json={"rating": 5}),
        404,
        "not_found",
    ),
    (
        "review a pending order",
        lambda a, w: a.http.post(buyer(w.pending, "/review", w.pending["token"]), json={"rating": 5}),
        409,
        "invalid_state",
    ),
    (
        "dispute with wrong token",
        lambda a, w: a.http.post(buyer(w.delivered, "/dispute", "wrong"), json={"reason": "bad key"}),
        404,
        "not_found",
    ),
    (
        "dispute with blank reason",
        lambda a, w: a.http.post(buyer(w.delivered, "/dispute", w.delivered["token"]), json={"reason": "  "}),
        422,
        "invalid_input",
    ),
    (
        "dispute a pending order",
        lambda a, w: a.http.post(buyer(w.pending, "/dispute", w.pending["token"]), json={"reason": "x"}),
        409,
        "invalid_state",
    ),
    (
        "refund a pending order",
        lambda a, w: a.http.post(buyer(w.pending, "/refund"), json={"reason": "x"}, headers=w.merchant),
        409,
        "invalid_state",
    ),
    (
        "refund an unknown order",
        lambda a, w: a.http.post(f"/v1/orders/{uuid4()}/refund", json={"reason": "x"}, headers=a.admin),
        404,
        "not_found",
    ),
    (
        "manual delivery of an auto order",
        lambda a, w: a.http.post(buyer(w.delivered, "/deliver"), json={"content": "x"}, headers=w.merchant),
        409,
        "invalid_state",
    ),
    (
        "manual delivery of nothing",
        lambda a, w: a.http.post(buyer(w.manual_paid, "/deliver"), json={"content": ""}, headers=w.merchant),
        422,
        "invalid_input",
    ),
    (
        "resolve a dispute that is not open",
        lambda a, w: a.http.post(buyer(w.delivered, "/dispute/resolve"), json={}, headers=w.merchant),
        409,
        "invalid_state",
    ),
    # promoters
    (
        "unknown referrer code",
        lambda a, w: a.http.post(
            "/v1/promoters", json={"name": unique("p"), "contact": "c", "referrer_code": "NOSUCHCODE"}
        ),
        422,
        "unknown_referrer",
    ),
    (
        "promoter without a name",
        lambda a, w: a.http.post("/v1/promoters", json={"name": "", "contact": "c"}),
        422,
        "invalid_input",
    ),
    (
        "unknown promoter",
        lambda a, w: a.http.get(f"/v1/promoters/{uuid4()}", headers=a.admin),
        404,
        "not_found",
    ),
    (
        "withdraw more than the balance",
        lambda a, w: a.http.post(
            f"/v1/promoters/{w.promoter['promoter_id']}/withdrawals",
            json={"amount": "1.00"},
            headers=bearer(w.promoter["token"]),
        ),
        409,
        "insufficient_balance",
    ),
    *[
        (
            f"withdraw {bad!r}",
            lambda a, w, bad=bad: a.http.post(
                f"/v1/promoters/{w.promoter['promoter_id']}/withdrawals",
                json={"amount": bad},
                headers=bearer(w.promoter["token"]),
            ),
            422,
            "invalid_input",
        )
        for bad in ("abc", "1.234", "-1", "0")
    ],
    # credentials: none or bad is 401, valid but not allowed is 403
    (
        "register merchant without auth",
        lambda a, w: a.http.post("/v1/merchants", json={"name": "n", "contact": "c"}),
        401,
        "unauthorized",
    ),
    (
        "register merchant with a bad token",
        lambda a, w: a.http.post("/v1/merchants", json={"name": "n", "contact": "c"}, headers=bearer("nope")),
        401,
        "unauthorized",
    ),
    (
        "register merchant with basic auth",
        lambda a, w: a.http.post(
            "/v1/merchants", json={"name": "n", "contact": "c"}, headers={"Authorization": "Basic YTpi"}
        ),
        401,
        "unauthorized",
    ),
    (
        "register merchant as a merchant",
        lambda a, w: a.http.post("/v1/merchants", json={"name": "n", "contact": "c"}, headers=w.merchant),
        403,
        "forbidden",
    ),
    (
        "register merchant as the auditor",
        lambda a, w: a.http.post("/v1/merchants", json={"name": "n", "contact": "c"}, headers=a.auditor),
        403,
        "forbidden",
    ),
    (
        "list a product with a forged merchant key",
        lambda a, w: a.http.post("/v1/products", json=product_body(), headers=forged_merchant_key()),
        401,
        "unauthorized",
    ),
    (
        "list a product with a wrong secret",
        lambda a, w: a.http.post(
            "/v1/products",
            json=product_body(),
            headers=bearer(w.merchant["Authorization"].removeprefix("Bearer ")[:-2] + "zz"),
        ),
        401,
        "unauthorized",
    ),
    (
        "list a product without auth",
        lambda a, w: a.http.post("/v1/products", json=product_body()),
        401,
        "unauthorized",
    ),
    (
        "list a product as admin",
        lambda a, w: a.http.post("/v1/products", json=product_body(), headers=a.admin),
        403,
        "forbidden",
    ),
    (
        "list a product as a promoter",
        lambda a, w: a.http.post("/v1/products", json=product_body(), headers=bearer(w.promoter["token"])),
        403,
        "forbidden",
    ),
    (
        "import cards into another merchant's product",
        lambda a, w: a.http.post(
            f"/v1/products/{w.product}/cards", json={"cards": ["X"]}, headers=w.other_merchant
        ),
        403,
        "forbidden",
    ),
    (
        "change another merchant's price",
        lambda a, w: a.http.post(
            f"/v1/products/{w.product}/price", json={"price": "1.00"}, headers=w.other_merchant
        ),
        403,
        "forbidden",
    ),
    (
        "delist another merchant's product",
        lambda a, w: a.http.post(f"/v1/products/{w.product}/delist", headers=w.other_merchant),
        403,
        "forbidden",
    ),
    (
        "deliver another merchant's order",
        lambda a, w: a.http.post(
            buyer(w.manual_paid, "/deliver"), json={"content": "x"}, headers=w.other_merchant
        ),
        403,
        "forbidden",
    ),
    (
        "refund another merchant's order",
        lambda a, w: a.http.post(
            buyer(w.delivered, "/refund"), json={"reason": "x"}, headers=w.other_merchant
        ),
        403,
        "forbidden",
    ),
    (
        "refund without auth",
        lambda a, w: a.http.post(buyer(w.delivered, "/refund"), json={"reason": "x"}),
        401,
        "unauthorized",
    ),
    (
        "refund as the auditor",
        lambda a, w: a.http.post(buyer(w.delivered, "/refund"), json={"reason": "x"}, headers=a.auditor),
        403,
        "forbidden",
    ),
    (
        "refund with the buyer token as bearer",
        lambda a, w: a.http.post(
            buyer(w.delivered, "/refund"), json={"reason": "x"}, headers=bearer(w.delivered["token"])
        ),
        401,
        "unauthorized",
    ),
    (
        "merchant view of another merchant's order",
        lambda a, w: a.http.get(buyer(w.delivered, "/merchant-view"), headers=w.other_merchant),
        403,
        "forbidden",
    ),
    (
        "withdraw for another promoter",
        lambda a, w: a.http.post(
            f"/v1/promoters/{w.promoter['promoter_id']}/withdrawals",
            json={"amount": "1.00"},
            headers=bearer(w.other_promoter["token"]),
        ),
        403,
        "forbidden",
    ),
    (
        "withdraw as admin",
        lambda a, w: a.http.post(
            f"/v1/promoters/{w.promoter['promoter_id']}/withdrawals", json={"amount": "1.00"}, headers=a.admin
        ),
        403,
        "forbidden",
    ),
    (
        "withdraw without auth",
        lambda a, w: a.http.post(
            f"/v1/promoters/{w.promoter['promoter_id']}/withdrawals", json={"amount": "1.00"}
        ),
        401,
        "unauthorized",
    ),
    (
        "read another promoter",
        lambda a, w: a.http.get(
            f"/v1/promoters/{w.promoter['promoter_id']}", headers=bearer(w.other_promoter["token"])
        ),
        403,
        "forbidden",
    ),
]


@pytest.mark.parametrize(("call", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_refused_request_answers_its_code_and_changes_nothing(
    api: Api, shop: Shop, world: World, call: Call, status: int, code: str
) -> None:
    before = snapshot(api, shop, world)

    response = call(api, world)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.text
    assert snapshot(api, shop, world) == before


EPAY_CASES: list[tuple[str, Callable[[Api, World], dict[str, str]], str]] = [
    (
        "bad sign",
        lambda a, w: (
            epay_params(a.settings.epay_key, w.pending["order_id"], w.pending["amount"], unique("t"))
            | {"sign": "0" * 32}
        ),
        "bad_signature",
    ),
    (
        "signed with another key",
        lambda a, w: epay_params("k" * 20, w.pending["order_id"], w.pending["amount"], unique("t")),
        "bad_signature",
    ),
    (
        "tampered money",
        lambda a, w: (
            epay_params(a.settings.epay_key, w.pending["order_id"], w.pending["amount"], unique("t"))
            | {"money": "0.01"}
        ),
        "bad_signature",
    ),
    (
        "missing sign",
        lambda a, w: {
            k: v
            for k, v in epay_params(
                a.settings.epay_key, w.pending["order_id"], w.pending["amount"], "t"
            ).items()
            if k != "sign"
        },
        "bad_signature",
    ),
    (
        "unsupported sign type",
        lambda a, w: (
            epay_params(a.settings.epay_key, w.pending["order_id"], w.pending["amount"], unique("t"))
            | {"sign_type": "RSA"}
        ),
        "bad_signature",
    ),
    (
        "trade not successful",
        lambda a, w: epay_params(
            a.settings.epay_key, w.pending["order_id"], w.pending["amount"], unique("t"), trade_status="WAIT"
        ),
        "invalid_input",
    ),
    (
        "amount mismatch",
        lambda a, w: epay_params(a.settings.epay_key, w.pending["order_id"], "0.01", unique("t")),
        "amount_mismatch",
    ),
    (
        "bad money",
        lambda a, w: epay_params(a.settings.epay_key, w.pending["order_id"], "9.9.9", unique("t")),
        "invalid_money",
    ),
    (
        "unknown order",
        lambda a, w: epay_params(a.settings.epay_key, str(uuid4()), w.pending["amount"], unique("t")),
        "not_found",
    ),
    (
        "order id not a uuid",
        lambda a, w: epay_params(a.settings.epay_key, "20240101-0001", w.pending["amount"], unique("t")),
        "invalid_input",
    ),
    ("nothing at all", lambda a, w: {}, "bad_signature"),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("params", "code"), [c[1:] for c in EPAY_CASES], ids=[c[0] for c in EPAY_CASES])
def test_a_refused_epay_notification_answers_fail_and_changes_nothing(
    api: Api,
    shop: Shop,
    world: World,
    method: str,
    params: Callable[[Api, World], dict[str, str]],
    code: str,
) -> None:
    before = snapshot(api, shop, world)
    sent = params(api, world)

    if method == "GET":
        response = api.http.get("/v1/payments/epay/notify", params=sent)
    else:
        response = api.http.post("/v1/payments/epay/notify", data=sent)

    # Gateways re-send on anything but `success`; a refusal no retry can fix is still a 200.
    assert (response.status_code, response.text) == (200, "fail")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-kami-error"] == code
    assert snapshot(api, shop, world) == before
