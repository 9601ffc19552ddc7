"""The read models do not depend on the order of different aggregates' events.

Through Kafka the relay keys messages by aggregate: one aggregate's events keep their
order, different aggregates' arrive in any relative order, cut into any batches, and two
consumer processes may apply batches of one projection at the same time. A story of real
commands (every event type the projections handle) is captured from the log, then fed
to every projection in log order and in permutations that keep each aggregate's order:
Kafka-like (aggregates hashed to partitions, partitions drained in random chunks,
batches sorted by log id as the Kafka consumer sorts them), fully interleaved, and the
adversarial "latest aggregate first". Every ordering must give the same rows.

End to end, the same commands through the relay, a real broker (Tansu, six partitions)
and two consumer processes per read model (one leaving half-way, the other taking over
its partitions) give the rows the in-process LogRunner gives.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from domain.clock import ManualClock
from domain.exceptions import KamiError
from domain.order import Order
from domain.posting import Posting
from domain.promoter import Promoter
from domain.results import OrderPlaced
from domain.shop import Shop
from kami.bootstrap import Kami
from projections.base import Projection
from projections.registry import PROJECTIONS
from tests.support.broker import unique_topic

Event = tuple[int, Any]
Rows = dict[str, list[tuple[Any, ...]]]
PROVIDER = "sandbox"


# ------------------------------------------------------------------------- the story


@dataclass
class Story:
    """Real commands with every event the projections handle, over several days."""

    shop: Shop
    clock: ManualClock
    rng: random.Random
    tag: str = field(default_factory=lambda: uuid4().hex[:6])
    products: list[tuple[UUID, UUID]] = field(default_factory=list)  # (merchant, product)
    codes: list[str] = field(default_factory=list)
    paid: list[tuple[UUID, OrderPlaced]] = field(default_factory=list)  # (merchant, order)
    merchants: list[UUID] = field(default_factory=list)
    promoters: list[UUID] = field(default_factory=list)
    manual: tuple[UUID, UUID] | None = None

    def buyer(self) -> str:
        # Variants of one contact: buyers are trimmed and lower-cased.
        name = self.rng.choice(["ann", "ben", "cy", "dee", "eve"])
        return self.rng.choice(
            [f"{name}+{self.tag}@example.com", f"  {name.upper()}+{self.tag}@Example.com "]
        )

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))

    def setup(self) -> None:
        shop = self.shop
        self.merchants = [
            shop.register_merchant(f"m-{self.tag}-{i}", "m@example.com").merchant_id for i in range(3)
        ]
        for merchant in self.merchants:
            for price in (self.rng.randint(100, 5_000), self.rng.randint(100, 5_000)):
                self.advance(seconds=1)
                product = shop.list_product(merchant, f"p-{uuid4().hex[:6]}", price, "auto").product_id
                shop.import_cards(merchant, product, [uuid4().hex for _ in range(self.rng.randint(15, 30))])
                self.products.append((merchant, product))
        first = self.merchants[0]
        self.manual = (first, shop.list_product(first, "logo", 3_000, "manual").product_id)
        top = shop.join_promoter("top", "t@example.com")
        mid = shop.join_promoter("mid", "m@example.com", top.code)
        low = shop.join_promoter("low", "l@example.com", mid.code)
        solo = shop.join_promoter("solo", "s@example.com")
        self.codes = [top.code, mid.code, low.code, solo.code]
        self.promoters = [top.promoter_id, mid.promoter_id, low.promoter_id]
        shop.set_promoter_level(top.promoter_id, 1_000_000)

    def buy(self, merchant: UUID, product: UUID, quantity: int | None = None) -> OrderPlaced | None:
        code = self.rng.choice([None, None, *self.codes])
        try:
            placed = self.shop.place_order(product, quantity or self.rng.randint(1, 2), self.buyer(), code)
        except KamiError:
            return None  # sold out: a refusal is part of the mix
        self.shop.record_payment(PROVIDER, placed.order_id, uuid4().hex, placed.amount)
        self.paid.append((merchant, placed))
        return placed

    def day(self, orders: int) -> None:
        for _ in range(orders):
            self.advance(minutes=self.rng.randint(1, 90))
            merchant, product = self.rng.choice(self.products)
            self.buy(merchant, product)
        if not self.paid:
            return
        for _ in range(3):
            _, placed = self.rng.choice(self.paid)
            with contextlib.suppress(KamiError):  # reviewed already, or refunded
                self.shop.review_order(placed.order_id, placed.token, self.rng.randint(1, 5), "")

    def specials(self) -> None:
        shop, rng = self.shop, self.rng
        # Manual goods, delivered by hand, disputed and resolved late.
        assert self.manual is not None
        merchant, manual = self.manual
        placed = shop.place_order(manual, 1, self.buyer(), self.codes[2])
        shop.record_payment(PROVIDER, placed.order_id, uuid4().hex, placed.amount)
        shop.deliver_manual(merchant, placed.order_id, "your logo")
        shop.dispute_order(placed.order_id, placed.token, "wrong colour")
        self.advance(hours=30)
        shop.resolve_dispute(merchant, placed.order_id, "redrawn")
        # A dispute resolved in time.
        merchant, product = self.products[0]
        quick = self.buy(merchant, product, 1)
        assert quick is not None
        shop.dispute_order(quick.order_id, quick.token, "slow")
        self.advance(hours=1)
        shop.resolve_dispute(merchant, quick.order_id, "resent")
        # A second payment for a paid order: recorded and sent back.
        shop.record_payment(PROVIDER, quick.order_id, uuid4().hex, quick.amount)
        # An order never paid expires and gives its cards back.
        merchant, product = self.products[1]
        unpaid = shop.place_order(product, 2, self.buyer())
        # A late payment that finds too few cards: a small product, its reservation
        # lapsed and partly taken by another buyer before the expiry process ran.
        small = shop.list_product(merchant, "small", 700, "auto").product_id
        shop.import_cards(merchant, small, [uuid4().hex for _ in range(3)])
        late = shop.place_order(small, 3, self.buyer())
        self.advance(minutes=16)
        shop.expire_order(unpaid.order_id)
        taker = shop.place_order(small, 2, self.buyer())
        shop.record_payment(PROVIDER, taker.order_id, uuid4().hex, taker.amount)
        result = shop.record_payment(PROVIDER, late.order_id, uuid4().hex, late.amount)
        assert result.status == "refunded"
        # A card voided; a price changed; a product delisted; a tier changed.
        merchant, product = self.products[2]
        for card_id in shop.import_cards(merchant, product, [uuid4().hex]).card_ids:
            shop.void_card(merchant, product, card_id, "leaked")
        shop.change_price(merchant, product, rng.randint(100, 900))
        merchant, product = self.products[3]
        shop.delist_product(merchant, product)
        self.products.remove((merchant, product))
        shop.change_tier(self.merchants[1], "core", 91.0, "strong month")
        shop.restrict_merchant(self.merchants[2], "chargebacks")
        shop.reinstate_merchant(self.merchants[2], "cleared")
        # A refund inside the after-sales window: its pending commissions are reversed.
        self.refund_some(2)

    def refund_some(self, n: int) -> None:
        for merchant, placed in self.rng.sample(self.paid, min(n, len(self.paid))):
            with contextlib.suppress(KamiError):  # refunded already
                self.shop.refund_order(placed.order_id, "changed mind", merchant)

    def settle(self) -> None:
        for _, placed in self.paid:
            self.shop.settle_commissions(placed.order_id)
        for promoter in self.promoters:
            available = self.shop.get_promoter(promoter).available
            if available > 1:
                self.shop.request_withdrawal(promoter, available // 2)

    def tell(self, days: int = 4, orders_per_day: int = 12) -> None:
        self.setup()
        for d in range(days):
            self.day(orders_per_day)
            if d == 1:
                self.specials()
            self.advance(hours=self.rng.randint(12, 30))
        self.advance(days=8)
        self.settle()
        # After settlement: refunds leave commissions with the promoters.
        self.refund_some(3)
        self.day(orders_per_day)  # these stay pending


def capture(shop: Shop, after: int) -> list[Event]:
    """The log after ``after``, decoded: (position, event)."""
    events: list[Event] = []
    while batch := shop.recorder.select_notifications(start=after, limit=1000, inclusive_of_start=False):
        events.extend((n.id, shop.mapper.to_domain_event(n)) for n in batch)
        after = batch[-1].id
    return events


# ------------------------------------------------------------------------- orderings


def kafka_like(
    events: Sequence[Event], rng: random.Random, partitions: int, *, latest_first: bool
) -> list[Event]:
    """A merge that keeps each aggregate's order and nothing else: aggregates hashed to
    partitions, partitions drained in random chunks (or the latest head first)."""
    salt = rng.getrandbits(32)
    queues: dict[int, deque[Event]] = {}
    for item in events:
        queues.setdefault(hash((salt, item[1].originator_id)) % partitions, deque()).append(item)
    merged: list[Event] = []
    while queues:
        if latest_first:
            partition = max(queues, key=lambda p: queues[p][0][0])
            take = 1
        else:
            partition = rng.choice(list(queues))
            take = rng.randint(1, 40)
        queue = queues[partition]
        for _ in range(min(take, len(queue))):
            merged.append(queue.popleft())
        if not queue:
            del queues[partition]
    return merged


def batches(events: Sequence[Event], rng: random.Random, *, sort: bool) -> list[list[Event]]:
    """Cut into random batches; sorted by log id within a batch if asked (as the Kafka
    consumer sorts each poll), which keeps each aggregate's order too."""
    cut: list[list[Event]] = []
    i = 0
    while i < len(events):
        size = rng.choice([1, 2, 7, 50, 300, len(events)])
        batch = list(events[i : i + size])
        cut.append(sorted(batch, key=lambda e: e[0]) if sort else batch)
        i += size
    return cut


