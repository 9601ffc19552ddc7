"""Request and response models: money strings, strict counts, UTC times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest
from pydantic import ValidationError

from api.schemas.orders import OrderCreate, OrderPlaced, ReviewCreate
from api.schemas.payments import SandboxNotification
from api.schemas.products import ProductCreate


def product(**fields: object) -> dict[str, object]:
    return {"title": "t", "price": "9.90", "delivery": "auto"} | fields


@pytest.mark.parametrize(("text", "fen"), [("9.90", 990), ("10", 1000), ("0.01", 1), ("1.5", 150)])
def test_money_arrives_as_yuan_text_and_is_held_in_fen(text: str, fen: int) -> None:
    assert ProductCreate.model_validate(product(price=text)).price == fen


@pytest.mark.parametrize("bad", ["abc", "1.234", "-1", "0", "0.00", "", "01.00", "1e2", "¥1", 9.9, 10, None])
def test_bad_money_is_refused_as_invalid_money(bad: object) -> None:
    with pytest.raises(ValidationError) as caught:
        ProductCreate.model_validate(product(price=bad))

    assert caught.value.errors()[0]["type"] == "invalid_money"


@pytest.mark.parametrize("quantity", [0, -1, "1", 1.0, True, None])
def test_a_quantity_is_a_positive_json_integer(quantity: object) -> None:
    with pytest.raises(ValidationError):
        OrderCreate.model_validate({"product_id": str(uuid4()), "quantity": quantity, "contact": "c"})


@pytest.mark.parametrize("rating", [0, 6, "5", 4.5])
def test_a_rating_is_an_integer_from_one_to_five(rating: object) -> None:
    with pytest.raises(ValidationError):
        ReviewCreate.model_validate({"rating": rating})


def test_unknown_fields_of_a_client_request_are_refused() -> None:
    with pytest.raises(ValidationError):
        ProductCreate.model_validate(product(colour="red"))


def test_unknown_fields_of_a_provider_callback_are_ignored() -> None:
    note = SandboxNotification.model_validate(
        {"order_id": str(uuid4()), "amount": "1.00", "txn_id": "t", "channel": "alipay"}
    )

    assert note.amount == 100


def test_times_are_rendered_in_utc_with_a_z() -> None:
    beijing = timezone(timedelta(hours=8))
    placed = OrderPlaced(
        order_id=uuid4(),
        token="t",
        amount="1.00",
        unit_price="1.00",
        quantity=1,
        expires_at=datetime(2026, 1, 1, 20, 0, tzinfo=beijing),
        position=1,
    )

    assert placed.model_dump(mode="json")["expires_at"] == "2026-01-01T12:00:00Z"
    assert placed.model_dump(mode="json")["status"] == "pending"
