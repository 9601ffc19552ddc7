"""The read models against figures the test computes itself from the commands it sent.

One scenario drives real commands through the Shop (two merchants, three promoters in a
referral chain, auto and manual goods, wholesale pricing, a second payment, an expiry,
a late payment whose cards were taken, refunds before and after settlement, reviews,
disputes, a withdrawal), then checks every dashboard and payout field, the ledger, the
also-bought counts and the overview. The expectations below use only the commands'
inputs and the published business rules (fee table, commission rates, rounding down
to the fen), never projection code.
"""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from consumers.runner import LogRunner
from domain.clock import ManualClock
from domain.commissions import LEVEL_RATE_BPS
from domain.fees import FEE_RATE_BPS, NEW_MERCHANT_TIER
from domain.results import OrderPlaced
from domain.shop import Shop
from kami.bootstrap import Kami
from projections.also_bought import also_bought
from projections.base import Projection
from projections.dashboard import merchant_dashboard
from projections.ledger import ledger_balances
from projections.overview import platform_overview
from projections.payouts import promoter_payouts
from projections.registry import PROJECTIONS, build_all

PROVIDER = "sandbox"
FEE_BPS = FEE_RATE_BPS[NEW_MERCHANT_TIER]


def cut(amount: int, bps: int) -> int:
    """A rate of an amount, rounded down to the fen: the published rule for fees and
    commissions, restated here so the expectations do not come from the code under test."""
    return int(Decimal(amount) * bps / 10_000)


def half_up(total: int, count: int) -> int:
    return int((Decimal(total) / count).quantize(Decimal(1), ROUND_HALF_UP)) if count else 0


def day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# ------------------------------------------------------------------------- fixtures


@dataclass
class ReadSide:
    runner: LogRunner
    projections: list[Projection[Any]]
    version: int

    def catch_up(self) -> int:
        return self.runner.catch_up()


def fresh_read_side(kami: Kami, batch_size: int = 500, version: int | None = None) -> ReadSide:
    # A version of our own: fresh tables and positions, so the figures of other tests'
    # runners never mix with ours, while the same log (theirs included) is replayed.
    version = version or 1_000 + secrets.randbelow(10**6)
    projections = build_all({cls.read_model: version for cls in PROJECTIONS})
    runner = LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, projections, batch_size=batch_size)
    return ReadSide(runner, projections, version)


def drop(kami: Kami, read_side: ReadSide) -> None:
    with kami.pool.connection() as conn:
        for projection in read_side.projections:
            projection.drop_tables(conn)
        conn.execute(
            "DELETE FROM kami_tracking WHERE name = ANY(%s)",
            ([p.name for p in read_side.projections],),
        )


@pytest.fixture
def read_side(kami: Kami) -> Iterator[ReadSide]:
    side = fresh_read_side(kami)
    yield side
    drop(kami, side)


def all_rows(conn: psycopg.Connection[Any], side: ReadSide) -> dict[str, Any]:
    return {p.read_model: p.rows(conn) for p in side.projections}


# ------------------------------------------------------------------------- scenario


@dataclass
class Sale:
    """An honoured payment, as the test saw it."""

    order_id: UUID
    merchant_id: UUID
    product_id: UUID
    buyer: str
    quantity: int
    amount: int
    fee: int
    at: datetime
    # promoter -> (level, amount)
    commissions: dict[UUID, tuple[int, int]]
    refunded: bool = False
    settled: bool = False
    refunded_after_settlement: bool = False


@dataclass
class Expected:
    """What the test did, in the terms of the read models' definitions."""

    sales: list[Sale] = field(default_factory=list)
    ratings: dict[UUID, list[int]] = field(default_factory=lambda: defaultdict(list))
    disputes: Counter[UUID] = field(default_factory=Counter)
    resolved: Counter[UUID] = field(default_factory=Counter)
    withdrawn: Counter[UUID] = field(default_factory=Counter)
    imported: Counter[UUID] = field(default_factory=Counter)
    voided: Counter[UUID] = field(default_factory=Counter)
    referrer: dict[UUID, UUID | None] = field(default_factory=dict)
    # Money that came in and went straight back (second or unhonoured payments).
    returned: int = 0


