"""Orders: placed by anyone, read and reviewed by their buyer, served by their merchant."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query

from api.deps import AdminOrMerchant, CurrentMerchant, ShopDep
from api.errors import error_responses
from api.offload import in_thread
from api.schemas.common import PositionOut
from api.schemas.orders import (
    DeliveryCreate,
    DisputeCreate,
    DisputeResolve,
    OrderCreate,
    OrderMerchantView,
    OrderPlaced,
    OrderPublic,
    RefundCreate,
    ReviewCreate,
    StatusOut,
)
from domain.money import format_yuan
from domain.results import Done, OrderView
from domain.shop import Shop

router = APIRouter(prefix="/v1/orders", tags=["orders"])

OrderId = Annotated[UUID, Path(description="The order's id.")]
# A wrong or missing token answers 404, like an unknown order: nothing leaks.
BuyerToken = Annotated[
    str | None, Query(max_length=200, description="The buyer token returned when the order was placed.")
]


def _status(done: Done) -> StatusOut:
    return StatusOut.model_validate({"status": done.status, "position": done.position})


def _merchant_view(view: OrderView) -> dict[str, object]:
    return {
        "order_id": view.order_id,
        "product_id": view.product_id,
        "status": view.status,
        "amount": format_yuan(view.amount),
        "unit_price": format_yuan(view.unit_price),
        "quantity": view.quantity,
        "placed_at": view.placed_at,
        "expires_at": view.expires_at,
        "rating": view.rating,
        "disputed": view.disputed,
    }


# Retrying a placement whose answer was lost (a 503, a dropped connection) is safe with a key.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="A random key (a UUID) naming this placement: the same key again answers "
        "with the same order and token; with a different request, 422 `idempotency_key_reused`.",
    ),
]


@router.post("", status_code=201, response_model=OrderPlaced, responses=error_responses(403, 404, 409, 422))
async def place_order(
    body: OrderCreate, shop: ShopDep, idempotency_key: IdempotencyKey = None
) -> OrderPlaced:
    """Place an order; its cards are reserved until `expires_at`.

    A buyer whose contact the merchant or the platform blacklisted gets 403 `buyer_blacklisted`.
    """
    return await place(shop, body, idempotency_key)


async def place(shop: Shop, body: OrderCreate, idempotency_key: str | None) -> OrderPlaced:
    """What ``place_order`` does once its input is valid; api.hot calls it too."""
    # The hot path is async with the Shop's blocking call sent to the thread pool by hand:
    # a sync route costs two hops to the pool (the call, then FastAPI's validation of the
    # answer), and each hop costs more CPU than the validation itself.
    result = await in_thread(
        shop.place_order, body.product_id, body.quantity, body.contact, body.promoter_code, idempotency_key
    )
    return OrderPlaced(
        order_id=result.order_id,
        token=result.token,
        amount=format_yuan(result.amount),
        unit_price=format_yuan(result.unit_price),
        quantity=result.quantity,
        expires_at=result.expires_at,
        position=result.position,
    )


@router.get(
    "/{order_id}",
    response_model=OrderPublic,
    response_model_exclude_none=True,
    responses=error_responses(404, 422),
)
async def get_order(order_id: OrderId, shop: ShopDep, token: BuyerToken = None) -> OrderPublic:
    """The buyer's order, consistent with every command that has returned; cards once delivered."""
    return await buyer_order(shop, order_id, token)


async def buyer_order(shop: Shop, order_id: UUID, token: str | None) -> OrderPublic:
    """What ``get_order`` does once its input is valid; api.hot calls it too."""
    # Async with one hop to the pool, like place_order: buyers poll this route.
    view = await in_thread(shop.get_order, order_id, token)
    return OrderPublic.model_validate(_merchant_view(view) | {"cards": view.cards, "content": view.content})


@router.get(
    "/{order_id}/merchant-view",
    response_model=OrderMerchantView,
    responses=error_responses(401, 403, 404, 422),
)
def get_order_for_merchant(
    order_id: OrderId, shop: ShopDep, merchant_id: AdminOrMerchant
) -> OrderMerchantView:
    """An order as its merchant (or the admin) sees it, without the goods."""
    view = shop.get_order_for_merchant(order_id, merchant_id)
    return OrderMerchantView.model_validate(_merchant_view(view))


@router.post(
    "/{order_id}/deliver",
    response_model=StatusOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def deliver_order(
    order_id: OrderId, body: DeliveryCreate, shop: ShopDep, merchant_id: CurrentMerchant
) -> StatusOut:
    """Deliver a paid order of manually delivered goods."""
    return _status(shop.deliver_manual(merchant_id, order_id, body.content))


@router.post(
    "/{order_id}/review",
    response_model=PositionOut,
    responses=error_responses(404, 409, 422),
)
def review_order(
    order_id: OrderId, body: ReviewCreate, shop: ShopDep, token: BuyerToken = None
) -> PositionOut:
    """Rate a delivered order, once."""
    result = shop.review_order(order_id, token, body.rating, body.comment)
    return PositionOut(position=result.position)


@router.post(
    "/{order_id}/dispute",
    status_code=201,
    response_model=PositionOut,
    responses=error_responses(404, 409, 422),
)
def dispute_order(
    order_id: OrderId, body: DisputeCreate, shop: ShopDep, token: BuyerToken = None
) -> PositionOut:
    """Open a dispute on a paid order."""
    result = shop.dispute_order(order_id, token, body.reason)
    return PositionOut(position=result.position)


@router.post(
    "/{order_id}/dispute/resolve",
    response_model=PositionOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def resolve_dispute(
    order_id: OrderId, body: DisputeResolve, shop: ShopDep, merchant_id: AdminOrMerchant
) -> PositionOut:
    """Close the order's open dispute."""
    result = shop.resolve_dispute(merchant_id, order_id, body.resolution)
    return PositionOut(position=result.position)


@router.post(
    "/{order_id}/refund",
    response_model=StatusOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def refund_order(
    order_id: OrderId, body: RefundCreate, shop: ShopDep, merchant_id: AdminOrMerchant
) -> StatusOut:
    """Refund a paid order, by its merchant or the admin."""
    return _status(shop.refund_order(order_id, body.reason, merchant_id))