def keeps_each_aggregates_order(original: Sequence[Event], batched: Sequence[Sequence[Event]]) -> bool:
    seen: dict[UUID, list[int]] = {}
    for batch in batched:
        for position, event in batch:
            seen.setdefault(event.originator_id, []).append(position)
    flat = sorted(p for b in batched for p, _ in b)
    return flat == [p for p, _ in original] and all(v == sorted(v) for v in seen.values())


# ------------------------------------------------------------------------ projecting


def project(pool: ConnectionPool, cls: type[Projection[Any]], batched: Sequence[Sequence[Event]]) -> Rows:
    """Apply these batches to a fresh version of the projection; its rows; drop it."""
    projection = cls(10_000 + secrets.randbelow(10**8))
    with pool.connection() as conn:
        with conn.transaction():
            projection.create_tables(conn)
        try:
            for batch in batched:
                with conn.transaction():
                    projection.apply(conn, batch)
            return projection.rows(conn)
        finally:
            projection.drop_tables(conn)


def project_concurrently(
    pool: ConnectionPool, cls: type[Projection[Any]], partitions: Sequence[Sequence[Sequence[Event]]]
) -> Rows:
    """Two consumer processes: each applies its partitions' batches in transactions of
    its own, at the same time as the other."""
    projection = cls(10_000 + secrets.randbelow(10**8))
    with pool.connection() as conn, conn.transaction():
        projection.create_tables(conn)
    errors: list[BaseException] = []
    start = threading.Barrier(len(partitions))

    def consume(batched: Sequence[Sequence[Event]]) -> None:
        try:
            with psycopg.connect(pool.conninfo) as conn:
                start.wait()
                for batch in batched:
                    with conn.transaction():
                        projection.apply(conn, batch)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(p,)) for p in partitions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with pool.connection() as conn:
        try:
            assert not errors, errors
            return projection.rows(conn)
        finally:
            projection.drop_tables(conn)


