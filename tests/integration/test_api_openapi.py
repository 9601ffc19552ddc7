"""The OpenAPI document and the docs page describe every route; health answers."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

import domain.exceptions
from api.routes import health, merchants, orders, payments, products, promoters
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, in_process

CONTRACT = {
    ("post", "/v1/merchants"),
    ("post", "/v1/products"),
    ("post", "/v1/products/{product_id}/cards"),
    ("get", "/v1/products/{product_id}"),
    ("post", "/v1/promoters"),
    ("post", "/v1/orders"),
    ("post", "/v1/payments/notify"),
    ("get", "/v1/payments/epay/notify"),
    ("post", "/v1/payments/epay/notify"),
    ("get", "/v1/orders/{order_id}"),
    ("post", "/v1/orders/{order_id}/deliver"),
    ("post", "/v1/orders/{order_id}/review"),
    ("post", "/v1/orders/{order_id}/dispute"),
    ("post", "/v1/orders/{order_id}/refund"),
    ("post", "/v1/promoters/{promoter_id}/withdrawals"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/merchants/{merchant_id}/dashboard"),
    ("get", "/v1/merchants/{merchant_id}/score"),
    ("get", "/v1/promoters/{promoter_id}/payouts"),
    ("get", "/v1/audit/ledger"),
    ("get", "/v1/audit/verify"),
}
# What kami adds to the contract, listed for client developers.
ADDITIONS = Path(__file__).resolve().parents[2] / "docs" / "API-additions.md"


@pytest.fixture
def api(kami: Kami) -> Iterator[Api]:
    with in_process(kami) as client:
        yield client


def test_openapi_lists_every_route_with_its_answers(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (method.lower(), route.path)
        for module in (health, merchants, orders, payments, products, promoters)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }

    assert documented >= CONTRACT
    assert served <= documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            answers = op["responses"]
            assert any(code.startswith("2") and answers[code].get("content") for code in answers), (
                method,
                path,
            )
            assert op.get("summary") and op.get("description"), (method, path)
            if "{" in path:
                assert "422" in answers, (method, path)


def test_the_signed_callback_documents_its_body_and_signature(api: Api) -> None:
    op = api.http.get("/openapi.json").json()["paths"]["/v1/payments/notify"]["post"]

    assert set(op["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "order_id",
        "amount",
        "txn_id",
    }
    assert any(p["name"] == "x-kami-signature" for p in op["parameters"])
    assert {"400", "404", "422"} <= set(op["responses"])


def test_the_docs_page_is_served(api: Api) -> None:
    r = api.http.get("/docs")

    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]


def test_health_answers_with_the_log_position(api: Api) -> None:
    r = api.http.get("/healthz")

    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert isinstance(r.json()["position"], int)


def _shape(path: str) -> str:
    """A path with every parameter as `{}`: the page writes `{id}` where routes say `{order_id}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _named_routes(text: str) -> set[tuple[str, str]]:
    """The (method, path) pairs a page names in its table: `GET,POST /v1/x[?a=]`."""
    named = set()
    for methods, path in re.findall(r"`([A-Z,]+) (/[^`?\[]*)", text):
        for method in methods.split(","):
            named.add((method.lower(), _shape(path)))
    return named


def test_every_route_and_error_code_beyond_the_contract_is_listed_for_clients(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    text = ADDITIONS.read_text()
    listed = _named_routes(text)
    contract = {(method, _shape(path)) for method, path in CONTRACT}
    served = {(method, _shape(path)) for path, ops in doc["paths"].items() for method in ops}
    assert served - contract - listed == set()
    # And nothing named that the server does not serve (a renamed or removed route).
    assert listed - served == set()

    codes = {
        cls.code
        for _, cls in inspect.getmembers(domain.exceptions, inspect.isclass)
        if issubclass(cls, domain.exceptions.KamiError) and cls is not domain.exceptions.KamiError
    }
    assert {code for code in codes if f"`{code}`" not in text} == set()
