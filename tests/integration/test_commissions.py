"""Commissions on real PostgreSQL: two levels, reversed by an early refund, settled after the
after-sales window, withdrawn only from what is available."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from domain import ledger
from domain.clock import ManualClock
from domain.exceptions import InsufficientBalance
from domain.results import OrderPlaced, PromoterJoined
from domain.shop import Shop

PRICE = 10_000  # 100.00: level 1 earns 5.00, level 2 earns 2.00
LEVEL_1, LEVEL_2 = 500, 200
WINDOW = timedelta(days=7)


def postings(shop: Shop, order_id: UUID | None = None, kind: str | None = None) -> list[dict[str, int]]:
    found = []
    after = 0
    while batch := shop.recorder.select_notifications(after + 1, 1000):
        for n in batch:
            after = n.id
            if n.topic.endswith("Posting.Recorded"):
                p = shop.mapper.to_domain_event(n)
                if (order_id is None or p.order_id == order_id) and (kind is None or p.kind == kind):
                    found.append(p.entries)
    return found


def net(entries: list[dict[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for e in entries:
        total.update(e)
    return Counter({k: v for k, v in total.items() if v})


class Chain:
    """A <- B <- C: C was referred by B, who was referred by A."""

    def __init__(self, shop: Shop) -> None:
        self.a = shop.join_promoter("A", "a@example.com")
        self.b = shop.join_promoter("B", "b@example.com", self.a.code)
        self.c = shop.join_promoter("C", "c@example.com", self.b.code.lower())
        merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
        self.merchant_id = merchant.merchant_id
        self.product_id = shop.list_product(self.merchant_id, "Licence", PRICE, "auto").product_id
        shop.import_cards(self.merchant_id, self.product_id, [uuid4().hex for _ in range(20)])
        self.shop = shop

    def paid_order(self, code: str | None) -> OrderPlaced:
        order = self.shop.place_order(self.product_id, 1, "buyer@example.com", code)
        result = self.shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
        assert result.status == "delivered"
        return order

    def available(self, promoter: PromoterJoined) -> int:
        return self.shop.get_promoter(promoter.promoter_id).available


@pytest.fixture
def chain(shop: Shop) -> Chain:
    return Chain(shop)


def test_an_order_pays_the_sharer_and_its_referrer_but_never_a_third_level(chain: Chain) -> None:
    order = chain.paid_order(chain.c.code)
    (payment,) = postings(chain.shop, order.order_id, "payment")
    assert payment[ledger.pending_account(chain.c.promoter_id)] == -LEVEL_1
    assert payment[ledger.pending_account(chain.b.promoter_id)] == -LEVEL_2
    assert not any(str(chain.a.promoter_id) in account for account in payment)
    assert sum(payment.values()) == 0


def test_an_order_through_the_top_of_the_chain_pays_one_level(chain: Chain) -> None:
    order = chain.paid_order(chain.a.code)
    (payment,) = postings(chain.shop, order.order_id, "payment")
    promoters = {k: v for k, v in payment.items() if k.startswith("promoter:")}
    assert promoters == {ledger.pending_account(chain.a.promoter_id): -LEVEL_1}


def test_an_order_without_a_code_pays_no_commission(chain: Chain) -> None:
    order = chain.paid_order(None)
    (payment,) = postings(chain.shop, order.order_id, "payment")
    assert not any(k.startswith("promoter:") for k in payment)


def test_a_refund_inside_the_window_reverses_pending_commissions(chain: Chain, clock: ManualClock) -> None:
    order = chain.paid_order(chain.c.code)
    clock.advance(timedelta(days=3))
    chain.shop.refund_order(order.order_id, "not as described", chain.merchant_id)

    entries = postings(chain.shop, order.order_id)
    assert net(entries) == Counter()  # payment and refund cancel out, commissions included
    (refund,) = postings(chain.shop, order.order_id, "refund")
    assert refund[ledger.pending_account(chain.c.promoter_id)] == LEVEL_1
    assert refund[ledger.pending_account(chain.b.promoter_id)] == LEVEL_2

    clock.advance(WINDOW)
    chain.shop.settle_commissions(order.order_id)
    assert postings(chain.shop, order.order_id, "settlement") == []
    assert chain.available(chain.c) == chain.available(chain.b) == 0


def test_commissions_become_available_only_when_the_window_closes(chain: Chain, clock: ManualClock) -> None:
    order = chain.paid_order(chain.c.code)

    clock.advance(WINDOW - timedelta(seconds=1))
    chain.shop.settle_commissions(order.order_id)
    assert postings(chain.shop, order.order_id, "settlement") == []
    assert chain.available(chain.c) == chain.available(chain.b) == 0

    clock.advance(timedelta(seconds=1))
    chain.shop.settle_commissions(order.order_id)
    chain.shop.settle_commissions(order.order_id)  # settling twice changes nothing
    assert chain.available(chain.c) == LEVEL_1
    assert chain.available(chain.b) == LEVEL_2
    assert chain.available(chain.a) == 0
    assert net(postings(chain.shop, order.order_id, "settlement")) == Counter(
        {
            ledger.pending_account(chain.c.promoter_id): LEVEL_1,
            ledger.available_account(chain.c.promoter_id): -LEVEL_1,
            ledger.pending_account(chain.b.promoter_id): LEVEL_2,
            ledger.available_account(chain.b.promoter_id): -LEVEL_2,
        }
    )


def test_withdrawals_draw_only_on_the_available_balance(chain: Chain, clock: ManualClock) -> None:
    shop = chain.shop
    settled = chain.paid_order(chain.c.code)
    clock.advance(WINDOW)
    shop.settle_commissions(settled.order_id)
    chain.paid_order(chain.c.code)  # still pending: not withdrawable

    with pytest.raises(InsufficientBalance):
        shop.request_withdrawal(chain.c.promoter_id, LEVEL_1 + 1)
    shop.request_withdrawal(chain.c.promoter_id, 300)
    with pytest.raises(InsufficientBalance):
        shop.request_withdrawal(chain.c.promoter_id, 201)
    shop.request_withdrawal(chain.c.promoter_id, 200)
    with pytest.raises(InsufficientBalance):
        shop.request_withdrawal(chain.c.promoter_id, 1)

    promoter = shop.get_promoter(chain.c.promoter_id)
    assert (promoter.available, promoter.withdrawn) == (0, LEVEL_1)
    available = ledger.available_account(chain.c.promoter_id)
    assert net(postings(shop))[available] == 0  # credited, then all withdrawn


def test_concurrent_withdrawals_never_take_the_balance_below_zero(chain: Chain, clock: ManualClock) -> None:
    shop = chain.shop
    orders = [chain.paid_order(chain.c.code) for _ in range(3)]
    clock.advance(WINDOW)
    for order in orders:
        shop.settle_commissions(order.order_id)
    balance = 3 * LEVEL_1  # 15.00
    assert chain.available(chain.c) == balance

    attempts, amount = 40, 70  # 28.00 asked for, 21 withdrawals of 0.70 fit
    barrier = threading.Barrier(attempts)

    def withdraw(_: int) -> str:
        barrier.wait()
        try:
            shop.request_withdrawal(chain.c.promoter_id, amount)
        except InsufficientBalance:
            return "refused"
        return "ok"

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        outcomes = Counter(pool.map(withdraw, range(attempts)))

    fits = balance // amount
    assert outcomes == {"ok": fits, "refused": attempts - fits}
    promoter = shop.get_promoter(chain.c.promoter_id)
    assert promoter.available == balance - fits * amount >= 0
    assert promoter.withdrawn == fits * amount
    withdrawn = [
        e for e in postings(shop, kind="withdrawal") if ledger.available_account(chain.c.promoter_id) in e
    ]
    assert len(withdrawn) == fits
    assert sum(e[ledger.CLEARING] for e in withdrawn) == -fits * amount


def test_a_refund_after_settlement_leaves_commissions_with_the_promoters(
    chain: Chain, clock: ManualClock
) -> None:
    shop = chain.shop
    order = chain.paid_order(chain.c.code)
    clock.advance(WINDOW)
    shop.settle_commissions(order.order_id)
    clock.advance(timedelta(days=1))
    shop.refund_order(order.order_id, "chargeback", None)

    assert chain.available(chain.c) == LEVEL_1
    assert chain.available(chain.b) == LEVEL_2
    (refund,) = postings(shop, order.order_id, "refund")
    assert not any(k.startswith("promoter:") for k in refund)
    # Over the order's life: the buyer has the money back, the promoters keep their
    # commissions, the platform returns its fee, and the merchant bears the commissions.
    assert net(postings(shop, order.order_id)) == Counter(
        {
            ledger.available_account(chain.c.promoter_id): -LEVEL_1,
            ledger.available_account(chain.b.promoter_id): -LEVEL_2,
            ledger.merchant_account(chain.merchant_id): LEVEL_1 + LEVEL_2,
        }
    )
    shop.request_withdrawal(chain.c.promoter_id, LEVEL_1)
    assert chain.available(chain.c) == 0


def test_the_whole_ledger_balances(shop: Shop) -> None:
    assert sum(net(postings(shop)).values()) == 0
