"""Referral commissions (分销): the sharer earns level 1, the sharer's referrer level 2, never more.

The level-1 rate depends on the sharer's promoter level (domain.promoter_levels, the one
table of those rates); the level-2 rate is flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.money import share
from domain.promoter_levels import BASE_LEVEL, level_one_rate_bps

MAX_LEVELS = 2

# Basis points of the order amount, by referral level, for a sharer at the base
# promoter level; a sharer's higher level raises level 1 only.
LEVEL_RATE_BPS: dict[int, int] = {1: level_one_rate_bps(BASE_LEVEL), 2: 200}


@dataclass(frozen=True)
class Commission:
    promoter_id: UUID
    level: int
    amount: int


def commissions_for(amount: int, chain: list[UUID], sharer_level: int = BASE_LEVEL) -> list[Commission]:
    """The chain lists the sharer first, then its referrer; anything beyond is ignored.
    ``sharer_level`` is the sharer's promoter level when the order is paid."""
    rates = {**LEVEL_RATE_BPS, 1: level_one_rate_bps(sharer_level)}
    result: list[Commission] = []
    seen: set[UUID] = set()
    for level, promoter_id in enumerate(chain[:MAX_LEVELS], start=1):
        if promoter_id in seen:
            break
        seen.add(promoter_id)
        value = share(amount, rates[level])
        if value > 0:
            result.append(Commission(promoter_id, level, value))
    return result
