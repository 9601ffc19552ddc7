"""Platform overview for the admin (``GET /v1/admin/overview``).

Definitions (money in fen), platform-wide, with the dashboard's meaning of each term:

- **gmv / orders_paid**: honoured payments (gross) and their count;
  **orders_placed**: every order placed, paid or not.
- **orders_refunded / refund_amount**: refunds of honoured payments.
- **platform_fees**: fees the ledger gave the platform, net of fees given back by
  refunds; **take_rate** = platform_fees / gmv (0.0 with no gmv).
- **merchants_by_tier**: merchants in each tier, from ``Merchant.Registered`` and
  ``Merchant.TierChanged``; every tier of domain.fees appears, with 0 if empty.
- **merchants / products / promoters**: how many registered, were listed, joined.

Nothing here needs a lookup: every event carries what it counts (a tier change its old
tier, a posting its fee entry), so a batch is only blind additions, and the rows are
the same in any order of the aggregates' events (``projections.base``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from domain.fees import TIERS
from domain.ledger import CLEARING, FEES
from domain.merchant import Merchant
from domain.order import Order
from domain.posting import Posting
from domain.product import Product
from domain.promoter import Promoter
from projections.base import Batch, Projection, Table, counter, handles, key, snapshot
from projections.definitions import PAYMENT, REFUND, ratio

PLATFORM = "platform"  # the one row of totals

TOTALS = Table(
    "totals",
    (
        key("scope", "text"),
        counter("gmv"),
        counter("orders_placed"),
        counter("orders_paid"),
        counter("orders_refunded"),
        counter("refund_amount"),
        counter("platform_fees"),
        counter("merchants"),
        counter("products"),
        counter("promoters"),
    ),
    ("scope",),
)
TIER_COUNTS = Table("tiers", (key("tier", "text"), counter("merchants")), ("tier",))


class OverviewProjection(Projection[Batch]):
    read_model = "overview"
    tables = (TOTALS, TIER_COUNTS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        return Batch(self)

    @handles(Merchant.Registered)
    def merchant_registered(self, b: Batch, _: int, e: Merchant.Registered) -> None:
        b["totals"].add((PLATFORM,), merchants=1)
        b["tiers"].add((e.tier,), merchants=1)

    @handles(Merchant.TierChanged)
    def merchant_tier_changed(self, b: Batch, _: int, e: Merchant.TierChanged) -> None:
        b["tiers"].add((e.old_tier,), merchants=-1)
        b["tiers"].add((e.new_tier,), merchants=1)

    @handles(Product.Listed)
    def product_listed(self, b: Batch, _: int, e: Product.Listed) -> None:
        b["totals"].add((PLATFORM,), products=1)

    @handles(Promoter.Joined)
    def promoter_joined(self, b: Batch, _: int, e: Promoter.Joined) -> None:
        b["totals"].add((PLATFORM,), promoters=1)

    @handles(Order.Placed)
    def order_placed(self, b: Batch, _: int, e: Order.Placed) -> None:
        b["totals"].add((PLATFORM,), orders_placed=1)

    @handles(Posting.Recorded)
    def posting_recorded(self, b: Batch, _: int, e: Posting.Recorded) -> None:
        # The fee entry is read from the posting: the fee rule lives in domain.ledger.
        cash, fees = e.entries.get(CLEARING, 0), -e.entries.get(FEES, 0)
        if e.kind == PAYMENT:
            b["totals"].add((PLATFORM,), gmv=cash, orders_paid=1, platform_fees=fees)
        elif e.kind == REFUND:
            b["totals"].add((PLATFORM,), orders_refunded=1, refund_amount=-cash, platform_fees=fees)


@dataclass(frozen=True)
class Overview:
    gmv: int
    orders_placed: int
    orders_paid: int
    orders_refunded: int
    refund_amount: int
    platform_fees: int
    take_rate: float
    merchants: int
    merchants_by_tier: dict[str, int]
    products: int
    promoters: int


def platform_overview(conn: psycopg.Connection[Any], *, version: int | None = None) -> Overview:
    with snapshot(conn):
        p = OverviewProjection.live(conn, version)
        row = conn.execute(
            "SELECT gmv, orders_placed, orders_paid, orders_refunded, refund_amount,"
            f" platform_fees, merchants, products, promoters FROM {p.table('totals')}"
            " WHERE scope = %s",
            (PLATFORM,),
        ).fetchone()
        tiers = dict(conn.execute(f"SELECT tier, merchants FROM {p.table('tiers')}").fetchall())
    gmv, placed, paid, refunded, refund_amount, fees, merchants, products, promoters = row or (0,) * 9
    by_tier = {tier: int(tiers.get(tier, 0)) for tier in TIERS}
    # A tier the fee table no longer names still shows, rather than hiding merchants.
    by_tier.update({t: int(n) for t, n in tiers.items() if t not in by_tier})
    return Overview(
        gmv=gmv,
        orders_placed=placed,
        orders_paid=paid,
        orders_refunded=refunded,
        refund_amount=refund_amount,
        platform_fees=fees,
        take_rate=ratio(fees, gmv),
        merchants=merchants,
        merchants_by_tier=by_tier,
        products=products,
        promoters=promoters,
    )
