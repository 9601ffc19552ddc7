"""Per-IP rate limits over HTTP: order placement, order lookup and payment callbacks answer
429 `rate_limited` with Retry-After once an address has used its limit, and change nothing."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from api.main import create_app
from api.ratelimit import LIMITED_ROUTES, RateLimits
from api.settings import ApiSettings
from kami.bootstrap import Kami
from tests.e2e.api_client import (
    Api,
    epay_params,
    in_process,
    live_server,
    random_cards,
    random_settings,
    unique,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
    from fastapi.testclient import TestClient

BUYER, OTHER = "203.0.113.7", "198.51.100.9"
Setup = tuple[Api, str, dict[str, str]]


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def seconds() -> Clock:
    return Clock()


@pytest.fixture
def setup(kami: Kami) -> Iterator[Setup]:
    """A merchant and a stocked product, made over a client the limits do not count."""
    with in_process(kami) as api:
        _, merchant = api.merchant()
        yield api, api.product(merchant, random_cards(20)), merchant


@contextmanager
def limited(kami: Kami, settings: ApiSettings, clock: Clock, ip: str) -> Iterator[Api]:
    """A client at `ip`, of an app with tight limits on an injected clock."""
    app = create_app(kami, settings, rate_clock=clock)
    with TestClient(app, client=(ip, 40000)) as client:
        yield Api(client, settings)


def tight(api: Api) -> ApiSettings:
    return ApiSettings(
        admin_token=api.settings.admin_token,
        auditor_token=api.settings.auditor_token,
        payment_secret=api.settings.payment_secret,
        epay_key=api.settings.epay_key,
        rate_limits=RateLimits(orders=2, lookups=3, callbacks=2, exempt=()),
    )


def order(api: Api, product_id: str) -> httpx.Response:
    return api.http.post("/v1/orders", json={"product_id": product_id, "quantity": 1, "contact": unique("b")})


def test_an_address_over_its_placement_limit_gets_429_until_its_bucket_refills(
    kami: Kami, seconds: Clock, setup: Setup
) -> None:
    api, product, _ = setup
    settings = tight(api)
    with limited(kami, settings, seconds, BUYER) as buyer, limited(kami, settings, seconds, OTHER) as other:
        assert [order(buyer, product).status_code for _ in range(2)] == [201, 201]
        position, stock = kami.shop.position(), api.stock(product)

        refused = order(buyer, product)

        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert "order placements" in refused.json()["detail"]
        assert refused.headers["Retry-After"] == "30"  # 2 a minute: one every 30 s
        assert (kami.shop.position(), api.stock(product)) == (position, stock)  # nothing placed
        assert order(other, product).status_code == 201  # another address has its own limit

        seconds.now += 29
        assert order(buyer, product).status_code == 429
        seconds.now += 1
        assert order(buyer, product).status_code == 201


def test_order_lookups_are_limited_per_address(kami: Kami, seconds: Clock, setup: Setup) -> None:
    api, product, _ = setup
    placed = api.order(product)
    with limited(kami, tight(api), seconds, BUYER) as buyer:
        answers = [buyer.http.get(f"/v1/orders/{placed['order_id']}", params={"token": placed["token"]})]
        answers += [buyer.http.get(f"/v1/orders/{placed['order_id']}") for _ in range(3)]

    # A wrong or missing token counts too: guessing tokens is what the limit is for.
    assert [r.status_code for r in answers] == [200, 404, 404, 429]
    assert answers[-1].headers["Retry-After"] == "20"


def test_payment_callbacks_are_limited_per_address_on_both_protocols(
    kami: Kami, seconds: Clock, setup: Setup
) -> None:
    api, product, _ = setup
    orders = [api.order(product) for _ in range(3)]
    with limited(kami, tight(api), seconds, BUYER) as gateway:
        first = gateway.notify(orders[0]["order_id"], orders[0]["amount"])
        params = epay_params(api.settings.epay_key, orders[1]["order_id"], orders[1]["amount"], unique("t"))
        second = gateway.http.get("/v1/payments/epay/notify", params=params)
        third = gateway.notify(orders[2]["order_id"], orders[2]["amount"])

    assert (first.status_code, second.text, third.status_code) == (200, "success", 429)
    assert third.json()["error"] == "rate_limited"
    assert api.read_order(orders[2])["status"] == "pending"  # the refused callback did nothing


def test_loopback_is_exempt_by_default_so_local_tools_and_load_tests_are_not_limited(kami: Kami) -> None:
    settings = random_settings()
    settings = ApiSettings(
        admin_token=settings.admin_token,
        auditor_token=settings.auditor_token,
        payment_secret=settings.payment_secret,
        epay_key=settings.epay_key,
        rate_limits=RateLimits(orders=1),
    )
    with live_server(create_app(kami, settings)) as base_url, httpx.Client(base_url=base_url) as http:
        api = Api(http, settings)
        _, merchant = api.merchant()
        product = api.product(merchant, random_cards(5))
        assert [order(api, product).status_code for _ in range(3)] == [201, 201, 201]

        # Behind a reverse proxy on this machine, uvicorn takes the buyer's address from
        # X-Forwarded-For (trusted from 127.0.0.1), and the limit applies to it.
        forwarded = {"X-Forwarded-For": BUYER}
        body = {"product_id": product, "quantity": 1, "contact": unique("b")}
        answers = [http.post("/v1/orders", json=body, headers=forwarded).status_code for _ in range(2)]
        assert answers == [201, 429]


def test_the_openapi_description_documents_the_429_of_every_limited_route(setup: Setup) -> None:
    api, _, _ = setup
    paths = api.http.get("/openapi.json").json()["paths"]

    for method, path in LIMITED_ROUTES:
        assert "429" in paths[path][method.lower()]["responses"], (method, path)
    assert "429" not in paths["/v1/products/{product_id}"]["get"]["responses"]
