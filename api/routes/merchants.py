"""Merchants: registered by the admin."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin, ShopDep
from api.errors import error_responses
from api.schemas.merchants import MerchantCreate, MerchantCreated

router = APIRouter(prefix="/v1/merchants", tags=["merchants"])


@router.post(
    "",
    status_code=201,
    response_model=MerchantCreated,
    responses=error_responses(401, 403, 422),
)
def register_merchant(body: MerchantCreate, shop: ShopDep, _admin: Admin) -> MerchantCreated:
    """Register a merchant; its api_key is shown in this answer only."""
    result = shop.register_merchant(body.name, body.contact)
    return MerchantCreated(merchant_id=result.merchant_id, api_key=result.api_key, position=result.position)
