"""Score inputs: 30-day windows summed from daily buckets, as of any day, against what
the test did on each day of a 45-day story."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from consumers.runner import LogRunner
from domain.clock import ManualClock
from domain.exceptions import InvalidState
from kami.bootstrap import Kami
from projections.score_inputs import ScoreInputs, ScoreInputsProjection, all_score_inputs, score_inputs

PROVIDER = "sandbox"


@pytest.fixture
def runner(kami: Kami) -> Iterator[LogRunner]:
    projection = ScoreInputsProjection(1_000 + secrets.randbelow(10**6))
    yield LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, [projection])
    with kami.pool.connection() as conn:
        projection.drop_tables(conn)
        conn.execute("DELETE FROM kami_tracking WHERE name = %s", (projection.name,))


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def test_windows_sum_the_days_they_cover(kami: Kami, clock: ManualClock, runner: LogRunner) -> None:
    shop = kami.shop
    tag = uuid4().hex[:8]

    def buy(product_id: UUID, quantity: int, who: str) -> UUID:
        placed = shop.place_order(product_id, quantity, f"{who}+{tag}@example.com")
        shop.record_payment(PROVIDER, placed.order_id, uuid4().hex, placed.amount)
        tokens[placed.order_id] = placed.token
        return placed.order_id

    tokens: dict[UUID, str] = {}
    # Day 0 starts at 09:00 so that a few hours later is still the same day.
    start = (clock() + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    clock.set(start)
    day0 = utc_day(start)
    merchant_id = shop.register_merchant(f"m-{tag}", "m@example.com").merchant_id
    x = shop.list_product(merchant_id, "Game card", 1000, "auto").product_id
    card_ids = shop.import_cards(merchant_id, x, [uuid4().hex for _ in range(50)]).card_ids

    alice_1 = buy(x, 1, "alice")
    bob = buy(x, 2, "bob")
    shop.review_order(alice_1, tokens[alice_1], 5, "")
    shop.review_order(bob, tokens[bob], 3, "")
    shop.dispute_order(bob, tokens[bob], "slow")
    clock.advance(timedelta(hours=2))
    shop.resolve_dispute(merchant_id, bob, "resent")  # in time; due on day 1

    clock.set(start + timedelta(days=10))
    shop.list_product(merchant_id, "Custom logo", 5000, "manual")
    alice_2 = buy(x, 1, "alice")  # a returning buyer
    carol = buy(x, 1, "carol")
    shop.refund_order(carol, "wrong region", merchant_id)
    shop.dispute_order(alice_2, tokens[alice_2], "invalid code")
    clock.advance(timedelta(hours=30))
    shop.resolve_dispute(merchant_id, alice_2, "resent")  # late; was due on day 11

    clock.set(start + timedelta(days=45))
    buy(x, 1, "dave")
    for card_id in card_ids:  # void the first card that is still free
        try:
            shop.void_card(merchant_id, x, card_id, "leaked")
            break
        except InvalidState:
            continue

    runner.catch_up()
    version = runner.consumers[0].version  # type: ignore[attr-defined]

    def inputs(days_after_start: int) -> ScoreInputs:
        with kami.pool.connection() as conn:
            return score_inputs(conn, merchant_id, day0 + timedelta(days=days_after_start), version=version)

    day10 = inputs(10)
    assert (day10.sales, day10.orders, day10.avg_ticket) == (5000, 4, 1250)
    assert (day10.repeat_orders, day10.repurchase_rate) == (1, 1 / 4)
    assert (day10.refunds, day10.refund_amount, day10.refund_rate) == (1, 1000, 1 / 4)
    assert (day10.reviews, day10.good_reviews, day10.good_review_rate) == (2, 1, 1 / 2)
    assert (day10.disputes, day10.dispute_rate) == (2, 2 / 4)
    assert (day10.disputes_due, day10.disputes_resolved_in_time, day10.resolved_within_24h) == (1, 1, 1.0)
    assert day10.new_products == 2
    assert (day10.cards_sold, day10.cards_on_hand, day10.sell_through) == (5, 45, 5 / 50)

    day11 = inputs(11)
    assert (day11.disputes_due, day11.disputes_resolved_in_time, day11.resolved_within_24h) == (2, 1, 1 / 2)
    assert day11.sales == 5000

    day40 = inputs(40)  # days 11..40: only the late dispute falls due
    assert (day40.sales, day40.orders, day40.avg_ticket, day40.dispute_rate) == (0, 0, None, None)
    assert (day40.disputes_due, day40.resolved_within_24h) == (1, 0.0)
    assert (day40.cards_sold, day40.cards_on_hand, day40.sell_through) == (0, 45, 0.0)
    assert day40.good_review_rate is None

    day45 = inputs(45)
    assert (day45.sales, day45.orders, day45.repeat_orders, day45.new_products) == (1000, 1, 0, 0)
    assert (day45.cards_sold, day45.cards_on_hand, day45.sell_through) == (1, 43, 1 / 44)
    assert (day45.disputes_due, day45.resolved_within_24h, day45.refund_rate) == (0, None, 0.0)

    with kami.pool.connection() as conn:
        everyone = all_score_inputs(conn, day0 + timedelta(days=45), version=version)
        assert [i for i in everyone if i.merchant_id == merchant_id] == [day45]
        # Before the merchant existed there is nothing to score.
        before = score_inputs(conn, merchant_id, day0 - timedelta(days=1), version=version)
        assert (before.sales, before.cards_on_hand, before.sell_through) == (0, 0, None)
