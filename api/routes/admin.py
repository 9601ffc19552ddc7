"""The admin's platform overview."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Admin
from api.errors import error_responses
from api.readside import After, read
from api.schemas.readside import OverviewOut
from domain.money import format_yuan
from projections.overview import OverviewProjection, platform_overview

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/overview", response_model=OverviewOut, responses=error_responses(401, 403, 422))
def get_overview(_: Admin, request: Request, after: After = None) -> OverviewOut:
    """GMV, orders, merchants per tier and the platform's take rate."""
    o, position = read(request, OverviewProjection, after, platform_overview)
    return OverviewOut(
        gmv=format_yuan(o.gmv),
        orders_placed=o.orders_placed,
        orders_paid=o.orders_paid,
        orders_refunded=o.orders_refunded,
        refund_amount=format_yuan(o.refund_amount),
        platform_fees=format_yuan(o.platform_fees),
        take_rate=o.take_rate,
        merchants=o.merchants,
        merchants_by_tier=o.merchants_by_tier,
        products=o.products,
        promoters=o.promoters,
        position=position,
    )
