"""Buyer blacklists (risk control): a merchant's for its own products, the admin's for all.

Read from the Blacklist aggregates themselves, like products: consistent with every
command that has returned. Adding a listed buyer, or removing one that is not listed,
changes nothing and answers `changed: false`, so a retried request is harmless.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin, Caller, ShopDep
from api.errors import error_responses
from api.routes.dashboards import MerchantSelfOrAdmin
from api.schemas.blacklist import (
    BlacklistAdd,
    BlacklistChangedOut,
    BlacklistEntryOut,
    BlacklistOut,
    BlacklistRemove,
)
from domain.blacklist import BlacklistChanged, BlacklistView

router = APIRouter(tags=["blacklist"])


def _by(caller: Caller) -> str:
    """Who changed a merchant's list: the merchant itself, or the admin on its behalf."""
    return "admin" if caller.role == "admin" else "merchant"


def _changed(result: BlacklistChanged) -> BlacklistChangedOut:
    return BlacklistChangedOut(contact=result.contact, changed=result.changed, position=result.position)


def _listed(view: BlacklistView) -> BlacklistOut:
    return BlacklistOut(
        merchant_id=view.merchant_id,
        entries=[
            BlacklistEntryOut.model_validate(
                {"contact": e.contact, "reason": e.reason, "by": e.by, "added_at": e.added_at}
            )
            for e in view.entries
        ],
        position=view.position,
    )


@router.get(
    "/v1/merchants/{merchant_id}/blacklist",
    response_model=BlacklistOut,
    responses=error_responses(401, 403, 404, 422),
)
def get_merchant_blacklist(merchant_id: MerchantSelfOrAdmin, shop: ShopDep) -> BlacklistOut:
    """The buyers this merchant refuses."""
    return _listed(shop.get_blacklist(merchant_id))


@router.post(
    "/v1/merchants/{merchant_id}/blacklist",
    response_model=BlacklistChangedOut,
    responses=error_responses(401, 403, 404, 422),
)
def add_to_merchant_blacklist(
    merchant_id: MerchantSelfOrAdmin, body: BlacklistAdd, shop: ShopDep, caller: Caller
) -> BlacklistChangedOut:
    """Refuse a buyer's orders for this merchant's products (by the merchant or the admin)."""
    return _changed(shop.blacklist_buyer(merchant_id, body.contact, body.reason, _by(caller)))


@router.post(
    "/v1/merchants/{merchant_id}/blacklist/remove",
    response_model=BlacklistChangedOut,
    responses=error_responses(401, 403, 404, 422),
)
def remove_from_merchant_blacklist(
    merchant_id: MerchantSelfOrAdmin, body: BlacklistRemove, shop: ShopDep, caller: Caller
) -> BlacklistChangedOut:
    """Accept a buyer's orders again. A POST with a body, so contacts stay out of access logs."""
    return _changed(shop.unblacklist_buyer(merchant_id, body.contact, _by(caller)))


@router.get("/v1/admin/blacklist", response_model=BlacklistOut, responses=error_responses(401, 403))
def get_platform_blacklist(_: Admin, shop: ShopDep) -> BlacklistOut:
    """The buyers the whole platform refuses."""
    return _listed(shop.get_blacklist(None))


@router.post(
    "/v1/admin/blacklist", response_model=BlacklistChangedOut, responses=error_responses(401, 403, 422)
)
def add_to_platform_blacklist(_: Admin, body: BlacklistAdd, shop: ShopDep) -> BlacklistChangedOut:
    """Refuse a buyer's orders everywhere."""
    return _changed(shop.blacklist_buyer(None, body.contact, body.reason))


@router.post(
    "/v1/admin/blacklist/remove",
    response_model=BlacklistChangedOut,
    responses=error_responses(401, 403, 422),
)
def remove_from_platform_blacklist(_: Admin, body: BlacklistRemove, shop: ShopDep) -> BlacklistChangedOut:
    """Accept a buyer's orders again, platform-wide."""
    return _changed(shop.unblacklist_buyer(None, body.contact))
