"""One router per resource; `api_router` gathers them all."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    admin,
    audit,
    catalog,
    dashboards,
    health,
    merchants,
    orders,
    payments,
    payouts,
    products,
    promoters,
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
):
    api_router.include_router(module.router)
