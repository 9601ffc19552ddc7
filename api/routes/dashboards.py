"""Merchant dashboards, read from the dashboard projection."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request

from api.deps import Caller, ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.schemas.readside import DashboardOut, DayOut, ProductFiguresOut
from domain.exceptions import Forbidden
from domain.money import format_yuan
from projections.dashboard import DashboardProjection, merchant_dashboard

router = APIRouter(prefix="/v1/merchants", tags=["dashboards"])


def merchant_self_or_admin(
    merchant_id: Annotated[UUID, Path(description="The merchant's id.")], caller: Caller
) -> UUID:
    """The merchant named in the path, when the caller is that merchant or the admin."""
    if caller.role == "admin" or (caller.role == "merchant" and caller.id == merchant_id):
        return merchant_id
    raise Forbidden("only this merchant or an admin may read this")


MerchantSelfOrAdmin = Annotated[UUID, Depends(merchant_self_or_admin)]


@router.get(
    "/{merchant_id}/dashboard",
    response_model=DashboardOut,
    responses=error_responses(401, 403, 404, 422),
)
def get_dashboard(
    merchant_id: MerchantSelfOrAdmin, shop: ShopDep, request: Request, after: After = None
) -> DashboardOut:
    """The merchant's sales, refunds, buyers, reviews, stock and daily series."""
    shop.get_merchant(merchant_id)  # 404 for a merchant that does not exist
    figures, position = read(
        request, DashboardProjection, after, lambda c: merchant_dashboard(c, merchant_id)
    )
    if figures is None:
        # Known to the store but not yet to the view: an empty dashboard at this position.
        return DashboardOut(
            merchant_id=merchant_id, position=position, gmv="0.00", orders_paid=0,
            orders_refunded=0, refund_amount="0.00", platform_fees="0.00",
            net_revenue="0.00", avg_ticket="0.00", buyers=0, repeat_buyers=0,
            repeat_rate=0.0, reviews=0, avg_rating=0.0, good_review_rate=0.0, disputes=0,
            disputes_resolved=0, products=[], daily=[],
        )  # fmt: skip
    return DashboardOut(
        merchant_id=merchant_id,
        position=position,
        gmv=format_yuan(figures.gmv),
        orders_paid=figures.orders_paid,
        orders_refunded=figures.orders_refunded,
        refund_amount=format_yuan(figures.refund_amount),
        platform_fees=format_yuan(figures.platform_fees),
        net_revenue=format_yuan(figures.net_revenue),
        avg_ticket=format_yuan(figures.avg_ticket),
        buyers=figures.buyers,
        repeat_buyers=figures.repeat_buyers,
        repeat_rate=figures.repeat_rate,
        reviews=figures.reviews,
        avg_rating=figures.avg_rating,
        good_review_rate=figures.good_review_rate,
        disputes=figures.disputes,
        disputes_resolved=figures.disputes_resolved,
        products=[
            ProductFiguresOut(product_id=p.product_id, title=p.title, stock=p.stock, sold=p.sold)
            for p in figures.products
        ],
        daily=[
            DayOut(date=d.date, gmv=format_yuan(d.gmv), orders_paid=d.orders_paid)
            for d in figures.daily
        ],
    )
