"""Products: validated when listed, quoted per quantity, delisted for good."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from domain.exceptions import InvalidInput, OverLimit, ProductUnavailable
from domain.product import MAX_TITLE, Product

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def replay(events: list[Any]) -> Product:
    product = None
    for event in events:
        product = event.mutate(product)
    assert product is not None
    return product


def listed(**overrides: Any) -> list[Any]:
    args: dict[str, Any] = {
        "merchant_id": uuid4(),
        "title": "Steam 100",
        "price": 990,
        "delivery": "auto",
        "wholesale": [(10, 800)],
        "max_per_order": 20,
        "at": T0,
    }
    args.update(overrides)
    return Product.create(**args).collect_events()


def test_a_listed_product_keeps_its_terms() -> None:
    product = replay(listed(title="  Steam 100 "))
    assert product.title == "Steam 100"
    assert product.price == 990 and product.delivery == "auto"
    assert product.wholesale == [(10, 800)] and product.max_per_order == 20
    assert product.listed


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * (MAX_TITLE + 1)},
        {"price": 0},
        {"price": -100},
        {"delivery": "email"},
        {"max_per_order": 0},
        {"wholesale": [(10, 1000)]},
        {"wholesale": [(1, 800)]},
    ],
)
def test_an_invalid_product_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        listed(**overrides)


def test_quotes_follow_the_wholesale_tiers() -> None:
    product = replay(listed())
    assert product.quote(1) == 990
    assert product.quote(10) == 800


def test_a_quote_over_the_maximum_per_order_is_over_limit() -> None:
    product = replay(listed())
    with pytest.raises(OverLimit):
        product.quote(21)
    with pytest.raises(InvalidInput):
        product.quote(0)


def test_a_delisted_product_cannot_be_quoted() -> None:
    product = replay(listed())
    product.delist(T0)
    product.delist(T0)
    assert [type(e).__name__ for e in product.collect_events()] == ["Delisted"]
    with pytest.raises(ProductUnavailable):
        product.quote(1)


def test_a_price_change_is_recorded_once_and_must_stay_above_the_tiers() -> None:
    product = replay(listed())
    product.change_price(990, T0)
    assert product.collect_events() == []
    with pytest.raises(InvalidInput):
        product.change_price(700, T0)  # below the 10+ tier of 8.00
    with pytest.raises(InvalidInput):
        product.change_price(0, T0)
    product.change_price(1200, T0)
    assert [type(e).__name__ for e in product.collect_events()] == ["PriceChanged"]
    assert product.quote(1) == 1200 and product.quote(10) == 800
