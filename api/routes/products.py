"""Products and their card stock."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from api.deps import CurrentMerchant, ShopDep
from api.errors import error_responses
from api.schemas.common import PositionOut
from api.schemas.products import (
    CardsImport,
    CardsImported,
    CardVoid,
    PriceChange,
    ProductCreate,
    ProductCreated,
    ProductPublic,
    WholesaleTierOut,
)
from domain.money import format_yuan

router = APIRouter(prefix="/v1/products", tags=["products"])

ProductId = Annotated[UUID, Path(description="The product's id.")]
CardId = Annotated[UUID, Path(description="The card's id, as returned by the import.")]


@router.post(
    "",
    status_code=201,
    response_model=ProductCreated,
    responses=error_responses(401, 403, 404, 422),
)
def list_product(body: ProductCreate, shop: ShopDep, merchant_id: CurrentMerchant) -> ProductCreated:
    """List a product of the calling merchant."""
    result = shop.list_product(
        merchant_id,
        body.title,
        body.price,
        body.delivery,
        [(tier.min_qty, tier.price) for tier in body.wholesale],
        body.max_per_order,
    )
    return ProductCreated(product_id=result.product_id, position=result.position)


@router.get("/{product_id}", response_model=ProductPublic, responses=error_responses(404, 422))
def get_product(product_id: ProductId, shop: ShopDep) -> ProductPublic:
    """A product with its current stock, read from the aggregates themselves."""
    view = shop.get_product(product_id)
    return ProductPublic(
        product_id=view.product_id,
        merchant_id=view.merchant_id,
        title=view.title,
        price=format_yuan(view.price),
        delivery=view.delivery,
        stock=view.stock,
        wholesale=[WholesaleTierOut(min_qty=t.min_qty, price=format_yuan(t.price)) for t in view.wholesale],
        max_per_order=view.max_per_order,
        listed=view.listed,
    )


@router.post(
    "/{product_id}/cards",
    response_model=CardsImported,
    responses=error_responses(401, 403, 404, 409, 422),
)
def import_cards(
    product_id: ProductId, body: CardsImport, shop: ShopDep, merchant_id: CurrentMerchant
) -> CardsImported:
    """Add card keys to the stock of an auto-delivered product the merchant owns."""
    result = shop.import_cards(merchant_id, product_id, body.cards)
    return CardsImported(
        imported=result.imported,
        duplicates=result.duplicates,
        stock=result.stock,
        card_ids=result.card_ids,
        position=result.position,
    )


@router.post(
    "/{product_id}/cards/{card_id}/void",
    response_model=PositionOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def void_card(
    product_id: ProductId, card_id: CardId, body: CardVoid, shop: ShopDep, merchant_id: CurrentMerchant
) -> PositionOut:
    """Withdraw one unsold card from sale."""
    result = shop.void_card(merchant_id, product_id, card_id, body.reason)
    return PositionOut(position=result.position)


@router.post(
    "/{product_id}/price",
    response_model=PositionOut,
    responses=error_responses(401, 403, 404, 422),
)
def change_price(
    product_id: ProductId, body: PriceChange, shop: ShopDep, merchant_id: CurrentMerchant
) -> PositionOut:
    """Change the list price; orders already placed keep theirs."""
    result = shop.change_price(merchant_id, product_id, body.price)
    return PositionOut(position=result.position)


@router.post(
    "/{product_id}/delist",
    response_model=PositionOut,
    responses=error_responses(401, 403, 404, 422),
)
def delist_product(product_id: ProductId, shop: ShopDep, merchant_id: CurrentMerchant) -> PositionOut:
    """Stop selling a product; orders already placed are unaffected."""
    result = shop.delist_product(merchant_id, product_id)
    return PositionOut(position=result.position)
