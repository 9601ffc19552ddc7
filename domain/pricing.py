"""Wholesale pricing (批发价): the unit price falls with the quantity ordered."""

from __future__ import annotations

from collections.abc import Sequence

from domain.exceptions import InvalidInput, OverLimit

MAX_QUANTITY = 1000  # a hard ceiling for products that set no max_per_order


def check_tiers(price: int, tiers: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Tiers sorted by quantity; each must start above 1 and cost less than the list price."""
    ordered = sorted(tiers)
    seen: set[int] = set()
    for min_qty, tier_price in ordered:
        if min_qty < 2:
            raise InvalidInput("a wholesale tier starts at a quantity of 2 or more")
        if min_qty in seen:
            raise InvalidInput(f"two wholesale tiers start at quantity {min_qty}")
        if tier_price <= 0 or tier_price > price:
            raise InvalidInput("a wholesale price must be positive and at most the list price")
        seen.add(min_qty)
    prices = [p for _, p in ordered]
    if prices != sorted(prices, reverse=True):
        raise InvalidInput("wholesale prices must not rise with quantity")
    return ordered


def unit_price(price: int, tiers: Sequence[tuple[int, int]], quantity: int) -> int:
    best = price
    for min_qty, tier_price in tiers:
        if quantity >= min_qty:
            best = min(best, tier_price)
    return best


def check_quantity(quantity: int, max_per_order: int | None) -> None:
    if quantity < 1:
        raise InvalidInput("quantity must be at least 1")
    limit = max_per_order or MAX_QUANTITY
    if quantity > limit:
        raise OverLimit(f"at most {limit} per order")
