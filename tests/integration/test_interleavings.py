"""Random interleavings of place, pay, duplicate pay, second payment, expiry, refund, settlement
and voiding on a product with few cards. After every step: no card in two orders, no paid order
left without its cards or a refund, and a balanced ledger."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain import ledger
from domain.card_stock import SOLD, CardBucket
from domain.clock import ManualClock
from domain.exceptions import InvalidInput, InvalidState, OutOfStock
from domain.ids import bucket_id, payment_id
from domain.order import DELIVERED, EXPIRED, PENDING, REFUNDED, Order
from domain.payment import APPLIED, Payment
from domain.results import OrderPlaced
from domain.shop import Shop

PROVIDER = "sandbox"
PRICE = 1_000
CARDS = 4
TTL = timedelta(minutes=15)
WINDOW = timedelta(days=7)


class Ledger:
    """Follows the notification log; checks every posting and keeps per-order sums."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.after = 0
        self.total: Counter[str] = Counter()
        self.by_order: dict[UUID, Counter[str]] = defaultdict(Counter)
        self.kinds: dict[UUID, list[str]] = defaultdict(list)

    def catch_up(self) -> None:
        while batch := self.shop.recorder.select_notifications(self.after + 1, 500):
            for notification in batch:
                self.after = notification.id
                if not notification.topic.endswith("Posting.Recorded"):
                    continue
                posting = self.shop.mapper.to_domain_event(notification)
                assert sum(posting.entries.values()) == 0, posting
                self.total.update(posting.entries)
                if posting.order_id is not None:
                    self.by_order[posting.order_id].update(posting.entries)
                    self.kinds[posting.order_id].append(posting.kind)
        assert sum(self.total.values()) == 0


@dataclass
class World:
    shop: Shop
    clock: ManualClock
    ledger: Ledger
    merchant_id: UUID
    product_id: UUID
    card_ids: list[UUID]
    promoter_code: str
    chain: list[UUID]
    orders: list[OrderPlaced] = field(default_factory=list)
    txns: dict[UUID, list[str]] = field(default_factory=lambda: defaultdict(list))

    def order(self, i: int) -> OrderPlaced:
        return self.orders[i % len(self.orders)]

    def load(self, order_id: UUID) -> Order:
        order = self.shop.repository.get(order_id)
        assert isinstance(order, Order)
        return order

    def buckets(self) -> list[CardBucket]:
        return [self.shop.repository.get(bucket_id(self.product_id, i)) for i in range(16)]


def setup_world(shop: Shop, clock: ManualClock, ledger_reader: Ledger) -> World:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, f"p-{uuid4().hex[:6]}", PRICE, "auto")
    cards = shop.import_cards(
        merchant.merchant_id, product.product_id, [f"IL-{uuid4().hex}" for _ in range(CARDS)]
    )
    referrer = shop.join_promoter("ref", "r@example.com")
    sharer = shop.join_promoter("sharer", "s@example.com", referrer.code)
    return World(
        shop,
        clock,
        ledger_reader,
        merchant.merchant_id,
        product.product_id,
        cards.card_ids,
        sharer.code,
        [sharer.promoter_id, referrer.promoter_id],
    )


# ------------------------------------------------------------------ steps


def place(w: World, quantity: int, shared: bool) -> None:
    stock = w.shop.get_product(w.product_id).stock
    try:
        placed = w.shop.place_order(
            w.product_id, quantity, "buyer@example.com", w.promoter_code if shared else None
        )
    except OutOfStock:
        assert stock < quantity
        return
    assert stock >= quantity
    assert w.shop.get_product(w.product_id).stock == stock - quantity
    w.orders.append(placed)


def pay(w: World, i: int, txn: str | None) -> None:
    """Pay order i with ``txn`` (None: a fresh txn id)."""
    placed = w.order(i)
    before = w.load(placed.order_id)
    duplicate = txn is not None
    txn = txn or uuid4().hex
    result = w.shop.record_payment(PROVIDER, placed.order_id, txn, placed.amount)
    assert result.duplicate is duplicate
    if duplicate:
        assert result.status == before.status
        return
    w.txns[placed.order_id].append(txn)
    if before.status in (PENDING, EXPIRED):
        assert result.status in (DELIVERED, REFUNDED)
        if before.status == PENDING and w.clock() < before.expires_at:
            assert result.status == DELIVERED  # its cards were still reserved for it
    else:
        assert result.status == before.status  # a second payment is returned
    assert w.load(placed.order_id).status == result.status