@dataclass
class Scenario:
    shop: Shop
    clock: ManualClock
    expected: Expected = field(default_factory=Expected)
    chains: dict[str, list[UUID]] = field(default_factory=dict)
    merchant_of: dict[UUID, UUID] = field(default_factory=dict)
    placed: dict[UUID, tuple[OrderPlaced, UUID, str, str | None]] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid4().hex[:8])

    def merchant(self) -> UUID:
        return self.shop.register_merchant(f"shop-{uuid4().hex[:6]}", "owner@example.com").merchant_id

    def product(self, merchant_id: UUID, price: int, delivery: str, cards: int = 0, **kw: Any) -> UUID:
        self.clock.advance(timedelta(seconds=1))  # so that listing order is well defined
        product_id = self.shop.list_product(
            merchant_id, f"p-{uuid4().hex[:6]}", price, delivery, **kw
        ).product_id
        self.merchant_of[product_id] = merchant_id
        if cards:
            self.shop.import_cards(merchant_id, product_id, [uuid4().hex for _ in range(cards)])
            self.expected.imported[product_id] += cards
        return product_id

    def promoter(self, referrer_code: str | None = None) -> tuple[UUID, str]:
        joined = self.shop.join_promoter(f"pr-{uuid4().hex[:6]}", "p@example.com", referrer_code)
        referrer = self.chains[referrer_code][0] if referrer_code else None
        self.chains[joined.code] = [joined.promoter_id] + ([referrer] if referrer else [])
        self.expected.referrer[joined.promoter_id] = referrer
        return joined.promoter_id, joined.code

    def order(self, product_id: UUID, quantity: int, contact: str, code: str | None = None) -> OrderPlaced:
        # Buyers are platform-wide: tag them so other stories' alices stay other people.
        contact = contact.replace("@", f"+{self.tag}@")
        placed = self.shop.place_order(product_id, quantity, contact, code)
        self.placed[placed.order_id] = (placed, product_id, contact, code)
        return placed

    def pay(self, placed: OrderPlaced, honoured: bool = True) -> None:
        self.shop.record_payment(PROVIDER, placed.order_id, uuid4().hex, placed.amount)
        if not honoured:
            self.expected.returned += placed.amount
            return
        _, product_id, contact, code = self.placed[placed.order_id]
        chain = self.chains[code][:2] if code else []
        commissions = {
            promoter: (level, cut(placed.amount, LEVEL_RATE_BPS[level]))
            for level, promoter in enumerate(chain, start=1)
        }
        self.expected.sales.append(
            Sale(
                order_id=placed.order_id,
                merchant_id=self.merchant_of[product_id],
                product_id=product_id,
                buyer=contact.strip().lower(),
                quantity=placed.quantity,
                amount=placed.amount,
                fee=cut(placed.amount, FEE_BPS),
                at=self.clock(),
                commissions=commissions,
            )
        )

    def sale(self, order_id: UUID) -> Sale:
        found = self.find(order_id)
        assert found is not None, "not an honoured payment"
        return found

    def find(self, order_id: UUID) -> Sale | None:
        return next((s for s in self.expected.sales if s.order_id == order_id), None)

    def second_payment(self, placed: OrderPlaced) -> None:
        self.shop.record_payment(PROVIDER, placed.order_id, uuid4().hex, placed.amount)
        self.expected.returned += placed.amount

    def refund(self, placed: OrderPlaced) -> None:
        sale = self.sale(placed.order_id)
        self.shop.refund_order(placed.order_id, "changed my mind", sale.merchant_id)
        sale.refunded = True
        sale.refunded_after_settlement = sale.settled

    def settle(self, placed: OrderPlaced) -> None:
        self.shop.settle_commissions(placed.order_id)
        sale = self.find(placed.order_id)
        if sale is not None and not sale.refunded and sale.commissions:
            sale.settled = True

    def review(self, placed: OrderPlaced, rating: int) -> None:
        self.shop.review_order(placed.order_id, placed.token, rating, "")
        self.expected.ratings[self.sale(placed.order_id).merchant_id].append(rating)

    def dispute(self, placed: OrderPlaced) -> None:
        self.shop.dispute_order(placed.order_id, placed.token, "the code did not work")
        self.expected.disputes[self.sale(placed.order_id).merchant_id] += 1

    def resolve(self, placed: OrderPlaced) -> None:
        merchant_id = self.sale(placed.order_id).merchant_id
        self.shop.resolve_dispute(merchant_id, placed.order_id, "sent a new code")
        self.expected.resolved[merchant_id] += 1

    def withdraw(self, promoter_id: UUID, amount: int) -> None:
        self.shop.request_withdrawal(promoter_id, amount)
        self.expected.withdrawn[promoter_id] += amount


