"""api.hot answers the buyers' hot routes exactly as FastAPI does, refusals included.

Every request here goes to two apps around the same stubbed Shop: one with the fast
path in front (the default), one without (``hot_routes=False``). Status, body and the
headers a client acts on must be the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.ratelimit import RateLimits
from api.settings import ApiSettings
from domain.exceptions import NotFound, OutOfStock
from domain.results import OrderPlaced, OrderView, PaymentResult
from domain.signatures import sandbox_signature
from kami.bootstrap import Kami

SETTINGS = ApiSettings(
    admin_token="admin-token-0123456789",
    auditor_token="auditor-token-0123456789",
    payment_secret="payment-secret-0123456789",
    epay_key="epay-key-0123456789",
    rate_limits=RateLimits.off(),
)
PRODUCT = UUID("11111111-1111-4111-8111-111111111111")
SOLD_OUT = UUID("22222222-2222-4222-8222-222222222222")
ORDER = UUID("33333333-3333-4333-8333-333333333333")
BROKEN = UUID("44444444-4444-4444-8444-444444444444")  # the Shop fails unexpectedly
DOWN = UUID("55555555-5555-4555-8555-555555555555")  # the store is unreachable
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


class StubShop:
    """Fixed answers, and the domain's refusals for the ids above."""

    def place_order(
        self,
        product_id: UUID,
        quantity: int,
        contact: str,
        promoter_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> OrderPlaced:
        if product_id == SOLD_OUT:
            raise OutOfStock("not enough cards left")
        token = f"tok-{idempotency_key or 'none'}"
        return OrderPlaced(ORDER, token, 990 * quantity, 990, quantity, NOW + timedelta(minutes=15), 7)

    def record_payment(self, provider: str, order_id: UUID, txn_id: str, amount: int) -> PaymentResult:
        if order_id != ORDER:
            raise NotFound("no such order")
        return PaymentResult(order_id, "delivered", txn_id == "seen", 9)

    def get_order(self, order_id: UUID, token: str | None) -> OrderView:
        if order_id == BROKEN:
            raise RuntimeError("a bug")
        if order_id == DOWN:
            raise psycopg.OperationalError("the store is down")
        if order_id != ORDER or token != "good":
            raise NotFound("no such order")
        return OrderView(ORDER, PRODUCT, PRODUCT, "delivered", 990, 990, 1, NOW, NOW, cards=["CARD-1"])


def _app(*, hot_routes: bool, settings: ApiSettings = SETTINGS) -> FastAPI:
    kami = Kami(shop=StubShop(), pool=None, database_url="")  # type: ignore[arg-type]
    return create_app(kami, settings, hot_routes=hot_routes)


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    # raise_server_exceptions=False: a 500 is an answer to compare, not a test failure.
    with (
        TestClient(_app(hot_routes=True), raise_server_exceptions=False) as hot,
        TestClient(_app(hot_routes=False), raise_server_exceptions=False) as plain,
    ):
        yield hot, plain


def _signed(body: dict[str, Any] | bytes) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"X-Kami-Signature": sandbox_signature(SETTINGS.payment_secret, raw)}


GOOD_ORDER = {"product_id": str(PRODUCT), "quantity": 2, "contact": "b@x"}
GOOD_NOTE = {"order_id": str(ORDER), "amount": "9.90", "txn_id": "t1"}

