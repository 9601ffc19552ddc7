"""Wholesale pricing (批发价) and order quantity limits."""

from __future__ import annotations

import pytest

from domain.exceptions import InvalidInput, OverLimit
from domain.pricing import MAX_QUANTITY, check_quantity, check_tiers, unit_price

TIERS = [(10, 800), (50, 700)]


@pytest.mark.parametrize(
    ("quantity", "price"), [(1, 990), (9, 990), (10, 800), (49, 800), (50, 700), (1000, 700)]
)
def test_unit_price_falls_to_the_highest_tier_the_quantity_reaches(quantity: int, price: int) -> None:
    assert unit_price(990, TIERS, quantity) == price


def test_without_tiers_every_quantity_pays_the_list_price() -> None:
    assert unit_price(990, [], 500) == 990


def test_tiers_are_returned_sorted_by_quantity() -> None:
    assert check_tiers(990, [(50, 700), (10, 800)]) == [(10, 800), (50, 700)]


@pytest.mark.parametrize(
    "tiers",
    [
        [(1, 800)],  # a tier must start above a single item
        [(0, 800)],
        [(10, 800), (10, 700)],  # two tiers at one quantity
        [(10, 0)],
        [(10, -1)],
        [(10, 991)],  # dearer than the list price
        [(10, 700), (50, 800)],  # price rises with quantity
    ],
)
def test_refuses_invalid_wholesale_tiers(tiers: list[tuple[int, int]]) -> None:
    with pytest.raises(InvalidInput):
        check_tiers(990, tiers)


def test_a_tier_may_equal_the_list_price() -> None:
    assert check_tiers(990, [(5, 990)]) == [(5, 990)]


@pytest.mark.parametrize("quantity", [0, -1])
def test_quantity_must_be_at_least_one(quantity: int) -> None:
    with pytest.raises(InvalidInput):
        check_quantity(quantity, None)


def test_quantity_over_the_products_maximum_is_over_limit() -> None:
    check_quantity(5, 5)
    with pytest.raises(OverLimit):
        check_quantity(6, 5)


def test_without_a_maximum_the_hard_ceiling_applies() -> None:
    check_quantity(MAX_QUANTITY, None)
    with pytest.raises(OverLimit):
        check_quantity(MAX_QUANTITY + 1, None)
