"""The product listing (商品列表), read from the listing projection.

Its own router on ``/v1/products`` beside products.py: ``GET /v1/products`` shares its
path with ``POST /v1/products`` but not its method, and Starlette matches a route by
path and method, so neither hides the other; ``/v1/products/{product_id}`` is another
path altogether.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request

from api.deps import ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.schemas.listing import ListedProductOut, ListingOut, Sort
from domain.money import format_yuan
from projections.listing import ListingProjection, product_listing

router = APIRouter(prefix="/v1/products", tags=["products"])

SortQuery = Annotated[Sort, Query(description="recommended: tier, quality, sales and new merchants")]


@router.get("", response_model=ListingOut, responses=error_responses(422))
def list_products(
    shop: ShopDep,
    request: Request,
    sort: SortQuery = "recommended",
    merchant_id: Annotated[UUID | None, Query(description="Only this merchant's products.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    after: After = None,
) -> ListingOut:
    """Products that can be bought. `recommended` ranks by the merchant's tier, the good-review
    rate blended with recent sales, and a boost for new merchants (domain.ranking)."""
    now = shop.clock()
    listing, position = read(
        request,
        ListingProjection,
        after,
        lambda c: product_listing(c, now, sort=sort, merchant_id=merchant_id, limit=limit, offset=offset),
    )
    return ListingOut(
        sort=sort,
        total=listing.total,
        items=[
            ListedProductOut(
                product_id=p.product_id,
                merchant_id=p.merchant_id,
                title=p.title,
                price=format_yuan(p.price),
                delivery=p.delivery,
                listed_at=p.listed_at,
                merchant_tier=p.merchant_tier,
                sold_30d=p.units_sold,
                reviews=p.reviews,
                good_review_rate=p.good_reviews / p.reviews if p.reviews else None,
                rank=p.rank,
            )
            for p in listing.items
        ],
        position=position,
    )