def differences(want: Rows, got: Rows) -> dict[str, Any]:
    found = {}
    for table in want:
        missing = set(want[table]) - set(got[table])
        extra = set(got[table]) - set(want[table])
        if missing or extra:
            found[table] = {"missing": sorted(missing, key=str)[:5], "extra": sorted(extra, key=str)[:5]}
    return found


# ----------------------------------------------------------------------------- tests


@dataclass
class Captured:
    events: list[Event]
    reference: dict[str, Rows]


@pytest.fixture(scope="module")
def captured(database_url: str) -> Iterator[Captured]:
    from kami.bootstrap import build

    clock = ManualClock()
    kami: Kami = build(database_url, clock=clock)
    try:
        before = kami.shop.position()
        Story(kami.shop, clock, random.Random(3)).tell()
        events = capture(kami.shop, before)
        reference = {cls.read_model: project(kami.pool, cls, [events]) for cls in PROJECTIONS}
        yield Captured(events, reference)
    finally:
        kami.close()


@pytest.fixture(scope="module")
def pool(database_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(database_url, min_size=1, max_size=4, open=True) as p:
        yield p


def test_the_story_gives_every_projection_every_event_it_handles(captured: Captured) -> None:
    seen = {type(e) for _, e in captured.events}
    for cls in PROJECTIONS:
        assert set(cls.handlers) <= seen, f"{cls.read_model}: {set(cls.handlers) - seen} never happen"
    kinds = {e.kind for _, e in captured.events if hasattr(e, "kind")}
    assert kinds >= {"payment", "refund", "unmatched", "return", "settlement", "withdrawal"}
    honoured = {e.honoured for _, e in captured.events if hasattr(e, "honoured")}
    assert honoured == {True, False}
    # Every read model has rows, so the comparisons below are not of empty tables.
    for read_model, rows in captured.reference.items():
        assert any(rows.values()), read_model


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32),
    partitions=st.sampled_from([1, 2, 4, 8, 10**9]),
    latest_first=st.booleans(),
    sort=st.booleans(),
)
def test_every_projection_gives_the_same_rows_in_any_order_that_keeps_each_aggregates(
    captured: Captured, pool: ConnectionPool, seed: int, partitions: int, latest_first: bool, sort: bool
) -> None:
    rng = random.Random(seed)
    merged = kafka_like(captured.events, rng, partitions, latest_first=latest_first)
    batched = batches(merged, rng, sort=sort)
    assert keeps_each_aggregates_order(captured.events, batched)
    if partitions > 1:
        assert merged != captured.events  # a real permutation, not the log again
    for cls in PROJECTIONS:
        rows = project(pool, cls, batched)
        want = captured.reference[cls.read_model]
        assert rows == want, f"{cls.read_model} differs: {differences(want, rows)}"


