"""GET /metrics: the read side's lag and dead letters, appends, request latencies."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from api.metrics import CONTENT_TYPE, RequestLatencies, render
from api.readside import pool_of
from consumers.status import collect

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."}},
)
def get_metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics: positions, lag and dead letters per consumer, events appended,
    request latencies per route. Open to anyone, like /healthz."""
    shop = request.app.state.kami.shop
    with pool_of(request).connection() as conn:
        status = collect(conn, shop.recorder.events_table_name, shop.mapper)
    latencies: RequestLatencies | None = getattr(request.app.state, "request_latencies", None)
    body = render(status, shop.appended.counts(), latencies or RequestLatencies())
    return PlainTextResponse(body, media_type=CONTENT_TYPE)