# ---------------------------------------------------------------- expected figures


def net_of(sale: Sale) -> int:
    """What the merchant keeps of a sale: the amount less fee and commissions; nothing
    once refunded, except that commissions already settled are the merchant's loss."""
    paid_out = sale.fee + sum(a for _, a in sale.commissions.values())
    if not sale.refunded:
        return sale.amount - paid_out
    if sale.refunded_after_settlement:
        return -sum(a for _, a in sale.commissions.values())
    return 0


def expected_dashboard(s: Scenario, merchant_id: UUID) -> dict[str, Any]:
    sales = [x for x in s.expected.sales if x.merchant_id == merchant_id]
    refunded = [x for x in sales if x.refunded]
    per_buyer = Counter(x.buyer for x in sales)
    ratings = s.expected.ratings[merchant_id]
    gmv = sum(x.amount for x in sales)
    daily: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for x in sales:
        daily[day(x.at)][0] += x.amount
        daily[day(x.at)][1] += 1
    return {
        "gmv": gmv,
        "orders_paid": len(sales),
        "orders_refunded": len(refunded),
        "refund_amount": sum(x.amount for x in refunded),
        "platform_fees": sum(x.fee for x in sales) - sum(x.fee for x in refunded),
        "net_revenue": sum(net_of(x) for x in sales),
        "avg_ticket": half_up(gmv, len(sales)),
        "buyers": len(per_buyer),
        "repeat_buyers": sum(1 for n in per_buyer.values() if n >= 2),
        "repeat_rate": (sum(1 for n in per_buyer.values() if n >= 2) / len(per_buyer)) if per_buyer else 0.0,
        "reviews": len(ratings),
        "avg_rating": sum(ratings) / len(ratings) if ratings else 0.0,
        "good_review_rate": sum(1 for r in ratings if r >= 4) / len(ratings) if ratings else 0.0,
        "disputes": s.expected.disputes[merchant_id],
        "disputes_resolved": s.expected.resolved[merchant_id],
        "daily": sorted((d, g, n) for d, (g, n) in daily.items()),
    }


def expected_payouts(s: Scenario, promoter_id: UUID) -> dict[str, Any]:
    pending = available = reversed_ = 0
    history = []
    for x in s.expected.sales:
        if promoter_id not in x.commissions:
            continue
        level, amount = x.commissions[promoter_id]
        if x.settled:
            status, available = "available", available + amount
        elif x.refunded:
            status, reversed_ = "reversed", reversed_ + amount
        else:
            status, pending = "pending", pending + amount
        history.append((x.order_id, level, amount, status))
    withdrawn = s.expected.withdrawn[promoter_id]
    direct = [p for p, r in s.expected.referrer.items() if r == promoter_id]
    indirect = [p for p, r in s.expected.referrer.items() if r in direct]
    return {
        "level": 1,
        "pending": pending,
        "available": available - withdrawn,
        "withdrawn": withdrawn,
        "reversed": reversed_,
        "direct_referrals": len(direct),
        "indirect_referrals": len(indirect),
        "history": sorted(history, key=lambda h: str(h[0])),
    }


