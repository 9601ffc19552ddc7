"""Recommendations (关联推荐): what buyers of a product also bought."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from api.deps import ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.schemas.readside import AlsoBoughtItem, AlsoBoughtOut
from projections.also_bought import AlsoBoughtProjection, also_bought

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get(
    "/{product_id}/also-bought", response_model=AlsoBoughtOut, responses=error_responses(404, 422)
)
def get_also_bought(
    product_id: UUID, shop: ShopDep, request: Request, after: After = None
) -> AlsoBoughtOut:
    """Products that this product's buyers also paid for, most orders first."""
    shop.get_product(product_id)  # 404 for a product that does not exist
    items, position = read(
        request, AlsoBoughtProjection, after, lambda c: also_bought(c, product_id)
    )
    return AlsoBoughtOut(
        product_id=product_id,
        items=[AlsoBoughtItem(product_id=i.product_id, title=i.title, orders=i.orders) for i in items],
        position=position,
    )
