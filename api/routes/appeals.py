"""Appeals (申诉): a merchant asks for its tier and restrictions to be re-evaluated."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path

from api.deps import CurrentMerchant, ShopDep
from api.errors import error_responses
from api.schemas.scores import AppealCreate, AppealCreated
from domain.exceptions import Forbidden

router = APIRouter(prefix="/v1/merchants", tags=["scores"])


def merchant_self(
    merchant_id: Annotated[UUID, Path(description="The merchant's id.")], merchant: CurrentMerchant
) -> UUID:
    """The merchant named in the path, when it is the caller."""
    if merchant != merchant_id:
        raise Forbidden("a merchant may act only on its own account")
    return merchant


MerchantSelf = Annotated[UUID, Depends(merchant_self)]


@router.post(
    "/{merchant_id}/appeal",
    status_code=201,
    response_model=AppealCreated,
    responses=error_responses(401, 403, 404, 409, 422),
)
def file_appeal(merchant_id: MerchantSelf, body: AppealCreate, shop: ShopDep) -> AppealCreated:
    """Record an appeal; the tiering process re-scores the merchant at once and decides it.

    An appeal can only help: a band above the tier is granted at once, and restrictions
    are lifted at a score of 50 or more. One appeal at a time (409 while one is open),
    and 14 days between one and the next (409).
    """
    result = shop.file_appeal(merchant_id, body.reason)
    return AppealCreated(appeal_id=result.appeal_id, position=result.position)
