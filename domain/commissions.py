"""Referral commissions (分销): the sharer earns level 1, the sharer's referrer level 2, never more."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.money import share

MAX_LEVELS = 2

# Basis points of the order amount, by referral level.
LEVEL_RATE_BPS: dict[int, int] = {1: 500, 2: 200}


@dataclass(frozen=True)
class Commission:
    promoter_id: UUID
    level: int
    amount: int


def commissions_for(amount: int, chain: list[UUID]) -> list[Commission]:
    """The chain lists the sharer first, then its referrer; anything beyond is ignored."""
    result: list[Commission] = []
    seen: set[UUID] = set()
    for level, promoter_id in enumerate(chain[:MAX_LEVELS], start=1):
        if promoter_id in seen:
            break
        seen.add(promoter_id)
        value = share(amount, LEVEL_RATE_BPS[level])
        if value > 0:
            result.append(Commission(promoter_id, level, value))
    return result