def first_pay(w: World, i: int) -> None:
    pay(w, i, None if not w.txns[w.order(i).order_id] else w.txns[w.order(i).order_id][0])


def second_pay(w: World, i: int) -> None:
    pay(w, i, None)


def duplicate_pay(w: World, i: int) -> None:
    txns = w.txns[w.order(i).order_id]
    pay(w, i, txns[-1] if txns else None)


def expire(w: World, i: int) -> None:
    placed = w.order(i)
    w.clock.advance(TTL + timedelta(seconds=1))
    before = w.load(placed.order_id).status
    result = w.shop.expire_order(placed.order_id)
    assert result.status == (EXPIRED if before == PENDING else before)


def lapse(w: World, _: int) -> None:
    """Time passes beyond every open reservation, without any expiry being run."""
    w.clock.advance(TTL + timedelta(seconds=1))


def refund(w: World, i: int) -> None:
    placed = w.order(i)
    before = w.load(placed.order_id)
    try:
        result = w.shop.refund_order(placed.order_id, "buyer asked", w.merchant_id)
    except InvalidState:
        assert before.status not in (DELIVERED, "paid")
        return
    assert before.status == DELIVERED
    assert result.status == REFUNDED


def settle(w: World, i: int) -> None:
    placed = w.order(i)
    w.clock.advance(WINDOW)
    before = w.load(placed.order_id)
    w.shop.settle_commissions(placed.order_id)
    after = w.load(placed.order_id)
    assert after.commissions_settled == (
        before.commissions_settled or (before.status == DELIVERED and bool(before.commissions))
    )


def void(w: World, i: int) -> None:
    card_id = w.card_ids[i % len(w.card_ids)]
    try:
        w.shop.void_card(w.merchant_id, w.product_id, card_id, "leaked")
    except InvalidState:
        for bucket in w.buckets():
            if str(card_id) in bucket.cards:
                assert not bucket.cards[str(card_id)].is_available(w.clock())


STEPS: dict[str, Any] = {
    "pay": first_pay,
    "duplicate_pay": duplicate_pay,
    "second_pay": second_pay,
    "expire": expire,
    "lapse": lapse,
    "refund": refund,
    "settle": settle,
    "void": void,
}

step = st.one_of(
    st.tuples(st.just("place"), st.integers(1, 2), st.booleans()),
    st.tuples(st.sampled_from(sorted(STEPS)), st.integers(0, 9)),
)


def run(w: World, action: tuple[Any, ...]) -> None:
    if action[0] == "place":
        place(w, action[1], action[2])
    elif w.orders or action[0] in ("lapse", "void"):
        STEPS[action[0]](w, action[1])


# -------------------------------------------------------------- invariants


def check_invariants(w: World) -> None:
    w.ledger.catch_up()
    orders = {p.order_id: w.load(p.order_id) for p in w.orders}

    # No card in two orders; every sold card belongs to the order that received it.
    delivered = [cid for o in orders.values() for cid, _ in o.cards]
    assert len(delivered) == len(set(delivered))
    owner = {cid: oid for oid, o in orders.items() for cid, _ in o.cards}
    sold = {
        cid: card.order_id
        for bucket in w.buckets()
        for cid, card in bucket.cards.items()
        if card.status == SOLD
    }
    assert sold == owner

    for order_id, order in orders.items():
        # A paid order is never left without its cards or a refund.
        assert order.status != "paid"
        applied = [
            p
            for txn in w.txns[order_id]
            if (p := w.shop.repository.get(payment_id(PROVIDER, txn))).outcome == APPLIED
        ]
        assert all(isinstance(p, Payment) and p.order_id == order_id for p in applied)
        assert len(applied) <= 1
        if applied:
            assert order.status in (DELIVERED, REFUNDED)
        if order.status == DELIVERED:
            assert applied and len(order.cards) == order.quantity
        # Money held for an order: its amount while delivered, nothing otherwise.
        held = w.ledger.by_order[order_id]
        assert held[ledger.CLEARING] == (order.amount if order.status == DELIVERED else 0)
        assert held[ledger.REFUNDS] == 0
        # Every payment sent produced exactly one recorded outcome.
        returned = Counter(w.ledger.kinds[order_id])["return"]
        assert returned + len(applied) == len(w.txns[order_id])
        # Commissions stay pending only on a delivered, unsettled order; refunds reverse them.
        for promoter_id in w.chain:
            pending = held[ledger.pending_account(promoter_id)]
            available = held[ledger.available_account(promoter_id)]
            earned = -sum(int(c[2]) for c in order.commissions if UUID(str(c[0])) == promoter_id)
            if order.status == DELIVERED and not order.commissions_settled:
                assert (pending, available) == (earned, 0)
            elif order.commissions_settled:
                assert (pending, available) == (0, earned)
            else:
                assert (pending, available) == (0, 0)

    assert w.shop.get_product(w.product_id).stock == sum(b.count_available(w.clock()) for b in w.buckets())