# (method, url, body, headers)
REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    # placing an order
    ("POST", "/v1/orders", json.dumps(GOOD_ORDER).encode(), {"Content-Type": "application/json"}),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER).encode(),
        {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": "k-1"},
    ),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER).encode(),
        {"Content-Type": "application/json", "Idempotency-Key": "a b"},
    ),
    ("POST", "/v1/orders", json.dumps(GOOD_ORDER).encode(), {"Content-Type": "application/vnd.kami+json"}),
    ("POST", "/v1/orders", json.dumps(GOOD_ORDER).encode(), {"Content-Type": "text/plain"}),
    ("POST", "/v1/orders", json.dumps(GOOD_ORDER).encode(), {}),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER | {"product_id": str(SOLD_OUT)}).encode(),
        {"Content-Type": "application/json"},
    ),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER | {"quantity": "2"}).encode(),
        {"Content-Type": "application/json"},
    ),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER | {"extra": 1}).encode(),
        {"Content-Type": "application/json"},
    ),
    (
        "POST",
        "/v1/orders",
        json.dumps(GOOD_ORDER | {"contact": "a\x00b"}).encode(),
        {"Content-Type": "application/json"},
    ),
    ("POST", "/v1/orders", b'{"product_id": ', {"Content-Type": "application/json"}),
    ("POST", "/v1/orders", b"\xff\xfe", {"Content-Type": "application/json"}),
    ("POST", "/v1/orders", b"", {"Content-Type": "application/json"}),
    ("POST", "/v1/orders", b"[1, 2]", {"Content-Type": "application/json"}),
    ("POST", "/v1/orders/", json.dumps(GOOD_ORDER).encode(), {"Content-Type": "application/json"}),
    # the sandbox callback
    ("POST", "/v1/payments/notify", *_signed(GOOD_NOTE)),
    ("POST", "/v1/payments/notify", *_signed(GOOD_NOTE | {"txn_id": "seen", "new_field": 1})),
    ("POST", "/v1/payments/notify", *_signed(GOOD_NOTE | {"order_id": str(PRODUCT)})),
    ("POST", "/v1/payments/notify", *_signed(GOOD_NOTE | {"amount": "9.999"})),
    ("POST", "/v1/payments/notify", *_signed(b"not json")),
    ("POST", "/v1/payments/notify", json.dumps(GOOD_NOTE).encode(), {"X-Kami-Signature": "00"}),
    ("POST", "/v1/payments/notify", json.dumps(GOOD_NOTE).encode(), {}),
    ("POST", "/v1/payments/notify", *_signed(b"x" * 70_000)),
    # the buyer's order
    ("GET", f"/v1/orders/{ORDER}?token=good", None, {}),
    ("GET", f"/v1/orders/{str(ORDER).replace('-', '')}?token=good&other=1", None, {}),
    ("GET", f"/v1/orders/{ORDER}?token=bad&token=good", None, {}),
    ("GET", f"/v1/orders/{ORDER}?token=bad", None, {}),
    ("GET", f"/v1/orders/{ORDER}?token=", None, {}),
    ("GET", f"/v1/orders/{ORDER}", None, {}),
    ("GET", f"/v1/orders/{ORDER}?token=" + "x" * 201, None, {}),
    ("GET", "/v1/orders/not-a-uuid?token=good", None, {}),
    ("GET", f"/v1/orders/{BROKEN}?token=good", None, {}),
    ("GET", f"/v1/orders/{DOWN}?token=good", None, {}),
]


def _answer(client: TestClient, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Any:
    response = client.request(method, url, content=body, headers=headers)
    kept = {k: response.headers.get(k) for k in ("content-type", "retry-after", "www-authenticate")}
    return response.status_code, response.content, kept


@pytest.mark.parametrize(("method", "url", "body", "headers"), REQUESTS)
def test_the_fast_path_answers_as_fastapi_does(
    clients: tuple[TestClient, TestClient], method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> None:
    hot, plain = clients
    assert _answer(hot, method, url, body, headers) == _answer(plain, method, url, body, headers)


def test_the_fast_path_serves_the_hot_routes_and_times_them() -> None:
    app = _app(hot_routes=True)
    with TestClient(app) as hot:
        hot.get("/docs")  # builds the middleware stack
        stack: Any = app.middleware_stack
        handed_on: list[str] = []

        async def fastapi(scope: Any, receive: Any, send: Any) -> None:
            handed_on.append(scope["path"])

        stack.app = fastapi
        note, signature = _signed(GOOD_NOTE)
        assert hot.post("/v1/orders", json=GOOD_ORDER).status_code == 201
        assert hot.post("/v1/payments/notify", content=note, headers=signature).status_code == 200
        assert hot.get(f"/v1/orders/{ORDER}", params={"token": "good"}).status_code == 200
    assert handed_on == []
    metrics = "\n".join(app.state.request_latencies.render())
    # The route templates, never the raw path, as RequestMetrics records them.
    assert 'route="/v1/orders",status="201"' in metrics
    assert 'route="/v1/orders/{order_id}",status="200"' in metrics


def test_a_request_handed_on_to_fastapi_takes_one_token_of_its_limit() -> None:
    limits = RateLimits(orders=2, lookups=2, callbacks=2, exempt=())
    settings = ApiSettings(
        admin_token=SETTINGS.admin_token,
        auditor_token=SETTINGS.auditor_token,
        payment_secret=SETTINGS.payment_secret,
        epay_key=SETTINGS.epay_key,
        rate_limits=limits,
    )
    with TestClient(_app(hot_routes=True, settings=settings), client=("203.0.113.7", 40000)) as client:
        malformed = client.post("/v1/orders", json=GOOD_ORDER | {"quantity": 0})  # FastAPI answers it
        placed = client.post("/v1/orders", json=GOOD_ORDER)
        refused = client.post("/v1/orders", json=GOOD_ORDER)

    assert [malformed.status_code, placed.status_code, refused.status_code] == [422, 201, 429]
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == "30"
