"""Promoters (分销): joining, their balance, and withdrawals."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PromoterSelf, PromoterSelfOrAdmin, ShopDep
from api.errors import error_responses
from api.schemas.promoters import (
    PromoterCreate,
    PromoterJoined,
    PromoterPublic,
    WithdrawalCreate,
    WithdrawalCreated,
)
from domain.money import format_yuan

router = APIRouter(prefix="/v1/promoters", tags=["promoters"])


@router.post("", status_code=201, response_model=PromoterJoined, responses=error_responses(422))
def join_promoter(body: PromoterCreate, shop: ShopDep) -> PromoterJoined:
    """Join as a promoter; the token is shown in this answer only."""
    # A blank referrer code means none, as an absent one does.
    referrer = (body.referrer_code or "").strip() or None
    result = shop.join_promoter(body.name, body.contact, referrer)
    return PromoterJoined(
        promoter_id=result.promoter_id, code=result.code, token=result.token, position=result.position
    )


@router.get(
    "/{promoter_id}",
    response_model=PromoterPublic,
    responses=error_responses(401, 403, 404, 422),
)
def get_promoter(promoter_id: PromoterSelfOrAdmin, shop: ShopDep) -> PromoterPublic:
    """The promoter's code and balances, read from the aggregate itself."""
    promoter = shop.get_promoter(promoter_id)
    return PromoterPublic(
        promoter_id=promoter.id,
        name=promoter.name,
        code=promoter.code,
        referrer_id=promoter.referrer_id,
        available=format_yuan(promoter.available),
        withdrawn=format_yuan(promoter.withdrawn),
    )


@router.post(
    "/{promoter_id}/withdrawals",
    status_code=201,
    response_model=WithdrawalCreated,
    responses=error_responses(401, 403, 404, 409, 422),
)
def request_withdrawal(promoter_id: PromoterSelf, body: WithdrawalCreate, shop: ShopDep) -> WithdrawalCreated:
    """Withdraw from the available balance; 409 `insufficient_balance` when it is short."""
    result = shop.request_withdrawal(promoter_id, body.amount)
    return WithdrawalCreated(withdrawal_id=result.withdrawal_id, position=result.position)
