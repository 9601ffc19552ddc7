"""Promoter levels (分销等级): the level, its rate and the next threshold."""

from __future__ import annotations

from typing import Any, cast

import psycopg
from fastapi import APIRouter, Request

from api.deps import PromoterSelfOrAdmin, ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.schemas.promoter_levels import LevelRowOut, PromoterLevelOut
from consumers.promoter_levels import PromoterLevelManager, referred_sales
from domain.money import format_yuan
from domain.promoter_levels import LEVELS, level_one_rate_bps, next_level
from projections.base import Projection

router = APIRouter(prefix="/v1/promoters", tags=["promoters"])


class LevelsView:
    """The promoter-levels manager's counts, waited on like a read model: ``?after=``
    waits for the manager's own position."""

    read_model = "promoter_levels"
    name = PromoterLevelManager.name

    @classmethod
    def live(cls, conn: psycopg.Connection[Any]) -> LevelsView:
        return cls()


@router.get(
    "/{promoter_id}/level",
    response_model=PromoterLevelOut,
    responses=error_responses(401, 403, 404, 422),
)
def get_level(
    promoter_id: PromoterSelfOrAdmin, shop: ShopDep, request: Request, after: After = None
) -> PromoterLevelOut:
    """The promoter's level and level-1 commission rate (from the Promoter itself), its
    cumulative referred sales, and what the next level needs."""
    promoter = shop.get_promoter(promoter_id)  # 404 for a promoter that does not exist
    sales, position = read(
        request,
        cast("type[Projection[Any]]", LevelsView),
        after,
        lambda c: referred_sales(c, promoter_id),
    )
    upcoming = next_level(promoter.level)
    return PromoterLevelOut(
        promoter_id=promoter_id,
        level=promoter.level,
        level_one_rate_bps=level_one_rate_bps(promoter.level),
        referred_sales=format_yuan(sales),
        next_level=upcoming.level if upcoming else None,
        next_threshold=format_yuan(upcoming.threshold) if upcoming else None,
        to_next_level=format_yuan(max(0, upcoming.threshold - sales)) if upcoming else None,
        levels=[
            LevelRowOut(level=r.level, threshold=format_yuan(r.threshold), level_one_rate_bps=r.rate_bps)
            for r in LEVELS
        ],
        position=position,
    )
