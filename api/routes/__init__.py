"""One router per resource; ``ROUTERS`` lists them in the order the app includes them."""

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

# The app includes each router itself: a router of routers is one more level that
# FastAPI walks, route by route, on every request. The buyers' hot path (placing,
# paying, reading an order) comes first, so that it is matched after a few routes rather
# than after the whole API; no other router serves a path under theirs.
ROUTERS: tuple[APIRouter, ...] = tuple(
    module.router
    for module in (
        orders,
        payments,
        merchants,
        products,
        promoters,
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
    )
)
