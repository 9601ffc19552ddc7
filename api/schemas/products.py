"""Product and card-stock requests and responses."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Count, Name, Position, RequestModel, Text, Yuan

MAX_CARDS_PER_IMPORT = 10_000
CardText = Annotated[str, Field(min_length=1, max_length=512)]


class WholesaleTierIn(RequestModel):
    """From `min_qty` units on, each costs `price`."""

    min_qty: Count
    price: Yuan


class ProductCreate(RequestModel):
    """List a product for sale."""

    title: Name
    price: Yuan
    delivery: Literal["auto", "manual"]
    wholesale: Annotated[list[WholesaleTierIn], Field(max_length=20)] = []
    max_per_order: Count | None = None


class ProductCreated(BaseModel):
    """The listed product."""

    product_id: UUID
    position: Position


class CardsImport(RequestModel):
    """Card keys to add to an auto-delivered product's stock."""

    cards: Annotated[list[CardText], Field(min_length=1, max_length=MAX_CARDS_PER_IMPORT)]


class CardsImported(BaseModel):
    """What the import added; duplicates of stocked cards are skipped."""

    imported: int
    duplicates: int
    stock: int
    card_ids: list[UUID]
    position: Position


class WholesaleTierOut(BaseModel):
    """A wholesale price step."""

    min_qty: int
    price: str


class ProductPublic(BaseModel):
    """A product as anyone may see it, read from the aggregate itself."""

    product_id: UUID
    merchant_id: UUID
    title: str
    price: str
    delivery: str
    stock: int
    wholesale: list[WholesaleTierOut]
    max_per_order: int | None
    listed: bool


class PriceChange(RequestModel):
    """A new list price."""

    price: Yuan


class CardVoid(RequestModel):
    """Why a card is withdrawn from sale."""

    reason: Text = ""
