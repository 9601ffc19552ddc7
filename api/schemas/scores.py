"""Merchant score, tier and appeal requests and responses."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Position, RequestModel, UtcDatetime

Tier = Literal["core", "growth", "basic", "watch"]


class ComponentOut(BaseModel):
    """One component of the score: its raw value, the points it earned, its weight."""

    name: str
    description: str
    unit: Literal["yuan", "rate", "count"]
    # Money in yuan as a decimal string, rates between 0 and 1, counts; null: no data.
    raw: str | float | int | None
    points: float
    weight: int
    # The raw values at which the component earns nothing and its whole weight.
    none_at: str | float | int
    full_at: str | float | int


class GainOut(BaseModel):
    """Points a component still has to give."""

    component: str
    points: float


class NextTierOut(BaseModel):
    """What the merchant needs to reach the tier above its own."""

    tier: Tier
    min_score: float
    points_needed: float = Field(description="How far the score is below the tier's band.")
    evaluations_needed: int = Field(
        description="Evaluations in a row in that band that would move the merchant there."
    )
    gains: list[GainOut] = Field(description="Where the most points are left, most first.")


class RestrictionsOut(BaseModel):
    """What a failed rectification, or the watch tier, puts on the merchant."""

    order_limit: int | None = Field(description="Units per order while restricted; null: none.")
    withdrawals_held: bool
    withdrawal_review: bool = Field(description="Withdrawals are reviewed (watch tier, or held).")


class EvaluationOut(BaseModel):
    """The tiering process's last evaluation of the merchant."""

    score: float
    band: Tier
    at: UtcDatetime


class AppealStateOut(BaseModel):
    open: bool
    last_outcome: Literal["upheld", "rejected"] | None
    last_filed_at: UtcDatetime | None


class ScoreOut(BaseModel):
    """The merchant's score now (30 days to `as_of`), its tier and what it needs next."""

    merchant_id: UUID
    as_of: date
    window_days: int
    score: float = Field(ge=0, le=100)
    band: Tier = Field(description="The band the score falls in now; the tier moves by the tier rules.")
    tier: Tier
    fee_rate_bps: int = Field(description="The platform fee in force, in basis points of each payment.")
    percentile: float | None = Field(
        description="Share of active merchants (a paid order in the window) scoring lower, ties "
        "counting half, in percent; null when no merchant is active."
    )
    active_merchants: int
    components: list[ComponentOut]
    next_tier: NextTierOut | None
    grace_until: UtcDatetime
    rectification_due: UtcDatetime | None
    restrictions: RestrictionsOut
    last_evaluation: EvaluationOut | None
    appeal: AppealStateOut
    position: Position


class AppealCreate(RequestModel):
    """Appeal the merchant's tier or restrictions; the appeal is re-evaluated at once."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class AppealCreated(BaseModel):
    """The recorded appeal; its decision shows in the score's `appeal` once made."""

    appeal_id: UUID
    position: Position
