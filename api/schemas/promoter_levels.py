"""Promoter level responses."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Position


class LevelRowOut(BaseModel):
    level: int
    threshold: str = Field(description="Cumulative referred sales (yuan) from which the level applies.")
    level_one_rate_bps: int


class PromoterLevelOut(BaseModel):
    """A promoter's level, what it earns, and the next threshold."""

    promoter_id: UUID
    level: int
    level_one_rate_bps: int = Field(description="The sharer's commission rate at this level.")
    referred_sales: str = Field(
        description="Honoured payments of orders shared by the promoter, net of refunds (yuan)."
    )
    next_level: int | None
    next_threshold: str | None = Field(
        description="Referred sales (yuan) for the next level; null at the top."
    )
    to_next_level: str | None
    levels: list[LevelRowOut]
    position: Position
