"""The FastAPI application of kami's write side."""

from __future__ import annotations

from fastapi import FastAPI

from api.deps import Authenticator, PaymentKeys
from api.errors import install_error_handlers
from api.routes import api_router
from api.settings import ApiSettings
from kami.bootstrap import Kami

DESCRIPTION = """\
kami: an event-sourced card-key shop (发卡网).

Money is a decimal string in yuan (`"9.90"`); times are ISO 8601 UTC. Refused requests
answer `{"error": code, "detail": sentence}`. Every command answers with `position`, the
event-log position of its last event.
"""


def create_app(kami: Kami, settings: ApiSettings) -> FastAPI:
    """Build the app around an assembled Kami; the caller owns (and closes) the Kami."""
    app = FastAPI(
        title="kami",
        version="1.0.0",
        description=DESCRIPTION,
        # Operation ids are the route functions' names: short and stable for generated clients.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.kami = kami
    # Only digests of the bearer tokens are kept; the signing keys are needed as they are.
    app.state.authenticator = Authenticator(kami.shop, settings)
    app.state.payment_keys = PaymentKeys(sandbox=settings.payment_secret, epay=settings.epay_key)
    install_error_handlers(app)
    app.include_router(api_router)
    return app