def expected_also_bought(s: Scenario, product_id: UUID) -> dict[UUID, int]:
    orders: dict[str, Counter[UUID]] = defaultdict(Counter)
    for x in s.expected.sales:
        orders[x.buyer][x.product_id] += 1
    result: Counter[UUID] = Counter()
    for bought in orders.values():
        if bought[product_id]:
            for other, n in bought.items():
                if other != product_id:
                    result[other] += n
    return dict(result)


# --------------------------------------------------------------------------- the story


@dataclass
class Story:
    s: Scenario
    merchants: tuple[UUID, UUID]
    products: dict[str, UUID]
    promoters: dict[str, UUID]
    orders: dict[str, OrderPlaced]
    captured: Any = None
    captured_at: datetime | None = None
    captured_position: int = 0
    position_before: int = 0


def tell_story(kami: Kami, clock: ManualClock, side: ReadSide) -> Story:
    shop = kami.shop
    s = Scenario(shop, clock)
    position_before = shop.position()
    a, b = s.merchant(), s.merchant()
    x = s.product(a, 1000, "auto", cards=20, wholesale=[(5, 900)])
    y = s.product(a, 2500, "auto", cards=5)
    z = s.product(a, 5000, "manual")
    w = s.product(b, 300, "auto", cards=10)
    # One card of X is voided before any order, so it is surely free.
    x_cards = shop.import_cards(a, x, [uuid4().hex]).card_ids
    s.expected.imported[x] += 1
    shop.void_card(a, x, x_cards[0], "leaked")
    s.expected.voided[x] += 1

    p1, code1 = s.promoter()
    p2, code2 = s.promoter(code1)
    p3, code3 = s.promoter(code2)

    o: dict[str, OrderPlaced] = {}
    o["alice_x"] = s.order(x, 2, "  Alice@Example.com ", code2)
    s.pay(o["alice_x"])
    o["alice_y"] = s.order(y, 1, "alice@example.com")
    s.pay(o["alice_y"])
    o["bob_x"] = s.order(x, 5, "bob@example.com")  # wholesale: 5 x 9.00
    s.pay(o["bob_x"])
    o["carol_z"] = s.order(z, 1, "carol@example.com", code3)
    s.pay(o["carol_z"])
    shop.deliver_manual(a, o["carol_z"].order_id, "your licence: ...")
    o["erin_y"] = s.order(y, 1, "erin@example.com", code1)
    s.pay(o["erin_y"])
    s.second_payment(o["alice_x"])  # recorded and sent back; the order is unchanged

    # Dave never pays: his order expires and gives its card back.
    o["dave_x"] = s.order(x, 1, "dave@example.com")
    # Frank reserves Y's last three cards and lets the reservation lapse; Gina takes
    # two of them before the expiry process runs; Frank's late payment finds too few
    # cards and is returned, and the card he still holds is free again.
    o["frank_y"] = s.order(y, 3, "frank@example.com")
    clock.advance(timedelta(minutes=16))
    o["gina_y"] = s.order(y, 2, "gina@example.com")
    s.pay(o["gina_y"])
    shop.expire_order(o["dave_x"].order_id)
    s.pay(o["frank_y"], honoured=False)

    o["bob_w"] = s.order(w, 2, "BOB@example.com")
    s.pay(o["bob_w"])
    o["alice_w"] = s.order(w, 1, "alice@example.com")
    s.pay(o["alice_w"])

    s.review(o["alice_x"], 5)
    s.review(o["alice_y"], 3)
    s.review(o["bob_x"], 4)
    s.review(o["bob_w"], 2)
    s.dispute(o["bob_x"])
    clock.advance(timedelta(hours=2))
    s.resolve(o["bob_x"])
    s.dispute(o["carol_z"])
    s.refund(o["erin_y"])  # inside the window: P1's commission is reversed

    # The auditor's instant: the read side has caught up; remember the ledger.
    story = Story(s, (a, b), {"x": x, "y": y, "z": z, "w": w}, {"p1": p1, "p2": p2, "p3": p3}, o)
    story.position_before = position_before
    side.catch_up()
    with kami.pool.connection() as conn:
        story.captured = ledger_balances(conn, version=side.version)
    story.captured_at = clock()
    story.captured_position = shop.position()
    clock.advance(timedelta(seconds=1))

    # The after-sales window closes; commissions settle; then a late refund.
    clock.advance(timedelta(days=7, hours=1))
    for placed in o.values():
        s.settle(placed)
    s.withdraw(p2, 50)
    s.refund(o["alice_x"])  # after settlement: the commissions stay with P2 and P1
    o["hank_x"] = s.order(x, 1, "hank@example.com", code3)
    s.pay(o["hank_x"])  # its commissions stay pending
    return story


