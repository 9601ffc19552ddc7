"""The deadline policy: which expiry and settlement deadlines each order event sets or cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from eventsourcing.utils import get_topic

from domain.deadlines import EXPIRE, SETTLE, TOPICS, Cancel, Schedule, deadlines_for
from domain.order import Order

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)
WINDOW = timedelta(days=7)
PAID_AT = T0 + timedelta(minutes=3)


def placed() -> Order:
    return Order.place(
        product_id=uuid4(),
        merchant_id=uuid4(),
        delivery="auto",
        quantity=1,
        unit_price=1000,
        contact="b@example.com",
        token_hash="h",
        promoter_chain=[],
        reservation=[],
        expires_at=T0 + TTL,
        at=T0,
    )


def events_of(order: Order) -> list[Any]:
    return order.collect_events()


def test_a_placed_order_gets_an_expiry_deadline() -> None:
    order = placed()
    (event,) = events_of(order)
    assert deadlines_for(event, WINDOW) == [Schedule(EXPIRE, order.id, T0 + TTL)]


def test_payment_with_commissions_cancels_expiry_and_schedules_settlement() -> None:
    order = placed()
    events_of(order)
    order.record_payment("sandbox", "t", order.amount, 500, [[uuid4(), 1, 50]], PAID_AT)
    (event,) = events_of(order)
    assert deadlines_for(event, WINDOW) == [
        Cancel(EXPIRE, order.id),
        Schedule(SETTLE, order.id, PAID_AT + WINDOW),
    ]


def test_payment_without_commissions_only_cancels_expiry() -> None:
    order = placed()
    events_of(order)
    order.record_payment("sandbox", "t", order.amount, 500, [], PAID_AT)
    (event,) = events_of(order)
    assert deadlines_for(event, WINDOW) == [Cancel(EXPIRE, order.id)]


def test_expiry_refund_and_settlement_cancel_their_deadlines() -> None:
    expired = placed()
    expired.expire(T0 + TTL)
    assert deadlines_for(events_of(expired)[-1], WINDOW) == [Cancel(EXPIRE, expired.id)]

    order = placed()
    order.record_payment("sandbox", "t", order.amount, 500, [[uuid4(), 1, 50]], PAID_AT)
    order.deliver([["c", "s"]], None, PAID_AT)
    order.settle_commissions(PAID_AT + WINDOW)
    order.refund("r", "admin", PAID_AT + WINDOW)
    *_, delivered, settled, refunded = events_of(order)
    assert deadlines_for(delivered, WINDOW) == []
    assert deadlines_for(settled, WINDOW) == [Cancel(SETTLE, order.id)]
    assert deadlines_for(refunded, WINDOW) == [Cancel(EXPIRE, order.id), Cancel(SETTLE, order.id)]


def test_the_policy_topics_name_the_real_event_classes() -> None:
    classes = [Order.Placed, Order.Paid, Order.Expired, Order.Refunded, Order.CommissionsSettled]
    assert set(TOPICS) == {get_topic(cls) for cls in classes}
