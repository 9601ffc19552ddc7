"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ShopDep
from api.errors import error_responses
from api.schemas.health import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, responses=error_responses())
def healthz(shop: ShopDep) -> HealthOut:
    """The API is up and its event store answers."""
    return HealthOut(position=shop.position())