# ------------------------------------------------------------------------------ tests


def test_every_dashboard_figure_matches_the_commands(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    s = story.s
    with kami.pool.connection() as conn:
        for merchant_id in story.merchants:
            dash = merchant_dashboard(conn, merchant_id, version=read_side.version)
            assert dash is not None
            want = expected_dashboard(s, merchant_id)
            got = {k: getattr(dash, k) for k in want if k != "daily"}
            got["daily"] = [(d.date, d.gmv, d.orders_paid) for d in dash.daily]
            assert got == want
            # Products in listing order, with stock as the aggregate counts it (no
            # reservation is lapsed now) and as imported - sold - voided.
            mine = [p for p, m in s.merchant_of.items() if m == merchant_id]
            assert [p.product_id for p in dash.products] == mine
            for figures in dash.products:
                sold = sum(x.quantity for x in s.expected.sales if x.product_id == figures.product_id)
                assert figures.sold == sold
                assert figures.stock == kami.shop.get_product(figures.product_id).stock
                if figures.delivery == "auto":
                    imported = s.expected.imported[figures.product_id]
                    assert figures.stock == imported - sold - s.expected.voided[figures.product_id]
    # Spot checks that the story did what it says, so the comparison above is not vacuous.
    a, y = story.merchants[0], story.products["y"]
    assert kami.shop.get_product(y).stock == 1  # the card Frank's returned payment left
    assert s.expected.returned == story.orders["alice_x"].amount + story.orders["frank_y"].amount
    assert expected_dashboard(s, a)["repeat_buyers"] == 1  # alice; bob's W was at the other shop
    assert expected_dashboard(s, a)["orders_refunded"] == 2


def test_dashboard_follows_stock_while_orders_hold_cards(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    shop = kami.shop
    s = Scenario(shop, clock)
    merchant_id = s.merchant()
    product_id = s.product(merchant_id, 800, "auto", cards=6)

    def stock() -> int:
        read_side.catch_up()
        with kami.pool.connection() as conn:
            dash = merchant_dashboard(conn, merchant_id, version=read_side.version)
        assert dash is not None
        return dash.products[0].stock

    held = s.order(product_id, 2, "ann@example.com")
    assert stock() == shop.get_product(product_id).stock == 4
    s.pay(held)
    assert stock() == shop.get_product(product_id).stock == 4
    lapsed = s.order(product_id, 3, "ben@example.com")
    assert stock() == 1
    clock.advance(timedelta(minutes=20))
    # The aggregate frees a lapsed reservation at once; the projection once the expiry
    # process has recorded it.
    assert shop.get_product(product_id).stock == 4
    assert stock() == 1
    shop.expire_order(lapsed.order_id)
    assert stock() == shop.get_product(product_id).stock == 4


def test_every_payout_figure_matches_the_commands(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    with kami.pool.connection() as conn:
        for promoter_id in story.promoters.values():
            payouts = promoter_payouts(conn, promoter_id, version=read_side.version)
            assert payouts is not None
            got = {
                "level": payouts.level,
                "pending": payouts.pending,
                "available": payouts.available,
                "withdrawn": payouts.withdrawn,
                "reversed": payouts.reversed,
                "direct_referrals": payouts.direct_referrals,
                "indirect_referrals": payouts.indirect_referrals,
                "history": sorted(
                    ((h.order_id, h.level, h.amount, h.status) for h in payouts.history),
                    key=lambda h: str(h[0]),
                ),
            }
            assert got == expected_payouts(story.s, promoter_id)
            # The aggregate agrees on what may be withdrawn.
            assert payouts.available == kami.shop.get_promoter(promoter_id).available
    p1 = expected_payouts(story.s, story.promoters["p1"])
    assert p1["reversed"] > 0 and p1["available"] > 0 and p1["indirect_referrals"] == 1
    assert expected_payouts(story.s, story.promoters["p3"])["pending"] > 0


def test_ledger_balances_match_the_commands_and_sum_to_zero(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    s = story.s
    with kami.pool.connection() as conn:
        now = ledger_balances(conn, version=read_side.version)
        before = ledger_balances(conn, until=story.position_before, version=read_side.version)
    assert now.total == 0 and before.total == 0
    for merchant_id in story.merchants:
        want = -sum(net_of(x) for x in s.expected.sales if x.merchant_id == merchant_id)
        assert now.accounts[f"merchant:{merchant_id}"] == want
    for promoter_id in story.promoters.values():
        figures = expected_payouts(s, promoter_id)
        assert now.accounts.get(f"promoter:{promoter_id}:pending", 0) == -figures["pending"]
        assert now.accounts.get(f"promoter:{promoter_id}:available", 0) == -figures["available"]

    def moved(account: str) -> int:
        return now.accounts.get(account, 0) - before.accounts.get(account, 0)

    kept = [x for x in s.expected.sales if not x.refunded]
    assert moved("platform:clearing") == sum(x.amount for x in kept) - sum(s.expected.withdrawn.values())
    assert moved("platform:fees") == -sum(x.fee for x in kept)
    assert moved("platform:refunds") == 0  # every unhonoured payment went back


def test_ledger_as_of_an_earlier_instant_equals_what_was_read_then(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    captured = story.captured.accounts
    with kami.pool.connection() as conn:
        by_position = ledger_balances(conn, until=story.captured_position, version=read_side.version)
        by_time = ledger_balances(conn, as_of=story.captured_at, version=read_side.version)
        now = ledger_balances(conn, version=read_side.version)
    assert by_position.accounts == captured
    assert by_position.total == 0 and by_time.total == 0
    # Other tests' clocks wander, so by time compare the accounts only this story touched.
    ours = [
        a for a in now.accounts if any(str(i) in a for i in (*story.merchants, *story.promoters.values()))
    ]
    assert ours and {a: by_time.accounts.get(a) for a in ours} == {a: captured.get(a) for a in ours}
    assert now.accounts != captured  # the story went on after the instant


def test_also_bought_counts_paid_orders_of_the_same_buyers(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    with kami.pool.connection() as conn:
        for product_id in story.products.values():
            got = {
                a.product_id: a.orders
                for a in also_bought(conn, product_id, limit=100, version=read_side.version)
            }
            assert got == expected_also_bought(story.s, product_id)
    x, w = story.products["x"], story.products["w"]
    assert expected_also_bought(story.s, x)[w] == 2  # bob and alice each bought W once


def test_overview_totals_grow_by_what_the_commands_did(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    read_side.catch_up()
    with kami.pool.connection() as conn:
        before = platform_overview(conn, version=read_side.version)
    story = tell_story(kami, clock, read_side)
    read_side.catch_up()
    with kami.pool.connection() as conn:
        after = platform_overview(conn, version=read_side.version)
    s = story.s
    sales, refunded = s.expected.sales, [x for x in s.expected.sales if x.refunded]
    assert after.gmv - before.gmv == sum(x.amount for x in sales)
    assert after.orders_paid - before.orders_paid == len(sales)
    assert after.orders_placed - before.orders_placed == len(story.orders)
    assert after.orders_refunded - before.orders_refunded == len(refunded)
    assert after.refund_amount - before.refund_amount == sum(x.amount for x in refunded)
    fees = sum(x.fee for x in sales) - sum(x.fee for x in refunded)
    assert after.platform_fees - before.platform_fees == fees
    assert after.take_rate == after.platform_fees / after.gmv
    assert after.merchants - before.merchants == 2
    assert after.merchants_by_tier[NEW_MERCHANT_TIER] - before.merchants_by_tier[NEW_MERCHANT_TIER] == 2
    assert sum(after.merchants_by_tier.values()) == after.merchants
    assert after.products - before.products == 4
    assert after.promoters - before.promoters == 3


def test_a_tier_change_moves_the_merchant_between_tiers(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    s = Scenario(kami.shop, clock)
    merchant_id = s.merchant()
    read_side.catch_up()
    with kami.pool.connection() as conn:
        before = platform_overview(conn, version=read_side.version).merchants_by_tier
    kami.shop.change_tier(merchant_id, "core", 93.5, "strong month")
    read_side.catch_up()
    with kami.pool.connection() as conn:
        after = platform_overview(conn, version=read_side.version).merchants_by_tier
    assert after["core"] - before["core"] == 1
    assert after[NEW_MERCHANT_TIER] - before[NEW_MERCHANT_TIER] == -1


def test_catching_up_twice_changes_nothing(kami: Kami, clock: ManualClock, read_side: ReadSide) -> None:
    tell_story(kami, clock, read_side)
    assert read_side.catch_up() > 0
    with kami.pool.connection() as conn:
        first = all_rows(conn, read_side)
    # The position committed with each batch stops the runner from applying it again.
    assert read_side.catch_up() == 0
    with kami.pool.connection() as conn:
        assert all_rows(conn, read_side) == first
        for projection in read_side.projections:
            assert read_side.runner.position(projection.name) == kami.shop.position()


def test_a_rebuild_from_zero_equals_the_live_projection_row_for_row(
    kami: Kami, clock: ManualClock, read_side: ReadSide
) -> None:
    tell_story(kami, clock, read_side)
    read_side.catch_up()
    with kami.pool.connection() as conn:
        live = all_rows(conn, read_side)
        # In place: drop the tables, reset the positions, replay everything.
        for projection in read_side.projections:
            projection.drop_tables(conn)
            projection.create_tables(conn)
            conn.execute("UPDATE kami_tracking SET position = 0 WHERE name = %s", (projection.name,))
    read_side.catch_up()
    with kami.pool.connection() as conn:
        assert all_rows(conn, read_side) == live
    # Beside the live version, cut into other batches: the rows do not depend on where
    # the log was cut.
    beside = fresh_read_side(kami, batch_size=37, version=read_side.version + 1)
    try:
        beside.catch_up()
        with kami.pool.connection() as conn:
            assert all_rows(conn, beside) == live
    finally:
        drop(kami, beside)


def test_queries_read_the_live_version(kami: Kami, clock: ManualClock, read_side: ReadSide) -> None:
    from projections import catalog
    from projections.dashboard import DashboardProjection

    s = Scenario(kami.shop, clock)
    merchant_id = s.merchant()
    read_side.catch_up()
    with kami.pool.connection() as conn:
        live_before = catalog.live_version(conn, "dashboard")
        try:
            catalog.promote(conn, "dashboard", read_side.version)
            assert DashboardProjection.live(conn).version == read_side.version
            assert merchant_dashboard(conn, merchant_id) is not None
        finally:
            if live_before is None:
                conn.execute("DELETE FROM rm_catalog WHERE read_model = 'dashboard'")
            else:
                catalog.promote(conn, "dashboard", live_before)
