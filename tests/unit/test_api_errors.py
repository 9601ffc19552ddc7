"""The error mapping: every domain error, validation and store failures, never a traceback."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing import persistence
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from api.errors import STATUS_BY_ERROR, install_error_handlers, status_for
from api.schemas.orders import ReviewCreate
from domain import exceptions as domain

with warnings.catch_warnings():
    # Starlette nags about httpx at import; the warning says nothing about kami.
    warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
    from fastapi.testclient import TestClient

EXPECTED = {
    domain.InvalidInput: 422,
    domain.InvalidMoney: 422,
    domain.OverLimit: 422,
    domain.UnknownReferrer: 422,
    domain.UnknownPromoter: 422,
    domain.NotFound: 404,
    domain.Unauthorized: 401,
    domain.Forbidden: 403,
    domain.OutOfStock: 409,
    domain.DuplicateTxn: 409,
    domain.InvalidState: 409,
    domain.AlreadyReviewed: 409,
    domain.ProductUnavailable: 409,
    domain.MerchantRestricted: 409,
    domain.InsufficientBalance: 409,
    domain.BadSignature: 400,
    domain.AmountMismatch: 400,
    domain.Busy: 503,
    domain.ProjectionLagging: 503,
    domain.BuyerBlacklisted: 403,
    domain.IdempotencyKeyReused: 422,
    domain.RateLimited: 429,
}


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


@pytest.mark.parametrize("error", sorted(EXPECTED, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_each_domain_error_has_its_status(error: type[domain.KamiError]) -> None:
    assert status_for(error("x")) == EXPECTED[error]


def test_every_domain_error_in_the_codebase_is_mapped_on_purpose() -> None:
    unexpected = {c for c in _all_subclasses(domain.KamiError) if c.__module__ == domain.__name__} - set(
        EXPECTED
    )

    assert not unexpected, f"decide a status for {unexpected}"
    assert set(STATUS_BY_ERROR) <= set(EXPECTED)


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    failures: dict[str, Exception] = {
        "over-limit": domain.OverLimit("at most 3 per order"),
        "unauthorized": domain.Unauthorized("who are you"),
        "busy": domain.Busy("try again"),
        "db-down": psycopg.OperationalError("connection refused"),
        "pool-timeout": PoolTimeout("no connection in 30 s"),
        "store-down": persistence.OperationalError("connection refused"),
        "bug": RuntimeError("secret internals"),
    }

    @app.get("/fail/{name}")
    def fail(name: str) -> None:
        raise failures[name]

    @app.post("/review")
    def review(body: ReviewCreate) -> None:
        return None

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_domain_error_answers_its_code_and_detail(client: TestClient) -> None:
    r = client.get("/fail/over-limit")

    assert (r.status_code, r.json()) == (422, {"error": "over_limit", "detail": "at most 3 per order"})


def test_unauthorized_asks_for_a_bearer_token(client: TestClient) -> None:
    r = client.get("/fail/unauthorized")

    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("name", ["db-down", "pool-timeout", "store-down"])
def test_an_unreachable_store_is_a_503_safe_to_retry(client: TestClient, name: str) -> None:
    r = client.get(f"/fail/{name}")

    assert r.status_code == 503
    assert r.json()["error"] == "unavailable"
    assert r.headers["retry-after"] == "1"
    assert "connection refused" not in r.text


def test_contention_is_a_503_busy(client: TestClient) -> None:
    r = client.get("/fail/busy")

    assert (r.status_code, r.json()["error"]) == (503, "busy")


def test_a_bug_answers_500_without_a_traceback(client: TestClient) -> None:
    r = client.get("/fail/bug")

    assert (r.status_code, r.json()) == (500, {"error": "internal", "detail": "an unexpected error occurred"})
    assert "secret internals" not in r.text


def test_malformed_json_is_a_422_in_the_contract_shape(client: TestClient) -> None:
    r = client.post("/review", content=b'{"rating": ', headers={"Content-Type": "application/json"})

    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert r.json()["detail"] == "the request body is not valid JSON"


def test_a_validation_error_names_the_field_without_echoing_input(client: TestClient) -> None:
    r = client.post("/review", json={"rating": 9, "comment": "my-secret-comment"})

    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_input"
    assert body["errors"][0]["loc"] == ["body", "rating"]
    assert set(body["errors"][0]) == {"loc", "msg", "type"}


def test_unknown_routes_and_methods_answer_in_the_contract_shape(client: TestClient) -> None:
    missing = client.get("/no/such/route")
    wrong_method = client.delete("/review")

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")


def test_a_rate_limited_request_says_when_to_retry() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/limited")
    def limited() -> None:
        raise domain.RateLimited("too many order placements from this address; retry in 7 s", retry_after=7)

    with TestClient(app) as client:
        r = client.get("/limited")

    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert r.json() == {
        "error": "rate_limited",
        "detail": "too many order placements from this address; retry in 7 s",
    }