def test_the_latest_aggregate_first_reverses_what_a_join_would_need(captured: Captured) -> None:
    # The adversarial order really is adversarial: payment postings before their
    # orders were placed, referrals before the referrer joined.
    merged = kafka_like(captured.events, random.Random(1), 10**9, latest_first=True)
    index = {position: i for i, (position, _) in enumerate(merged)}
    placed = {e.originator_id: index[p] for p, e in captured.events if isinstance(e, Order.Placed)}
    early = [
        p
        for p, e in captured.events
        if isinstance(e, Posting.Recorded) and e.order_id in placed and index[p] < placed[e.order_id]
    ]
    assert early
    joined = {e.originator_id: index[p] for p, e in captured.events if isinstance(e, Promoter.Joined)}
    assert any(
        joined[e.upline[0]] > index[p]
        for p, e in captured.events
        if isinstance(e, Promoter.Joined) and e.upline
    )


def test_two_consumers_applying_partitions_at_once_give_the_same_rows(
    captured: Captured, pool: ConnectionPool
) -> None:
    rng = random.Random(11)
    salt = rng.getrandbits(32)
    halves: list[list[Event]] = [[], []]
    for item in captured.events:
        halves[hash((salt, item[1].originator_id)) % 2].append(item)
    for cls in PROJECTIONS:
        split = [batches(half, rng, sort=True) for half in halves]
        rows = project_concurrently(pool, cls, split)
        want = captured.reference[cls.read_model]
        assert rows == want, f"{cls.read_model} differs: {differences(want, rows)}"


