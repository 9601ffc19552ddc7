"""Merchant scores and tiers (分层管理), from the score inputs read model and the Merchant."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Request

from api.deps import ShopDep
from api.errors import error_responses
from api.readside import After, read
from api.routes.dashboards import MerchantSelfOrAdmin
from api.schemas.scores import (
    AppealStateOut,
    ComponentOut,
    EvaluationOut,
    GainOut,
    NextTierOut,
    RestrictionsOut,
    ScoreOut,
)
from domain.merchant import Merchant
from domain.money import format_yuan
from domain.scoring import COMPONENTS, Breakdown, headroom, percentile
from domain.scoring import score as score_of
from domain.tiering import DEFAULT_POLICY, band_for, day_of, next_tier, state_of
from projections.score_inputs import (
    WINDOW_DAYS,
    ScoreInputs,
    ScoreInputsProjection,
    all_score_inputs,
    score_inputs,
)

router = APIRouter(prefix="/v1/merchants", tags=["scores"])

MONEY_COMPONENTS = frozenset({"monthly_sales", "average_ticket"})
COUNT_COMPONENTS = frozenset({"compliance", "new_product_frequency"})
GAINS_SHOWN = 3


def _standing(
    conn: psycopg.Connection[Any], merchant_id: UUID, as_of: date
) -> tuple[ScoreInputs, list[float]]:
    """The merchant's figures, and the scores of the other active merchants (a paid order
    in the window). Their compliance is taken as clean: restrictions are each Merchant's
    to know, and loading every Merchant per request would not scale."""
    everyone = all_score_inputs(conn, as_of)
    own = next((i for i in everyone if i.merchant_id == merchant_id), None)
    others = [score_of(i, 0).score for i in everyone if i.orders and i.merchant_id != merchant_id]
    return own or score_inputs(conn, merchant_id, as_of), others


def _unit(name: str) -> str:
    return "yuan" if name in MONEY_COMPONENTS else "count" if name in COUNT_COMPONENTS else "rate"


def _shown(name: str, value: float) -> str | float | int:
    """A raw value as the API shows it: money in yuan, counts as integers, rates as numbers."""
    if name in MONEY_COMPONENTS:
        return format_yuan(int(value))
    if name in COUNT_COMPONENTS:
        return int(value)
    return float(value)


def _components(b: Breakdown) -> list[ComponentOut]:
    out = []
    for p in b.components:
        c = COMPONENTS[p.name]
        out.append(
            ComponentOut(
                name=p.name, description=c.what, unit=_unit(p.name),
                raw=None if p.raw is None else _shown(p.name, p.raw), points=p.points, weight=p.weight,
                none_at=_shown(p.name, c.none_at), full_at=_shown(p.name, c.full_at),
            )
        )  # fmt: skip
    return out


def _restrictions(merchant: Merchant) -> RestrictionsOut:
    return RestrictionsOut(
        order_limit=merchant.order_limit,
        withdrawals_held=merchant.withdrawals_held,
        withdrawal_review=merchant.withdrawals_need_review,
    )


@router.get(
    "/{merchant_id}/score",
    response_model=ScoreOut,
    responses=error_responses(401, 403, 404, 422),
)
def get_score(
    merchant_id: MerchantSelfOrAdmin, shop: ShopDep, request: Request, after: After = None
) -> ScoreOut:
    """The merchant's score now, per component, its tier, percentile and what the next tier needs.

    The score is computed as the tiering process computes it, from the score inputs
    read model (30 days ending today) and the Merchant's own restrictions; the tier,
    restrictions, rectification and appeal are the Merchant's, always current.
    """
    merchant = shop.get_merchant(merchant_id)  # 404 for a merchant that does not exist
    now = shop.clock()
    today = day_of(now)
    (figures, population), position = read(
        request, ScoreInputsProjection, after, lambda c: _standing(c, merchant_id, today)
    )
    b = score_of(figures, merchant.violations)
    if figures.orders:
        population = [*population, b.score]
    # The next evaluation falls on a later day, where today's counts as the previous one.
    upcoming = next_tier(state_of(merchant, today + timedelta(days=1)), b.score, DEFAULT_POLICY)
    last = (
        EvaluationOut(score=merchant.last_score, band=merchant.last_band, at=merchant.last_evaluated_at)
        if merchant.last_score is not None and merchant.last_band and merchant.last_evaluated_at
        else None
    )
    return ScoreOut(
        merchant_id=merchant_id,
        as_of=today,
        window_days=WINDOW_DAYS,
        score=b.score,
        band=band_for(b.score),
        tier=merchant.tier,
        fee_rate_bps=merchant.fee_rate_bps,
        percentile=percentile(b.score, population),
        active_merchants=len(population),
        components=_components(b),
        next_tier=NextTierOut(
            tier=upcoming.tier,
            min_score=upcoming.min_score,
            points_needed=upcoming.points_needed,
            evaluations_needed=upcoming.evaluations_needed,
            gains=[GainOut(component=n, points=p) for n, p in headroom(b)[:GAINS_SHOWN]],
        )
        if upcoming is not None
        else None,
        grace_until=merchant.registered_at + DEFAULT_POLICY.grace,
        rectification_due=merchant.rectification_due,
        restrictions=_restrictions(merchant),
        last_evaluation=last,
        appeal=AppealStateOut(
            open=merchant.open_appeal is not None,
            last_outcome=merchant.last_appeal_outcome,
            last_filed_at=merchant.last_appeal_at,
        ),
        position=position,
    )
