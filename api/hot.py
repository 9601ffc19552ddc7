"""A pure-ASGI fast path for the buyers' three hot routes, in front of FastAPI.

Placing an order, the signed sandbox callback and the buyer's order read are nearly all
of the traffic under load. Through FastAPI each of them crosses six middleware layers,
the router, dependency solving and response validation, which cost more CPU than the
route's own work; here a request is matched, validated, run and answered directly.

One place for each rule:
- Input is validated by the routes' own models and parameter types. Input that does not
  pass, or that this path does not take as it is (another content type, a large body,
  an unknown query), is handed on to FastAPI, which answers it as it always did: its
  422 bodies are made in one place.
- The work after validation is the routes' own functions (``orders.place``,
  ``orders.buyer_order``, ``payments.sandbox_payment``), and their errors are answered
  by api.errors' handlers, the app's own.
- The rate limit is the app's limiter, taken once per request (``ratelimit.COUNTED``).
- Latencies go to the same /metrics histogram, under the same route templates.
FastAPI's routes stay: they describe these routes in /openapi.json and answer whatever
is handed on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import PaymentKeys
from api.errors import exception_response
from api.metrics import RequestLatencies
from api.ratelimit import COUNTED, LIMITED_ROUTES, Kind, RateLimiter
from api.routes import orders, payments
from api.schemas.orders import OrderCreate
from domain.shop import Shop

# Larger bodies are left to FastAPI; an order is a few hundred bytes, a callback is
# refused above this size by the route itself.
MAX_BODY = payments.MAX_CALLBACK_BYTES
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class Incoming:
    """What a hot route reads of a request."""

    path_params: dict[str, str]
    scope: Scope
    body: bytes

    def header(self, name: bytes) -> str | None:
        """The first value of a (lower-case) header, decoded as Starlette does."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def query(self, name: str) -> str | None:
        """A query parameter as Starlette reads it: blank values kept, the last one wins."""
        params = dict(parse_qsl(self.scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return params.get(name)

    def json(self) -> Any:
        """The body as FastAPI decodes a JSON body; ValueError for anything else."""
        media_type = (self.header(b"content-type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise ValueError("not a JSON body: FastAPI decides")
        return json.loads(self.body)


# None: hand the request on to FastAPI.
Handler = Callable[[Shop, PaymentKeys, Incoming], Awaitable[BaseModel | None]]

# The routes' own parameter types: the same bounds, patterns and UUID forms.
IDEMPOTENCY_KEY: TypeAdapter[str | None] = TypeAdapter(orders.IdempotencyKey)
ORDER_ID: TypeAdapter[Any] = TypeAdapter(orders.OrderId)
BUYER_TOKEN: TypeAdapter[str | None] = TypeAdapter(orders.BuyerToken)


async def _place_order(shop: Shop, keys: PaymentKeys, incoming: Incoming) -> BaseModel | None:
    try:
        body = OrderCreate.model_validate(incoming.json())
        key = IDEMPOTENCY_KEY.validate_python(incoming.header(b"idempotency-key"))
    except Exception:  # malformed in any way (JSON, encoding, fields): FastAPI answers it
        return None
    return await orders.place(shop, body, key)


async def _sandbox_notify(shop: Shop, keys: PaymentKeys, incoming: Incoming) -> BaseModel | None:
    # The route reads the raw body itself: nothing to validate before it.
    return await payments.sandbox_payment(shop, keys, incoming.body, incoming.header(b"x-kami-signature"))


async def _get_order(shop: Shop, keys: PaymentKeys, incoming: Incoming) -> BaseModel | None:
    try:
        order_id = ORDER_ID.validate_python(incoming.path_params["order_id"])
        token = BUYER_TOKEN.validate_python(incoming.query("token"))
    except Exception:
        return None
    return await orders.buyer_order(shop, order_id, token)


HANDLERS: dict[Callable[..., Any], Handler] = {
    orders.place_order: _place_order,
    payments.sandbox_notify: _sandbox_notify,
    orders.get_order: _get_order,
}


@dataclass(frozen=True)
class HotRoute:
    """A FastAPI route and the handler that serves it here."""

    route: APIRoute
    method: str
    handler: Handler
    limit: Kind | None
    reads_body: bool

    def answer(self, model: BaseModel) -> tuple[int, bytes]:
        """Status and body as FastAPI makes them from the route's declarations."""
        return self.route.status_code or 200, to_json(
            model, exclude_none=self.route.response_model_exclude_none
        )


def hot_routes(routers: Iterable[APIRouter]) -> list[HotRoute]:
    """The routes of ``routers`` that HANDLERS serve, in order.

    Read off the routers (create_app includes them without a prefix): this FastAPI keeps
    an included router as one opaque entry of ``app.routes``.
    """
    return [
        HotRoute(
            route, method, HANDLERS[route.endpoint], LIMITED_ROUTES.get((method, route.path)), method != "GET"
        )
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in HANDLERS
        for method in sorted(route.methods)
    ]


class HotRoutes:
    """ASGI app serving the hot routes itself and handing everything else to ``app``."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, routers: Iterable[APIRouter]) -> None:
        self.app = app
        self.fastapi = fastapi
        self.routes = hot_routes(routers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A root path (a mount, a proxy prefix) changes what the router matches: FastAPI's.
        if scope["type"] != "http" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        for hot in self.routes:
            if scope["method"] == hot.method and (match := hot.route.path_regex.match(scope["path"])):
                await self._serve(hot, match.groupdict(), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, hot: HotRoute, path_params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        state = self.fastapi.state
        body, whole = b"", True
        if hot.reads_body:
            read, more = await _read_body(receive)
            if read is None:
                return  # the client left before sending its body
            body, receive = read, _replay(read, more, receive)
            # A large body is the route's to refuse (or FastAPI's to read on): handed on.
            whole = not more and len(read) <= MAX_BODY
        try:
            self._take_limit(hot, scope)
            incoming = Incoming(path_params, scope, body)
            model = await hot.handler(state.kami.shop, state.payment_keys, incoming) if whole else None
        except Exception as error:  # answered as the app's handlers answer it
            response: Response = await exception_response(Request(scope, receive), error)
            status = response.status_code
            await response(scope, receive, send)
        else:
            if model is None:
                await self.app(scope, receive, send)  # FastAPI answers, and times, this one
                return
            status, payload = hot.answer(model)
            headers = [(b"content-length", str(len(payload)).encode()), *JSON_HEADERS]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        latencies: RequestLatencies = state.request_latencies
        latencies.observe(hot.method, hot.route.path, status, time.perf_counter() - started)

    def _take_limit(self, hot: HotRoute, scope: Scope) -> None:
        """The route's rate limit, once: FastAPI's dependency skips a request counted here."""
        if hot.limit is None:
            return
        limiter: RateLimiter = self.fastapi.state.rate_limiter
        client = scope.get("client")
        scope[COUNTED] = True
        limiter.check(hot.limit, client[0] if client else None)


async def _read_body(receive: Receive) -> tuple[bytes | None, bool]:
    """The body up to about MAX_BODY, and whether more follows; None on a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > MAX_BODY:
            return b"".join(chunks), more


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that gives ``body`` again, then what the client sends next."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again
