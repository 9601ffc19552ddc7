"""The Order state machine: given its events, when a command, then new events or an error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.exceptions import AlreadyReviewed, InvalidInput, InvalidState
from domain.order import DELIVERED, EXPIRED, PAID, PENDING, REFUNDED, Order

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


def replay(events: list[Any]) -> Order:
    """Build an aggregate from past events alone: the 'given' of a test."""
    order = None
    for event in events:
        order = event.mutate(order)
    assert order is not None
    return order


def placed(delivery: str = "auto") -> list[Any]:
    order = Order.place(
        product_id=uuid4(),
        merchant_id=uuid4(),
        delivery=delivery,
        quantity=2,
        unit_price=450,
        contact=" buyer@example.com ",
        token_hash="h",
        promoter_chain=[],
        reservation=[[uuid4(), [str(uuid4()), str(uuid4())]]],
        expires_at=T0 + TTL,
        at=T0,
    )
    return order.collect_events()


def then(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


def history(state: str) -> list[Any]:
    """The events that bring an auto order into ``state``."""
    events = placed()
    order = replay(events)
    if state == EXPIRED:
        order.expire(T0 + TTL)
    if state in (PAID, DELIVERED, REFUNDED):
        order.record_payment("sandbox", "t1", order.amount, 500, [], T0 + timedelta(minutes=1))
    if state in (DELIVERED, REFUNDED):
        order.deliver([["c1", "sealed"], ["c2", "sealed"]], None, T0 + timedelta(minutes=1))
    if state == REFUNDED:
        order.refund("changed my mind", "merchant", T0 + timedelta(hours=1))
    events += order.collect_events()
    assert replay(events).status == state
    return events


LATER = T0 + timedelta(days=30)
COMMANDS: dict[str, Callable[[Order], None]] = {
    "pay": lambda o: o.record_payment("sandbox", "t9", o.amount, 500, [], LATER),
    "deliver": lambda o: o.deliver([["c1", "sealed"]], None, LATER),
    "expire": lambda o: o.expire(LATER),
    "refund": lambda o: o.refund("reason", "merchant", LATER),
    "review": lambda o: o.review(5, "great", LATER),
    "dispute": lambda o: o.dispute("broken key", LATER),
    "settle": lambda o: o.settle_commissions(LATER),
}
LEGAL = {
    PENDING: {"pay", "expire"},
    EXPIRED: {"pay"},
    PAID: {"deliver", "refund", "dispute", "settle"},
    DELIVERED: {"refund", "review", "dispute", "settle"},
    REFUNDED: set(),
}
ILLEGAL = [(state, command) for state in LEGAL for command in COMMANDS if command not in LEGAL[state]]


@pytest.mark.parametrize(("state", "command"), ILLEGAL)
def test_every_illegal_transition_raises_and_records_nothing(state: str, command: str) -> None:
    order = replay(history(state))
    with pytest.raises(InvalidState):
        COMMANDS[command](order)
    assert then(order) == []
    assert order.status == state


@pytest.mark.parametrize(("state", "command"), [(s, c) for s in LEGAL for c in sorted(LEGAL[s])])
def test_every_legal_transition_records_one_event(state: str, command: str) -> None:
    order = replay(history(state))
    COMMANDS[command](order)
    assert len(then(order)) == 1


def test_placing_an_order_quotes_its_amount_and_trims_the_contact() -> None:
    order = replay(placed())
    assert order.status == PENDING
    assert order.amount == 900
    assert order.contact == "buyer@example.com"
    assert len(order.reserved_card_ids) == 2


@pytest.mark.parametrize("contact", ["", "   ", "x" * 201])
def test_an_order_needs_a_contact(contact: str) -> None:
    with pytest.raises(InvalidInput):
        Order.place(
            product_id=uuid4(),
            merchant_id=uuid4(),
            delivery="auto",
            quantity=1,
            unit_price=1,
            contact=contact,
            token_hash="h",
            promoter_chain=[],
            reservation=[],
            expires_at=T0 + TTL,
            at=T0,
        )


def test_an_order_cannot_expire_before_its_deadline() -> None:
    order = replay(placed())
    with pytest.raises(InvalidState):
        order.expire(T0 + TTL - timedelta(seconds=1))
    order.expire(T0 + TTL)
    assert then(order) == ["Expired"]


def test_a_late_payment_on_an_expired_order_is_recorded() -> None:
    order = replay(history(EXPIRED))
    assert order.is_open()
    order.record_payment("sandbox", "late", order.amount, 500, [], LATER)
    assert then(order) == ["Paid"]
    assert order.status == PAID and order.txn_id == "late"


def test_payment_records_the_commissions_accrued() -> None:
    order = replay(placed())
    promoter = uuid4()
    order.record_payment("sandbox", "t1", order.amount, 500, [[promoter, 1, 45]], T0)
    assert order.commissions == [[promoter, 1, 45]]
    assert order.paid_at == T0


def test_a_paid_order_cannot_be_paid_again() -> None:
    order = replay(history(PAID))
    with pytest.raises(InvalidState):
        order.record_payment("sandbox", "t2", order.amount, 500, [], LATER)


def test_a_refund_returns_the_full_amount() -> None:
    order = replay(history(DELIVERED))
    order.refund("broken", "admin", LATER)
    assert then(order) == ["Refunded"]
    assert order.status == REFUNDED and order.refunded_amount == order.amount


def test_manual_delivery_needs_content() -> None:
    events = placed("manual")
    order = replay(events)
    order.record_payment("sandbox", "t1", order.amount, 500, [], T0)
    for bad in ("", "   ", "x" * 2001):
        with pytest.raises(InvalidInput):
            order.deliver([], bad, T0)
    order.deliver([], "your licence: ABC", T0)
    assert order.status == DELIVERED and order.content == "your licence: ABC"


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_a_rating_is_from_one_to_five(rating: int) -> None:
    order = replay(history(DELIVERED))
    with pytest.raises(InvalidInput):
        order.review(rating, "", LATER)
    assert then(order) == []


def test_an_order_is_reviewed_once() -> None:
    order = replay(history(DELIVERED))
    order.review(4, "ok", LATER)
    with pytest.raises(AlreadyReviewed):
        order.review(5, "better", LATER)
    assert order.rating == 4


def test_a_dispute_is_opened_once_and_resolved_once() -> None:
    order = replay(history(DELIVERED))
    with pytest.raises(InvalidState):
        order.resolve_dispute("nothing to resolve", LATER)
    with pytest.raises(InvalidInput):
        order.dispute("   ", LATER)
    order.dispute("key already used", LATER)
    with pytest.raises(InvalidState):
        order.dispute("again", LATER)
    order.resolve_dispute("replaced", LATER)
    with pytest.raises(InvalidState):
        order.resolve_dispute("again", LATER)
    assert then(order) == ["Disputed", "DisputeResolved"]


def test_commissions_settle_once() -> None:
    order = replay(history(DELIVERED))
    order.settle_commissions(LATER)
    with pytest.raises(InvalidState):
        order.settle_commissions(LATER)
    assert then(order) == ["CommissionsSettled"]
