"""Answers of the query routes: figures read from projections, with their position."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Position, UtcDatetime

Money = str  # yuan as a decimal string, "9.90"; negative where an account is owed


class ProductFiguresOut(BaseModel):
    product_id: UUID
    title: str
    stock: int
    sold: int


class DayOut(BaseModel):
    date: date
    gmv: Money
    orders_paid: int


class DashboardOut(BaseModel):
    """A merchant's dashboard: every figure as of `position`."""

    merchant_id: UUID
    position: Position
    gmv: Money
    orders_paid: int
    orders_refunded: int
    refund_amount: Money
    platform_fees: Money
    net_revenue: Money
    avg_ticket: Money
    buyers: int
    repeat_buyers: int
    repeat_rate: float = Field(ge=0, le=1)
    reviews: int
    avg_rating: float
    good_review_rate: float = Field(ge=0, le=1)
    disputes: int
    disputes_resolved: int
    products: list[ProductFiguresOut]
    daily: list[DayOut]


class CommissionOut(BaseModel):
    order_id: UUID
    level: int
    amount: Money
    status: str


class PayoutsOut(BaseModel):
    """A promoter's commissions and referrals as of `position`."""

    promoter_id: UUID
    level: int
    pending: Money
    available: Money
    withdrawn: Money
    reversed: Money
    direct_referrals: int
    indirect_referrals: int
    next_level: int | None = None
    next_threshold: Money | None = Field(
        default=None, description="Referred sales (yuan) at which the next level starts."
    )
    position: Position
    history: list[CommissionOut]


class LedgerOut(BaseModel):
    """Balances per account (positive: held by the platform; negative: owed)."""

    as_of: UtcDatetime | None
    accounts: dict[str, Money]
    total: Money
    position: Position


class VerifyOut(BaseModel):
    """The hash chain recomputed over the stored events."""

    ok: bool
    events_checked: int
    head: str | None
    broken_at: int | None
    head_position: int


class AlsoBoughtItem(BaseModel):
    product_id: UUID
    title: str
    orders: int


class AlsoBoughtOut(BaseModel):
    product_id: UUID
    items: list[AlsoBoughtItem]
    position: Position


class OverviewOut(BaseModel):
    """The platform at a glance, for the admin."""

    gmv: Money
    orders_placed: int
    orders_paid: int
    orders_refunded: int
    refund_amount: Money
    platform_fees: Money
    take_rate: float
    merchants: int
    merchants_by_tier: dict[str, int]
    products: int
    promoters: int
    position: Position
