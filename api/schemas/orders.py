"""Order requests and responses, for buyers and for merchants."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Contact, Count, Position, RequestModel, Text, UtcDatetime

OrderStatus = Literal["pending", "paid", "delivered", "expired", "refunded"]


class OrderCreate(RequestModel):
    """Buy `quantity` units of a product; a promoter's code earns them a commission."""

    product_id: UUID
    quantity: Count
    contact: Annotated[Contact, Field(min_length=1)]
    promoter_code: Annotated[str, Field(max_length=64)] | None = None


class OrderPlaced(BaseModel):
    """A pending order holding its cards until `expires_at`; `token` is shown this once."""

    order_id: UUID
    token: str
    amount: str
    unit_price: str
    quantity: int
    status: Literal["pending"] = "pending"
    expires_at: UtcDatetime
    position: Position


class OrderMerchantView(BaseModel):
    """An order as its merchant sees it: never the goods themselves."""

    order_id: UUID
    product_id: UUID
    status: OrderStatus
    amount: str
    unit_price: str
    quantity: int
    placed_at: UtcDatetime
    expires_at: UtcDatetime
    rating: int | None = None
    disputed: bool = False


class OrderPublic(OrderMerchantView):
    """An order as its buyer sees it; `cards` or `content` appear once it is delivered."""

    cards: list[str] | None = None
    content: str | None = None


class DeliveryCreate(RequestModel):
    """The goods of a manually delivered order."""

    content: Annotated[str, Field(min_length=1, max_length=2000)]


class StatusOut(BaseModel):
    """A command that moved an order: its new status and log position."""

    status: OrderStatus
    position: Position


class ReviewCreate(RequestModel):
    """The buyer's rating of a delivered order."""

    rating: Annotated[int, Field(strict=True, ge=1, le=5)]
    comment: Text = ""


class DisputeCreate(RequestModel):
    """Why the buyer disputes the order."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DisputeResolve(RequestModel):
    """How the dispute was settled."""

    resolution: Text = ""


class RefundCreate(RequestModel):
    """Why the order is refunded."""

    reason: Text