# --------------------------------------------------------------- through a real broker

TOPIC = unique_topic("kami.partition-order")  # an external broker keeps old topics
PARTITIONS = 6
KAFKA_VERSION, LOG_VERSION = 301, 302  # tables of their own: the two runs never share rows


def test_relay_kafka_and_consumers_give_the_read_models_of_the_log_runner(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consumers import kafka_consumer
    from consumers.kafka_consumer import KafkaProjector, kafka_position
    from consumers.relay import Relay
    from consumers.runner import LogRunner
    from kami.bootstrap import build
    from tests.support.broker import kafka
    from tests.support.databases import fresh_database

    # Small polls: more, smaller batches, each a different mix of partitions.
    monkeypatch.setattr(kafka_consumer, "MAX_RECORDS", 30)
    with fresh_database(database_url) as url:
        clock = ManualClock()
        kami = build(url, clock=clock, pool_size=20)
        try:
            story = Story(kami.shop, clock, random.Random(5))
            story.tell(days=3)
            kafka_side = [cls(KAFKA_VERSION) for cls in PROJECTIONS]

            def caught_up(head: int, timeout: float = 120.0) -> None:
                deadline = time.monotonic() + timeout
                while True:
                    with kami.pool.connection() as conn:
                        positions = {
                            p.read_model: kafka_position(conn, p.name, TOPIC, PARTITIONS) for p in kafka_side
                        }
                    if all(position >= head for position in positions.values()):
                        return
                    assert not [p for p in projectors if getattr(p, "failed", False)], "a consumer failed"
                    assert time.monotonic() < deadline, f"not caught up to {head}: {positions}"
                    # Wait on the relay between polls: it returns early only if the relay died.
                    relay_thread.join(timeout=0.2)
                    assert relay_thread.is_alive(), "the relay stopped"

            with kafka() as bootstrap:
                stop_relay = threading.Event()
                relay = Relay(url, kami.shop.recorder, bootstrap, TOPIC, PARTITIONS, batch_size=40)
                relay_thread = threading.Thread(target=relay.run, args=(stop_relay,))
                relay_thread.start()
                # Two consumer "processes" per read model: each group splits the partitions.
                projectors = [
                    KafkaProjector(kami.pool, kami.shop.mapper, p, bootstrap, TOPIC)
                    for _ in range(2)
                    for p in kafka_side
                ]
                stops = [threading.Event() for _ in projectors]
                threads = [
                    threading.Thread(target=run_projector, args=(p, s))
                    for p, s in zip(projectors, stops, strict=True)
                ]
                try:
                    for thread in threads:
                        thread.start()
                    caught_up(kami.shop.position())
                    # More commands while they run; then one member of each group leaves
                    # and the other takes over its partitions.
                    story.day(15)
                    story.refund_some(2)
                    for stop in stops[: len(kafka_side)]:
                        stop.set()
                    story.day(10)
                    caught_up(kami.shop.position())
                finally:
                    stop_relay.set()
                    for stop in stops:
                        stop.set()
                    for thread in [relay_thread, *threads]:
                        thread.join(timeout=30)
            assert not [p for p in projectors if getattr(p, "failed", False)]

            log_side = [cls(LOG_VERSION) for cls in PROJECTIONS]
            LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, log_side, batch_size=200).catch_up()
            with kami.pool.connection() as conn:
                for through_kafka, in_process in zip(kafka_side, log_side, strict=True):
                    want, got = in_process.rows(conn), through_kafka.rows(conn)
                    assert any(want.values()), in_process.read_model
                    assert got == want, f"{in_process.read_model} differs: {differences(want, got)}"
        finally:
            kami.close()


def run_projector(projector: Any, stop: threading.Event) -> None:
    try:
        projector.run(stop)
    except BaseException:
        projector.failed = True
        raise
