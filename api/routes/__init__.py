"""One router per resource; `api_router` gathers them all."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    admin,
    appeals,
    audit,
    blacklist,
    catalog,
    dashboards,
    health,
    listing,
    me,
    merchants,
    metrics,
    orders,
    pages,
    payments,
    payouts,
    products,
    promoter_levels,
    promoters,
    scores,
)

api_router = APIRouter()
for module in (
    merchants,
    products,
    promoters,
    orders,
    payments,
    dashboards,
    payouts,
    catalog,
    audit,
    admin,
    health,
    scores,
    appeals,
    listing,
    promoter_levels,
    me,
    blacklist,
    pages,
    metrics,
):
    api_router.include_router(module.router)
