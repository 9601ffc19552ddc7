"""The FastAPI application of kami's write side."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from api.deps import Authenticator, PaymentKeys
from api.errors import install_error_handlers
from api.hot import HotRoutes
from api.metrics import RequestLatencies, RequestMetrics
from api.ratelimit import MonotonicClock, RateLimiter, document_rate_limits, rate_limit
from api.routes import ROUTERS
from api.settings import ApiSettings
from kami.bootstrap import Kami

DESCRIPTION = """\
kami: an event-sourced card-key shop (发卡网).

Money is a decimal string in yuan (`"9.90"`); times are ISO 8601 UTC. Refused requests
answer `{"error": code, "detail": sentence}`. Every command answers with `position`, the
event-log position of its last event.
"""


class KamiApp(FastAPI):
    """FastAPI with api.hot's fast path for the buyers' hot routes in front of it."""

    def build_middleware_stack(self) -> ASGIApp:
        # Built on the first request, once every route is included.
        return HotRoutes(super().build_middleware_stack(), self, ROUTERS)


def create_app(
    kami: Kami,
    settings: ApiSettings,
    *,
    rate_clock: MonotonicClock = time.monotonic,
    hot_routes: bool = True,
) -> FastAPI:
    """Build the app around an assembled Kami; the caller owns (and closes) the Kami.

    ``rate_clock`` drives the rate limits' buckets: tests pass a clock they move.
    ``hot_routes=False`` leaves every request to FastAPI: tests compare both answers.
    """
    app = (KamiApp if hot_routes else FastAPI)(
        title="kami",
        version="1.0.0",
        description=DESCRIPTION,
        # Operation ids are the route functions' names: short and stable for generated clients.
        generate_unique_id_function=lambda route: route.name,
        # Per-IP limits of the routes in api.ratelimit.LIMITED_ROUTES; a no-op elsewhere.
        dependencies=[Depends(rate_limit)],
        # FastAPI's own OpenTelemetry hooks: kami exports its figures at /metrics and
        # configures no OpenTelemetry provider, and the check whether one is configured
        # ran on every request (3 to 4% of the event loop's time under load).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.kami = kami
    # Only digests of the bearer tokens are kept; the signing keys are needed as they are.
    app.state.authenticator = Authenticator(kami.shop, settings)
    app.state.payment_keys = PaymentKeys(sandbox=settings.payment_secret, epay=settings.epay_key)
    app.state.rate_limiter = RateLimiter(settings.rate_limits, rate_clock)
    install_error_handlers(app)
    # Request latencies per route template for /metrics (outside the handlers' errors).
    app.state.request_latencies = RequestLatencies()
    app.add_middleware(RequestMetrics, latencies=app.state.request_latencies)
    for router in ROUTERS:
        app.include_router(router)
    document_rate_limits(app)
    return app
