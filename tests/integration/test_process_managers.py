"""Order expiry and commission settlement run from events and the injected clock."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from consumers.deadlines import DeadlineManager
from consumers.promoter_levels import PromoterLevelManager
from consumers.runner import LogRunner
from domain.clock import ManualClock
from domain.commissions import LEVEL_RATE_BPS
from domain.money import share
from kami.bootstrap import Kami, build
from tests.support.databases import fresh_database


def _setup(kami: Kami, cards: int = 3) -> tuple[object, object]:
    shop = kami.shop
    merchant = shop.register_merchant(f"m-{uuid4().hex[:6]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, "Top-up", 1000, "auto")
    shop.import_cards(merchant.merchant_id, product.product_id, [uuid4().hex for _ in range(cards)])
    return merchant, product


def _managers(kami: Kami) -> tuple[LogRunner, DeadlineManager]:
    manager = DeadlineManager(kami.shop, kami.pool)
    return LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, [manager]), manager


def test_an_unpaid_order_expires_when_the_clock_passes_its_deadline(
    kami: Kami, clock: ManualClock
) -> None:
    shop = kami.shop
    _, product = _setup(kami)
    order = shop.place_order(product.product_id, 2, "buyer@example.com")
    runner, manager = _managers(kami)
    runner.catch_up()

    clock.advance(timedelta(minutes=14))
    manager.tick()
    assert shop.get_order(order.order_id, order.token).status == "pending"

    clock.advance(timedelta(minutes=2))
    assert manager.tick() >= 1
    assert shop.get_order(order.order_id, order.token).status == "expired"
    assert shop.get_product(product.product_id).stock == 3

    runner.catch_up()
    assert manager.tick() == 0  # the Expired event cancelled the deadline


def test_a_paid_order_is_not_expired(kami: Kami, clock: ManualClock) -> None:
    shop = kami.shop
    _, product = _setup(kami)
    order = shop.place_order(product.product_id, 1, "buyer@example.com")
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    runner, manager = _managers(kami)
    runner.catch_up()
    clock.advance(timedelta(hours=1))
    manager.tick()
    assert shop.get_order(order.order_id, order.token).status == "delivered"


def test_commissions_settle_once_the_after_sales_window_closes(
    kami: Kami, clock: ManualClock
) -> None:
    shop = kami.shop
    _, product = _setup(kami)
    referrer = shop.join_promoter("Ann", "ann@example.com")
    sharer = shop.join_promoter("Bob", "bob@example.com", referrer.code)
    order = shop.place_order(product.product_id, 1, "buyer@example.com", sharer.code)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    runner, manager = _managers(kami)
    runner.catch_up()

    clock.advance(timedelta(days=6, hours=23))
    manager.tick()
    assert shop.get_promoter(sharer.promoter_id).available == 0

    clock.advance(timedelta(hours=2))
    manager.tick()
    assert shop.get_promoter(sharer.promoter_id).available == share(order.amount, LEVEL_RATE_BPS[1])
    assert shop.get_promoter(referrer.promoter_id).available == share(order.amount, LEVEL_RATE_BPS[2])
    runner.catch_up()
    assert manager.tick() == 0


def test_a_refund_inside_the_window_cancels_the_settlement(kami: Kami, clock: ManualClock) -> None:
    shop = kami.shop
    merchant, product = _setup(kami)
    sharer = shop.join_promoter("Cy", "cy@example.com")
    order = shop.place_order(product.product_id, 1, "buyer@example.com", sharer.code)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    shop.refund_order(order.order_id, "wrong region", merchant.merchant_id)
    runner, manager = _managers(kami)
    runner.catch_up()
    clock.advance(timedelta(days=8))
    manager.tick()
    assert shop.get_promoter(sharer.promoter_id).available == 0


def _deadlines(kami: Kami, order_id: object) -> set[str]:
    with kami.pool.connection() as conn:
        rows = conn.execute("SELECT kind FROM pm_deadlines WHERE order_id = %s", (order_id,)).fetchall()
    return {kind for (kind,) in rows}


def test_within_one_batch_each_deadline_ends_as_its_last_event_says(kami: Kami) -> None:
    # Placed schedules the expiry, Paid cancels it and schedules the settlement: one
    # catch-up reads all three orders' events in a single batch.
    shop = kami.shop
    _, product = _setup(kami, cards=3)
    sharer = shop.join_promoter("Di", "di@example.com")
    paid = shop.place_order(product.product_id, 1, "a@example.com", sharer.code)
    shop.record_payment("sandbox", paid.order_id, uuid4().hex, paid.amount)
    pending = shop.place_order(product.product_id, 1, "b@example.com")
    refunded = shop.place_order(product.product_id, 1, "c@example.com", sharer.code)
    shop.record_payment("sandbox", refunded.order_id, uuid4().hex, refunded.amount)
    runner, _ = _managers(kami)
    runner.catch_up()
    assert _deadlines(kami, paid.order_id) == {"settle"}
    assert _deadlines(kami, pending.order_id) == {"expire"}
    assert _deadlines(kami, refunded.order_id) == {"settle"}

    # A later batch cancels what an earlier one scheduled.
    merchant_id = shop.get_order_for_merchant(refunded.order_id, None).merchant_id
    shop.refund_order(refunded.order_id, "wrong region", merchant_id)
    runner.catch_up()
    assert _deadlines(kami, refunded.order_id) == set()
    assert _deadlines(kami, paid.order_id) == {"settle"}


def test_a_deadline_written_after_a_quiet_tick_still_runs_when_due(database_url: str) -> None:
    # A tick that found nothing scheduled skips its query until something is: the
    # manager's own apply must tell it of the expiry it writes.
    clock = ManualClock()
    with fresh_database(database_url) as url:
        kami = build(url, clock=clock)
        try:
            runner, manager = _managers(kami)
            assert manager.tick() == 0  # learns that nothing is scheduled
            _, product = _setup(kami)
            order = kami.shop.place_order(product.product_id, 1, "buyer@example.com")
            runner.catch_up()
            assert manager.tick() == 0
            clock.advance(timedelta(minutes=16))
            assert manager.tick() == 1
            assert kami.shop.get_order(order.order_id, order.token).status == "expired"
        finally:
            kami.close()


def test_a_promoter_made_dirty_after_a_clean_tick_is_reconciled(kami: Kami) -> None:
    shop = kami.shop
    _, product = _setup(kami)
    sharer = shop.join_promoter("Ed", "ed@example.com")
    manager = PromoterLevelManager(shop, kami.pool)
    runner = LogRunner(kami.pool, shop.recorder, shop.mapper, [manager])
    runner.catch_up()
    manager.tick()  # every row clean: the next ticks skip their query until one is dirty
    calls: list[int] = []
    real = shop.set_promoter_level

    def counted(promoter_id: object, referred_sales: int) -> object:
        calls.append(referred_sales)
        return real(promoter_id, referred_sales)

    shop.set_promoter_level = counted  # type: ignore[method-assign]
    order = shop.place_order(product.product_id, 1, "buyer@example.com", sharer.code)
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
    runner.catch_up()
    manager.tick()
    with kami.pool.connection() as conn:
        row = conn.execute(
            "SELECT referred_sales, dirty FROM pm_promoter_levels WHERE promoter_id = %s",
            (sharer.promoter_id,),
        ).fetchone()
    assert row is not None and row[0] == order.amount
    assert row[1] is False or calls == [order.amount]  # clean, or its level change was asked for
