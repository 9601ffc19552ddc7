"""What Shop commands and aggregate reads return: plain frozen dataclasses, money in fen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class MerchantCreated:
    merchant_id: UUID
    api_key: str
    position: int


@dataclass(frozen=True)
class ProductCreated:
    product_id: UUID
    position: int


@dataclass(frozen=True)
class CardsImported:
    imported: int
    duplicates: int
    stock: int
    card_ids: list[UUID]
    position: int


@dataclass(frozen=True)
class WholesaleTier:
    min_qty: int
    price: int


@dataclass(frozen=True)
class ProductView:
    product_id: UUID
    merchant_id: UUID
    title: str
    price: int
    delivery: str
    stock: int
    wholesale: list[WholesaleTier]
    max_per_order: int | None
    listed: bool


@dataclass(frozen=True)
class PromoterJoined:
    promoter_id: UUID
    code: str
    token: str
    position: int


@dataclass(frozen=True)
class OrderPlaced:
    order_id: UUID
    token: str
    amount: int
    unit_price: int
    quantity: int
    expires_at: datetime
    position: int


@dataclass(frozen=True)
class PaymentResult:
    order_id: UUID
    status: str
    duplicate: bool
    position: int


@dataclass(frozen=True)
class OrderView:
    order_id: UUID
    product_id: UUID
    merchant_id: UUID
    status: str
    amount: int
    unit_price: int
    quantity: int
    placed_at: datetime
    expires_at: datetime
    cards: list[str] | None = None
    content: str | None = None
    rating: int | None = None
    disputed: bool = False


@dataclass(frozen=True)
class Done:
    """A command that returns nothing but its log position."""

    position: int
    status: str | None = None


@dataclass(frozen=True)
class WithdrawalRequested:
    withdrawal_id: UUID
    position: int


@dataclass(frozen=True)
class Balances:
    available: int
    withdrawn: int
    extra: dict[str, int] = field(default_factory=dict)