@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(step, min_size=1, max_size=18))
# The stories that matter most are always run, whatever hypothesis draws besides.
@example(actions=[("place", 1, True), ("pay", 0), ("settle", 0), ("refund", 0), ("second_pay", 0)])
@example(actions=[("place", 2, True), ("pay", 0), ("refund", 0), ("settle", 0), ("duplicate_pay", 0)])
@example(actions=[("place", 2, False), ("lapse", 0), ("place", 2, False), ("pay", 0), ("pay", 1)])
@example(actions=[("place", 1, True), ("expire", 0), ("pay", 0), ("duplicate_pay", 0), ("second_pay", 0)])
@example(actions=[("place", 2, False), ("expire", 0), ("place", 2, False), ("void", 0), ("pay", 0)])
def test_random_interleavings_keep_cards_payments_and_ledger_consistent(
    shop: Shop, clock: ManualClock, actions: list[tuple[Any, ...]]
) -> None:
    world = setup_world(shop, clock, Ledger(shop))
    check_invariants(world)
    for action in actions:
        run(world, action)
        check_invariants(world)


# ------------------------------------------------------------- concurrency


CHAOS = {"place": 8, "pay": 8, "dup": 3, "expire": 2, "refund": 2, "settle": 2, "void": 1, "lapse": 1}


def chaos(w: World, rng: random.Random, lock: threading.Lock) -> None:
    """One buyer, merchant, provider or process manager acting at random."""
    op = rng.choices(list(CHAOS), weights=list(CHAOS.values()))[0]
    if op == "place":
        try:
            placed = w.shop.place_order(
                w.product_id,
                rng.randint(1, 2),
                "b@example.com",
                w.promoter_code if rng.random() < 0.5 else None,
            )
        except OutOfStock:
            return
        with lock:
            w.orders.append(placed)
        return
    if op == "void":
        with suppress_expected():
            w.shop.void_card(w.merchant_id, w.product_id, rng.choice(w.card_ids), "leaked")
        return
    if op == "lapse":
        w.clock.advance(rng.choice([TTL + timedelta(seconds=1)] * 3 + [WINDOW]))
        return
    with lock:
        if not w.orders:
            return
        placed = rng.choice(w.orders)
        used = list(w.txns[placed.order_id])
        txn = rng.choice(used) if op == "dup" and used else uuid4().hex
        if op == "pay" or (op == "dup" and not used):
            w.txns[placed.order_id].append(txn)
    if op in ("pay", "dup"):
        w.shop.record_payment(PROVIDER, placed.order_id, txn, placed.amount)
    elif op == "expire":
        w.shop.expire_order(placed.order_id)
    elif op == "settle":
        w.shop.settle_commissions(placed.order_id)
    else:
        with suppress_expected():
            w.shop.refund_order(placed.order_id, "asked", w.merchant_id)


class suppress_expected:  # noqa: N801 - used like contextlib.suppress
    """Refusals a random actor may meet: refunding an unpaid order, voiding a reserved card."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, InvalidState | InvalidInput)


def test_concurrent_random_actors_keep_cards_payments_and_ledger_consistent(
    shop: Shop, clock: ManualClock
) -> None:
    world = setup_world(shop, clock, Ledger(shop))
    shop.import_cards(world.merchant_id, world.product_id, [f"IL-{uuid4().hex}" for _ in range(16)])
    lock = threading.Lock()
    seed = random.randrange(2**32)
    actors, steps = 12, 20
    barrier = threading.Barrier(actors)

    def act(index: int) -> None:
        rng = random.Random(seed + index)
        barrier.wait()
        for _ in range(steps):
            chaos(world, rng, lock)

    with ThreadPoolExecutor(max_workers=actors) as pool:
        for future in [pool.submit(act, i) for i in range(actors)]:
            future.result()  # any unexpected error (Busy, RuntimeError, ...) fails the test

    assert world.orders, f"seed {seed}: nobody managed to order"
    check_invariants(world)
