"""HTTP helpers shared by the API's integration and e2e tests: a client, signers, a live server."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import uvicorn
from fastapi import FastAPI

from api.main import create_app
from api.settings import ApiSettings
from domain.signatures import epay_signature
from kami.bootstrap import Kami


def unique(prefix: str) -> str:
    """A name no other test uses, so tests never collide in the shared database."""
    return f"{prefix}-{uuid4().hex[:10]}"


def random_cards(n: int) -> list[str]:
    """N distinct card keys."""
    return [f"CARD-{uuid4().hex.upper()}" for _ in range(n)]


def random_settings() -> ApiSettings:
    """Fresh secrets for one app."""
    return ApiSettings(
        admin_token=secrets.token_urlsafe(24),
        auditor_token=secrets.token_urlsafe(24),
        payment_secret=secrets.token_urlsafe(24),
        epay_key=secrets.token_urlsafe(24),
    )


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def sandbox_body(order_id: str, amount: str, txn_id: str) -> bytes:
    """A sandbox callback body, as the provider would send it."""
    return json.dumps({"order_id": order_id, "amount": amount, "txn_id": txn_id}).encode()


def sandbox_headers(secret: str, body: bytes) -> dict[str, str]:
    """Headers of a correctly signed sandbox callback."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Kami-Signature": signature, "Content-Type": "application/json"}


def epay_params(key: str, order_id: str, money: str, trade_no: str, **overrides: str) -> dict[str, str]:
    """A signed 易支付 notification for an order."""
    params = {
        "pid": "1001",
        "trade_no": trade_no,
        "out_trade_no": order_id,
        "type": "alipay",
        "name": "卡密",
        "money": money,
        "trade_status": "TRADE_SUCCESS",
        **overrides,
    }
    params["sign"] = epay_signature(params, key)
    params["sign_type"] = "MD5"
    return params


@dataclass
class Api:
    """A client of one app, with the app's secrets and shortcuts for common set-ups."""

    http: httpx.Client
    settings: ApiSettings

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.settings.admin_token)

    @property
    def auditor(self) -> dict[str, str]:
        return bearer(self.settings.auditor_token)

    def merchant(self) -> tuple[str, dict[str, str]]:
        """A new merchant: its id and its auth header."""
        r = self.http.post("/v1/merchants", json={"name": unique("m"), "contact": "m@x"}, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["merchant_id"], bearer(r.json()["api_key"])

    def product(self, merchant: Mapping[str, str], cards: list[str] | None = None, **fields: Any) -> str:
        """A new product of that merchant, stocked with `cards` when given."""
        body = {"title": unique("p"), "price": "9.90", "delivery": "auto"} | fields
        r = self.http.post("/v1/products", json=body, headers=dict(merchant))
        assert r.status_code == 201, r.text
        product_id: str = r.json()["product_id"]
        if cards:
            r = self.http.post(
                f"/v1/products/{product_id}/cards", json={"cards": cards}, headers=dict(merchant)
            )
            assert r.status_code == 200, r.text
        return product_id

    def order(self, product_id: str, quantity: int = 1, **fields: Any) -> dict[str, Any]:
        """A new pending order: the placement answer (order_id, token, amount...)."""
        body = {"product_id": product_id, "quantity": quantity, "contact": unique("buyer")} | fields
        r = self.http.post("/v1/orders", json=body)
        assert r.status_code == 201, r.text
        placed: dict[str, Any] = r.json()
        return placed

    def notify(self, order_id: str, amount: str, txn_id: str | None = None) -> httpx.Response:
        """A correctly signed sandbox payment callback."""
        body = sandbox_body(order_id, amount, txn_id or unique("txn"))
        return self.http.post(
            "/v1/payments/notify", content=body, headers=sandbox_headers(self.settings.payment_secret, body)
        )

    def pay(self, order: Mapping[str, Any], txn_id: str | None = None) -> dict[str, Any]:
        """Pay an order in full and return the callback's answer."""
        r = self.notify(order["order_id"], order["amount"], txn_id)
        assert r.status_code == 200, r.text
        paid: dict[str, Any] = r.json()
        return paid

    def read_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """The order as its buyer sees it."""
        r = self.http.get(f"/v1/orders/{order['order_id']}", params={"token": order["token"]})
        assert r.status_code == 200, r.text
        view: dict[str, Any] = r.json()
        return view

    def stock(self, product_id: str) -> int:
        """The product's stock as anyone sees it."""
        r = self.http.get(f"/v1/products/{product_id}")
        assert r.status_code == 200, r.text
        return int(r.json()["stock"])

    def promoter(self, referrer_code: str | None = None) -> dict[str, Any]:
        """A new promoter: the join answer (promoter_id, code, token)."""
        body: dict[str, Any] = {"name": unique("pr"), "contact": "p@x"}
        if referrer_code is not None:
            body["referrer_code"] = referrer_code
        r = self.http.post("/v1/promoters", json=body)
        assert r.status_code == 201, r.text
        joined: dict[str, Any] = r.json()
        return joined


@contextmanager
def in_process(kami: Kami) -> Iterator[Api]:
    """An Api over FastAPI's TestClient: no socket, server errors raised in the test."""
    with warnings.catch_warnings():
        # Starlette nags about httpx at import; the warning says nothing about kami.
        warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
        from fastapi.testclient import TestClient
    settings = random_settings()
    with TestClient(create_app(kami, settings)) as client:
        yield Api(client, settings)


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve the app with uvicorn on a free loopback port in a thread; yield its base URL."""
    # The socket is bound and listening before the thread starts, so the first request
    # waits in the backlog instead of racing the server's start-up: no sleep needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", backlog=1024, timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
