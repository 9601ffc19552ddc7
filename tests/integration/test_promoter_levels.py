"""Promoter levels on real PostgreSQL: referred sales move a promoter up (and, refunded,
back down), and the next commission is paid at the sharer's level at payment."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from consumers.embedded import EmbeddedWorkers
from consumers.promoter_levels import TOPICS, PromoterLevelManager
from domain.clock import ManualClock
from domain.commissions import LEVEL_RATE_BPS
from domain.money import format_yuan
from domain.order import Order
from domain.promoter import Promoter
from domain.promoter_levels import level_one_rate_bps
from domain.results import OrderPlaced
from domain.shop import Shop
from kami.bootstrap import Kami, build
from tests.e2e.api_client import Api, bearer, in_process
from tests.support.databases import fresh_database

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PRICE = 1_000_000  # fen: 10,000 yuan, level 2's threshold in one order


@pytest.fixture
def kami_world(database_url: str) -> Iterator[tuple[Kami, ManualClock, Api]]:
    with fresh_database(database_url, "kami_levels") as url:
        clock = ManualClock(T0)
        kami = build(url, clock=clock)
        try:
            with in_process(kami) as api:
                yield kami, clock, api
        finally:
            kami.close()


def settle(workers: EmbeddedWorkers) -> None:
    for _ in range(10):
        workers.runner.catch_up()
        if workers.levels.tick() + workers.deadlines.tick() == 0:
            workers.runner.catch_up()
            return
    raise AssertionError("the process managers never settled")


def commissions(shop: Shop, order_id: UUID) -> dict[UUID, tuple[int, int]]:
    order = shop.repository.get(order_id)
    assert isinstance(order, Order)
    return {UUID(str(p)): (int(level), int(amount)) for p, level, amount in order.commissions}


def level_of(shop: Shop, promoter_id: UUID) -> int:
    return shop.get_promoter(promoter_id).level


def test_a_level_up_raises_the_rate_of_the_next_commission_and_refunds_take_it_back(
    kami_world: tuple[Kami, ManualClock, Api],
) -> None:
    kami, clock, api = kami_world
    shop = kami.shop
    workers = EmbeddedWorkers(kami)
    merchant = shop.register_merchant("m", "m@x").merchant_id
    product = shop.list_product(merchant, "Gift card", PRICE, "auto").product_id
    shop.import_cards(merchant, product, [uuid4().hex for _ in range(10)])
    referrer = shop.join_promoter("Ref", "r@x")
    sharer = shop.join_promoter("Sharer", "s@x", referrer.code)

    def order(code: str) -> OrderPlaced:
        return shop.place_order(product, 1, f"{uuid4().hex[:8]}@buyer", code)

    def pay(placed: OrderPlaced) -> None:
        shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)

    waiting = order(sharer.code)  # placed at level 1, paid after the level-up
    first = order(sharer.code)
    pay(first)
    level1 = level_one_rate_bps(1) * PRICE // 10_000
    level2 = LEVEL_RATE_BPS[2] * PRICE // 10_000
    assert commissions(shop, first.order_id) == {
        sharer.promoter_id: (1, level1),
        referrer.promoter_id: (2, level2),
    }

    clock.advance(timedelta(minutes=5))
    settle(workers)
    assert level_of(shop, sharer.promoter_id) == 2
    assert level_of(shop, referrer.promoter_id) == 1  # it referred the sharer, it shared nothing
    (changed,) = [e for e in shop.events.get(sharer.promoter_id) if isinstance(e, Promoter.LevelChanged)]
    assert (changed.old_level, changed.new_level, changed.referred_sales) == (1, 2, PRICE)

    pay(waiting)
    second = order(sharer.code)
    pay(second)
    raised = level_one_rate_bps(2) * PRICE // 10_000
    for placed in (waiting, second):
        assert commissions(shop, placed.order_id) == {
            sharer.promoter_id: (1, raised),
            referrer.promoter_id: (2, level2),  # level 2 stays flat
        }
    settle(workers)

    r = api.http.get(
        f"/v1/promoters/{sharer.promoter_id}/level",
        params={"after": shop.position()},
        headers=bearer(sharer.token),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["level"], body["level_one_rate_bps"]) == (2, 600)
    assert body["referred_sales"] == format_yuan(3 * PRICE)
    assert (body["next_level"], body["next_threshold"], body["to_next_level"]) == (3, "50000.00", "20000.00")
    payouts = api.http.get(
        f"/v1/promoters/{sharer.promoter_id}/payouts", params={"after": shop.position()}, headers=api.admin
    )
    assert [h["amount"] for h in payouts.json()["history"]] == [
        format_yuan(level1), format_yuan(raised), format_yuan(raised),
    ]  # fmt: skip
    path = f"/v1/promoters/{sharer.promoter_id}/level"
    assert api.http.get(path, headers=bearer(referrer.token)).status_code == 403
    assert api.http.get(path).status_code == 401

    # Refunds take the sales back: under the threshold the level follows them down.
    for placed in (waiting, second):
        shop.refund_order(placed.order_id, "changed mind", merchant)
    settle(workers)
    assert level_of(shop, sharer.promoter_id) == 2  # still 10,000 yuan net
    shop.refund_order(first.order_id, "changed mind", merchant)
    settle(workers)
    assert level_of(shop, sharer.promoter_id) == 1
    again = order(sharer.code)
    pay(again)
    assert commissions(shop, again.order_id)[sharer.promoter_id] == (1, level1)


def test_referred_sales_do_not_depend_on_how_orders_interleave(
    kami_world: tuple[Kami, ManualClock, Api],
) -> None:
    kami, _, _ = kami_world
    shop = kami.shop
    merchant = shop.register_merchant("m", "m@x").merchant_id
    product = shop.list_product(merchant, "Card", 250_000, "auto").product_id
    shop.import_cards(merchant, product, [uuid4().hex for _ in range(40)])
    sharers = [shop.join_promoter(f"p{i}", "p@x") for i in range(3)]
    rng = random.Random(4)
    for i in range(24):
        placed = shop.place_order(product, 1, f"b{i}@buyer", rng.choice(sharers).code)
        if i % 5 != 4:
            shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)
            if i % 3 == 0:
                shop.refund_order(placed.order_id, "x", merchant)
    for s in sharers:  # a level change, as the process would record it
        shop.set_promoter_level(s.promoter_id, 1_000_000)

    events = [
        (n.id, shop.mapper.to_domain_event(n))
        for n in shop.recorder.select_notifications(start=1, limit=10_000, topics=sorted(TOPICS))
    ]

    def rows(ordering: list[tuple[int, Any]], batch: int) -> list[tuple[Any, ...]]:
        manager = PromoterLevelManager(shop, kami.pool)
        with kami.pool.connection() as conn:
            # This database is the test's own: start the manager's tables afresh.
            conn.execute("DROP TABLE IF EXISTS pm_promoter_orders, pm_promoter_levels")
            manager.create_tables(conn)
            for start in range(0, len(ordering), batch):
                with conn.transaction():
                    manager.apply(conn, sorted(ordering[start : start + batch], key=lambda p: p[0]))
            found = conn.execute(
                "SELECT promoter_id, referred_sales, level FROM pm_promoter_levels ORDER BY promoter_id"
            ).fetchall()
        return [tuple(r) for r in found]

    reference = rows(events, len(events))
    by_aggregate: dict[UUID, list[tuple[int, Any]]] = {}
    for pair in events:
        by_aggregate.setdefault(pair[1].originator_id, []).append(pair)
    for seed in range(5):
        shuffle = random.Random(seed)
        queues = [list(q) for q in by_aggregate.values()]
        shuffle.shuffle(queues)
        interleaved: list[tuple[int, Any]] = []
        while queues:  # any interleaving that keeps each aggregate's own order
            q = shuffle.choice(queues)
            interleaved.append(q.pop(0))
            if not q:
                queues.remove(q)
        # Batches as a Kafka consumer cuts them; it sorts each batch by log id.
        assert rows(interleaved, shuffle.randint(1, 9)) == reference
    assert {r[2] for r in reference} == {2}
    assert len(reference) == 3
