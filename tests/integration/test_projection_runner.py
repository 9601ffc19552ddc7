"""LogRunner: one read per step for many consumers, each notification decoded once, a
savepoint per consumer, and positions that never claim an event not applied."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.utils import get_topic

from consumers.runner import LogRunner
from domain.merchant import Merchant
from domain.order import Order
from domain.posting import Posting
from domain.product import Product
from kami.bootstrap import Kami


class Recorder:
    """Records the ids it is given in a table of its own, in the runner's transaction."""

    def __init__(self, name: str, *types: type, fail_on: int | None = None) -> None:
        self.name = name
        self.topics = frozenset(get_topic(t) for t in types)
        self.fail_on = fail_on
        self.calls: list[list[int]] = []

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS seen_{self.name} (id bigint PRIMARY KEY, topic text)")

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        self.calls.append([p for p, _ in events])
        for position, event in events:
            assert get_topic(type(event)) in self.topics
            conn.execute(f"INSERT INTO seen_{self.name} VALUES (%s, %s)", (position, get_topic(type(event))))
            if position == self.fail_on:
                raise RuntimeError("poison")

    def seen(self, kami: Kami) -> list[int]:
        with kami.pool.connection() as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM seen_{self.name} ORDER BY id")]


class CountingMapper:
    """The Shop's mapper, counting what it decodes."""

    def __init__(self, mapper: Any) -> None:
        self._mapper = mapper
        self.decoded: list[int] = []

    def to_domain_event(self, notification: Any) -> Any:
        self.decoded.append(notification.id)
        return self._mapper.to_domain_event(notification)


def story(kami: Kami, orders: int = 5) -> None:
    shop = kami.shop
    merchant = shop.register_merchant("m", "m@example.com").merchant_id
    product = shop.list_product(merchant, "p", 500, "auto").product_id
    shop.import_cards(merchant, product, [uuid4().hex for _ in range(orders)])
    for _ in range(orders):
        placed = shop.place_order(product, 1, "b@example.com")
        shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)


def ids_of(kami: Kami, *types: type) -> list[int]:
    topics = [get_topic(t) for t in types]
    return [n.id for n in kami.shop.recorder.select_notifications(start=1, limit=10**6, topics=topics)]


def test_one_read_serves_every_consumer_and_decodes_each_event_once(system: Kami) -> None:
    story(system)
    mapper = CountingMapper(system.shop.mapper)
    orders = Recorder("orders", Order.Placed, Order.Paid)
    sales = Recorder("sales", Order.Paid, Posting.Recorded)
    runner = LogRunner(system.pool, system.shop.recorder, mapper, [orders, sales])  # type: ignore[arg-type]
    runner.catch_up()
    assert orders.seen(system) == ids_of(system, Order.Placed, Order.Paid)
    assert sales.seen(system) == ids_of(system, Order.Paid, Posting.Recorded)
    # Only the topics wanted were read, and the Order.Paid both want decoded once.
    assert sorted(mapper.decoded) == ids_of(system, Order.Placed, Order.Paid, Posting.Recorded)
    head = system.shop.position()
    assert runner.position("orders") == runner.position("sales") == head


def test_positions_move_to_the_head_past_events_no_consumer_wants(system: Kami) -> None:
    story(system)
    merchants = Recorder("merchants", Merchant.Registered)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [merchants])
    assert runner.catch_up() == 1  # one notification read, the rest never left the server
    # The last events are orders and postings, which it ignores: ?after= the head must
    # not wait on them.
    assert runner.position("merchants") == system.shop.position()
    assert runner.catch_up() == 0


def test_a_full_batch_claims_only_up_to_its_last_event(system: Kami) -> None:
    story(system, orders=6)
    placed = Recorder("placed", Order.Placed)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [placed], batch_size=2)
    wanted = ids_of(system, Order.Placed)
    assert runner.step(placed) == 2
    # Not the head: later Order.Placed events are still to be read.
    assert runner.position("placed") == wanted[1]
    assert placed.seen(system) == wanted[:2]
    runner.catch_up()
    assert placed.seen(system) == wanted
    assert runner.position("placed") == system.shop.position()


def test_a_failing_consumer_keeps_its_position_and_the_others_commit(system: Kami) -> None:
    story(system)
    paid = ids_of(system, Order.Paid)
    good = Recorder("good", Order.Paid)
    bad = Recorder("bad", Order.Paid, fail_on=paid[2])
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [bad, good])
    with pytest.raises(RuntimeError, match="poison"):
        runner.catch_up()
    # The failing consumer's savepoint was rolled back: nothing of its batch, no move.
    assert bad.seen(system) == [] and runner.position("bad") == 0
    assert good.seen(system) == paid and runner.position("good") == system.shop.position()
    # Fixed, it resumes where it stopped and applies each event once.
    bad.fail_on = None
    runner.catch_up()
    assert bad.seen(system) == paid and runner.position("bad") == system.shop.position()


def test_a_consumer_far_behind_reads_on_its_own_while_the_others_keep_up(system: Kami) -> None:
    story(system, orders=8)
    live = Recorder("live", Order.Placed, Order.Paid)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [live], batch_size=5)
    runner.catch_up()
    live.calls.clear()
    # A rebuild starts at 0 beside the live consumer, which is at the head.
    rebuild = Recorder("rebuild", Order.Placed, Order.Paid)
    both = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [live, rebuild], batch_size=5)
    story(system, orders=1)
    both.catch_up()
    assert live.seen(system) == rebuild.seen(system) == ids_of(system, Order.Placed, Order.Paid)
    # The live one got only the new events, in the first step rather than after the
    # rebuild's many.
    assert live.calls == [ids_of(system, Order.Placed, Order.Paid)[-2:]]
    assert len(rebuild.calls) > 1
    assert both.position("live") == both.position("rebuild") == system.shop.position()


def test_positions_never_claim_an_event_not_applied_while_commands_run(system: Kami) -> None:
    story(system, orders=1)
    merchant = system.shop.register_merchant("m2", "m@example.com").merchant_id
    listed = Recorder("listed", Product.Listed)
    placed = Recorder("placed", Order.Placed)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [listed, placed], batch_size=7)
    stop = threading.Event()
    problems: list[str] = []

    def write() -> None:
        while not stop.is_set():
            system.shop.list_product(merchant, "q", 100, "manual")

    def check() -> None:
        # Whatever a position claims, every wanted event up to it has been applied.
        with system.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for consumer, types in ((listed, Product.Listed), (placed, Order.Placed)):
                position = conn.execute(
                    "SELECT position FROM kami_tracking WHERE name = %s", (consumer.name,)
                ).fetchone()[0]
                seen = {r[0] for r in conn.execute(f"SELECT id FROM seen_{consumer.name}")}
                wanted = {i for i in ids_of(system, types) if i <= position}
                if not wanted <= seen:
                    problems.append(f"{consumer.name} at {position} misses {sorted(wanted - seen)[:5]}")

    writers = [threading.Thread(target=write) for _ in range(3)]
    for thread in writers:
        thread.start()
    try:
        for _ in range(30):
            runner.step_many()
            check()
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    runner.catch_up()
    check()
    assert not problems, problems
    assert listed.seen(system) == ids_of(system, Product.Listed)
    assert runner.position("listed") == system.shop.position()
