"""Promoter payouts, read from the payouts projection."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import PromoterSelfOrAdmin, ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.schemas.readside import CommissionOut, PayoutsOut
from domain.money import format_yuan
from domain.promoter_levels import next_level
from projections.payouts import PayoutsProjection, promoter_payouts

router = APIRouter(prefix="/v1/promoters", tags=["promoters"])


@router.get(
    "/{promoter_id}/payouts",
    response_model=PayoutsOut,
    responses=error_responses(401, 403, 404, 422),
)
def get_payouts(
    promoter_id: PromoterSelfOrAdmin, shop: ShopDep, request: Request, after: After = None
) -> PayoutsOut:
    """The promoter's level, balances by status, referrals and commission history."""
    shop.get_promoter(promoter_id)  # 404 for a promoter that does not exist
    figures, position = read(
        request, PayoutsProjection, after, lambda c: promoter_payouts(c, promoter_id)
    )
    level = figures.level if figures is not None else 1
    above = next_level(level)
    ahead = {
        "next_level": above.level if above else None,
        "next_threshold": format_yuan(above.threshold) if above else None,
    }
    if figures is None:
        return PayoutsOut(
            promoter_id=promoter_id, level=1, pending="0.00", available="0.00",
            withdrawn="0.00", reversed="0.00", direct_referrals=0, indirect_referrals=0,
            position=position, history=[], **ahead,
        )  # fmt: skip
    return PayoutsOut(
        **ahead,
        promoter_id=promoter_id,
        level=figures.level,
        pending=format_yuan(figures.pending),
        available=format_yuan(figures.available),
        withdrawn=format_yuan(figures.withdrawn),
        reversed=format_yuan(figures.reversed),
        direct_referrals=figures.direct_referrals,
        indirect_referrals=figures.indirect_referrals,
        position=position,
        history=[
            CommissionOut(
                order_id=c.order_id, level=c.level, amount=format_yuan(c.amount), status=c.status
            )
            for c in figures.history
        ],
    )
