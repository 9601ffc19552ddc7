"""Who am I: the caller's role and id, so a page can tell which dashboard its key opens."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Caller, ShopDep
from api.errors import error_responses
from api.schemas.me import MeOut

router = APIRouter(prefix="/v1", tags=["me"])


@router.get("/me", response_model=MeOut, responses=error_responses(401))
def get_me(caller: Caller, shop: ShopDep) -> MeOut:
    """The role, id and name the bearer token proves."""
    name = None
    if caller.role == "merchant" and caller.id is not None:
        name = shop.get_merchant(caller.id).name
    elif caller.role == "promoter" and caller.id is not None:
        name = shop.get_promoter(caller.id).name
    return MeOut(role=caller.role, id=caller.id, name=name)
