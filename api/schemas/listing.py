"""The product listing's responses."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Position, UtcDatetime
from api.schemas.scores import Tier

Sort = Literal["recommended", "newest", "price_asc", "price_desc", "sales"]


class ListedProductOut(BaseModel):
    product_id: UUID
    merchant_id: UUID
    title: str
    price: str
    delivery: Literal["auto", "manual"]
    listed_at: UtcDatetime
    merchant_tier: Tier
    sold_30d: int = Field(description="Units sold in the last 30 days, net of refunds.")
    reviews: int
    good_review_rate: float | None = Field(description="Reviews rated 4 or 5 / reviews; null without any.")
    rank: float = Field(description="The recommended ranking's score (domain.ranking); higher first.")


class ListingOut(BaseModel):
    """One page of the products that can be bought."""

    sort: Sort
    total: int
    items: list[ListedProductOut]
    position: Position
