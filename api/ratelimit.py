"""Per-IP rate limits (risk control) on the routes that abuse aims at.

Order placement (bots sweeping a product's stock), order lookup (guessing tokens,
scraping) and payment callbacks (floods of forged notifications) each have a token
bucket per client address: `limit` requests at once, refilled at `limit` per minute.
A refused request answers 429 `rate_limited` with `Retry-After`, before any work.

The client address is the connection's peer as uvicorn reports it; behind a reverse
proxy, uvicorn's proxy headers (trusted from FORWARDED_ALLOW_IPS, 127.0.0.1 by default)
make it the buyer's. Exempt networks (loopback by default: health checks, local tools,
a load generator on the same machine) and peers with no IP address (a Unix socket
without proxy headers, an in-process test client) are not limited.

The clock is injected (monotonic seconds), so tests move time instead of sleeping.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request

from domain.exceptions import RateLimited

Kind = Literal["orders", "lookups", "callbacks"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MonotonicClock = Callable[[], float]

# (method, route template) -> the limit that applies. Route templates rather than raw
# paths: /v1/orders/{order_id} is one route whatever the id, and nothing is parsed twice.
LIMITED_ROUTES: dict[tuple[str, str], Kind] = {
    ("POST", "/v1/orders"): "orders",
    ("GET", "/v1/orders/{order_id}"): "lookups",
    ("POST", "/v1/payments/notify"): "callbacks",
    ("GET", "/v1/payments/epay/notify"): "callbacks",
    ("POST", "/v1/payments/epay/notify"): "callbacks",
}
WHAT: dict[Kind, str] = {
    "orders": "order placements",
    "lookups": "order lookups",
    "callbacks": "payment callbacks",
}
ENV: dict[Kind, str] = {
    "orders": "KAMI_RATE_LIMIT_ORDERS",
    "lookups": "KAMI_RATE_LIMIT_LOOKUPS",
    "callbacks": "KAMI_RATE_LIMIT_CALLBACKS",
}
EXEMPT_ENV = "KAMI_RATE_LIMIT_EXEMPT"
DEFAULT_EXEMPT = ("127.0.0.0/8", "::1/128")
# Buckets kept at most; the least recently used go first (a full bucket loses nothing).
MAX_TRACKED = 100_000
ADDRESSES_REMEMBERED = 16_384


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per client address; 0 turns a limit off."""

    # A buyer places a few orders a minute; a sweep of a product's stock places hundreds.
    orders: int = 30
    # A buyer's page polls its order until the cards show: one every second or two.
    lookups: int = 120
    # A gateway sends every callback from a few addresses, so this one is generous.
    callbacks: int = 1200
    exempt: tuple[str, ...] = DEFAULT_EXEMPT

    def __post_init__(self) -> None:
        for kind in ENV:
            value = getattr(self, kind)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{ENV[kind]}: a rate limit is a whole number of requests per minute, >= 0")
        for network in self.exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{EXEMPT_ENV}: {network!r} is not an IP network") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimits:
        """KAMI_RATE_LIMIT_ORDERS, _LOOKUPS, _CALLBACKS (per minute) and _EXEMPT (comma-separated CIDRs)."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for kind, var in ENV.items():
            raw = source.get(var, "").strip()
            if raw:
                try:
                    values[kind] = int(raw)
                except ValueError:
                    raise ValueError(f"{var}: {raw!r} is not a whole number") from None
        if EXEMPT_ENV in source:
            values["exempt"] = tuple(n.strip() for n in source[EXEMPT_ENV].split(",") if n.strip())
        return cls(**values)

    @classmethod
    def off(cls) -> RateLimits:
        return cls(orders=0, lookups=0, callbacks=0)

    def limit(self, kind: Kind) -> int:
        value: int = getattr(self, kind)
        return value


class RateLimiter:
    """Token buckets per (kind, address), refilled continuously from an injected clock."""

    def __init__(self, limits: RateLimits, clock: MonotonicClock = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._exempt: list[Network] = [ipaddress.ip_network(n, strict=False) for n in limits.exempt]
        self._buckets: OrderedDict[tuple[Kind, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        # Parsing the peer's address and matching it against the exempt networks cost
        # more than the bucket itself; a client sends many requests from one address.
        self._address = functools.lru_cache(maxsize=ADDRESSES_REMEMBERED)(self._parse_address)

    def wait_for(self, kind: Kind, client: str | None) -> float:
        """Take one request from the bucket: 0 when allowed, else the seconds until it would be."""
        limit = self.limits.limit(kind)
        if limit == 0:
            return 0.0
        address = self._address(client)
        if address is None:
            return 0.0
        rate = limit / 60.0
        key = (kind, address)
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (float(limit), now))
            tokens = min(float(limit), tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / rate
            self._buckets.move_to_end(key)
            while len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        return wait

    def check(self, kind: Kind, client: str | None) -> None:
        """Raise RateLimited when this client has used up its limit of this kind."""
        wait = self.wait_for(kind, client)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many {WHAT[kind]} from this address; retry in {seconds} s", retry_after=seconds
            )

    def _parse_address(self, client: str | None) -> str | None:
        """The address to count against, or None when this client is not limited."""
        if not client:
            return None
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return None  # not an IP peer: a Unix socket, an in-process test client
        if any(ip in network for network in self._exempt):
            return None
        return ip.compressed


# Set in the scope of a request whose limit api.hot already applied before handing the
# request on to FastAPI (input it leaves to FastAPI): one request, one token.
COUNTED = "kami.rate_limit_counted"


async def rate_limit(request: Request) -> None:
    """App-wide dependency: applies the limit of the matched route, if it has one.

    Async, so it runs on the event loop before the route's worker thread is taken.
    """
    if COUNTED in request.scope:
        return
    route = request.scope.get("route")
    kind = LIMITED_ROUTES.get((request.method, getattr(route, "path", "")))
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if kind is None or limiter is None:
        return
    limiter.check(kind, request.client.host if request.client else None)


RATE_LIMITED_RESPONSE: dict[str, Any] = {
    "description": "Too many requests of this kind from this address (`rate_limited`); "
    "retry after `Retry-After` seconds.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            }
        }
    },
}


def document_rate_limits(app: FastAPI) -> None:
    """Add the 429 answer to the OpenAPI description of every limited route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for method, path in LIMITED_ROUTES:
            operation = schema.get("paths", {}).get(path, {}).get(method.lower())
            if operation is not None:
                operation.setdefault("responses", {})["429"] = RATE_LIMITED_RESPONSE
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
