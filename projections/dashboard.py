"""Merchant dashboard (``GET /v1/merchants/{id}/dashboard``): exact figures per merchant.

Definitions (money in fen; days are UTC calendar days of the event's business time):

- **honoured payment**: an ``Order.Paid`` with ``honoured`` true. A payment an order
  could not honour (a second payment, a late payment that found no cards) is sent back
  and counts nowhere here.
- **gmv**: the sum of honoured payments (``Order.Paid.amount``), gross: an order
  refunded later still counts.
- **orders_paid**: orders with an honoured payment (gross, like gmv).
- **orders_refunded / refund_amount**: orders refunded (``Order.Refunded``) after an
  honoured payment, and the sum of their refunds. The automatic return of a payment
  that was never honoured is not a refund of a sale.
- **platform_fees**: the fees the ledger gave the platform on this merchant's orders,
  net of the fees given back by refunds: the ``platform:fees`` entries of the
  ``payment`` and ``refund`` postings that name the merchant's account.
- **net_revenue**: what the merchant earned from sales: the ``merchant:<id>`` entries of
  payment and refund postings, sign flipped (so merchant payouts, when they come, do
  not reduce it). After a refund of a settled order it shows the commissions the
  merchant bore.
- **avg_ticket**: gmv / orders_paid in whole fen, rounded half up; 0 with no orders.
- **buyers**: distinct buyers (contact trimmed and lower-cased) with an honoured
  payment; **repeat_buyers**: those with two or more; **repeat_rate** = repeat / buyers.
- **reviews / avg_rating / good_review_rate**: every review of the merchant's orders;
  mean rating; share rated 4 or 5.
- **disputes**: disputes opened (``disputes_resolved``: those resolved).
- **products**: every product the merchant listed, in listing order:
  - ``sold``: units in orders with an honoured payment (gross);
  - ``stock`` (auto goods): cards imported - claimed - voided - held, all from the
    card buckets' own events. A card is held from its reservation until it is
    claimed, released or voided; a card reserved again (its first reservation lapsed)
    is held once, by its new order. An order that will not take its cards releases
    them (expiry, a payment sent back), so a reservation that lapsed counts as held
    until that release is recorded (a projection cannot see time pass); the Product
    aggregate frees it at its deadline. Manual goods hold no cards: stock 0.
- **daily**: per day with an honoured payment: that day's gmv and orders_paid.

Rates are 0.0 when their denominator is 0.

Order (``projections.base``): each handler reads only what earlier events of its own
aggregate wrote: an order's merchant, product, buyer and whether it was honoured (its
``Order.Placed`` and ``Order.Paid``), a bucket's product (its ``CardBucket.Opened``), a
card's holder (its bucket's reservations). Merchant, product and buyer rows meet the
facts of many aggregates only as counters and puts of their own columns, so the rows
are the same whatever order the aggregates' events arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import psycopg

from domain.card_stock import CardBucket
from domain.merchant import Merchant
from domain.order import Order
from domain.posting import Posting
from domain.product import Product
from projections.base import (
    Batch,
    Projection,
    Table,
    counter,
    day_of,
    fact,
    handles,
    key,
    of_type,
    snapshot,
    value,
)
from projections.definitions import (
    REPEAT_ORDERS,
    SALES_KINDS,
    average_fen,
    buyer_of,
    is_good,
    mean,
    merchant_in,
    movement,
    ratio,
)

MERCHANTS = Table(
    "merchants",
    (
        key("merchant_id", "uuid"),
        value("name", "text"),
        counter("gmv"),
        counter("orders_paid"),
        counter("orders_refunded"),
        counter("refund_amount"),
        counter("platform_fees"),
        counter("net_revenue"),
        counter("reviews"),
        counter("rating_sum"),
        counter("good_reviews"),
        counter("disputes"),
        counter("disputes_resolved"),
    ),
    ("merchant_id",),
)
BUYERS = Table(
    "buyers",
    (key("merchant_id", "uuid"), key("buyer", "text"), counter("paid_orders")),
    ("merchant_id", "buyer"),
)
DAILY = Table(
    "daily",
    (key("merchant_id", "uuid"), key("day", "date"), counter("gmv"), counter("orders_paid")),
    ("merchant_id", "day"),
)
PRODUCTS = Table(
    "products",
    (
        key("product_id", "uuid"),
        value("merchant_id", "uuid"),
        value("title", "text"),
        value("delivery", "text"),
        value("price", "bigint"),
        value("listed", "boolean"),
        value("listed_at", "timestamptz"),
        counter("imported"),
        counter("claimed"),
        counter("voided"),
        counter("sold"),
    ),
    ("product_id",),
    indexes=(("merchant_id",),),
)
# Facts that later events of the same aggregate need: an order's merchant, product,
# buyer and whether its payment was honoured; a bucket's product; which order holds a
# card (written by its bucket's events only).
ORDERS = Table(
    "orders",
    (
        key("order_id", "uuid"),
        fact("merchant_id", "uuid"),
        fact("product_id", "uuid"),
        fact("buyer", "text"),
        fact("quantity", "integer"),
        value("honoured", "boolean"),
    ),
    ("order_id",),
)
BUCKETS = Table("buckets", (key("bucket_id", "uuid"), fact("product_id", "uuid")), ("bucket_id",))
HOLDS = Table(
    "holds",
    (key("card_id", "text"), fact("product_id", "uuid"), fact("order_id", "uuid")),
    ("card_id",),
    # Counted per product when read; ended per card, never per order.
    indexes=(("product_id",),),
)


class DashboardBatch(Batch):
    """Holds are a card's own state: its bucket's events alone put and end them."""

    def hold(self, card_id: str, product_id: UUID, order_id: UUID) -> None:
        # A card reserved again replaces its holder: held once, by the new order.
        self["holds"].put((card_id,), product_id=product_id, order_id=order_id)

    def release(self, card_id: str) -> None:
        self["holds"].delete((card_id,))


_BUCKET_EVENTS = (
    CardBucket.CardsImported,
    CardBucket.CardsReserved,
    CardBucket.CardsClaimed,
    CardBucket.CardVoided,
)
_ORDER_EVENTS = (Order.Paid, Order.Refunded, Order.Reviewed, Order.Disputed, Order.DisputeResolved)


class DashboardProjection(Projection[DashboardBatch]):
    read_model = "dashboard"
    tables = (MERCHANTS, BUYERS, DAILY, PRODUCTS, ORDERS, BUCKETS, HOLDS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> DashboardBatch:
        batch = DashboardBatch(self)
        placed = {e.originator_id for e in of_type(events, Order.Placed)}
        orders = {e.originator_id for e in of_type(events, *_ORDER_EVENTS)}
        batch["orders"].load(conn, [(o,) for o in orders - placed])
        opened = {e.originator_id for e in of_type(events, CardBucket.Opened)}
        buckets = {e.originator_id for e in of_type(events, *_BUCKET_EVENTS)}
        batch["buckets"].load(conn, [(b,) for b in buckets - opened])
        return batch

    @staticmethod
    def _order(batch: DashboardBatch, order_id: UUID) -> Mapping[str, Any]:
        order = batch["orders"].get((order_id,))
        if order is None:
            raise LookupError(f"order {order_id} has an event but was never placed")
        return order

    @staticmethod
    def _product_of(batch: DashboardBatch, bucket_id: UUID) -> UUID:
        bucket = batch["buckets"].get((bucket_id,))
        if bucket is None:
            raise LookupError(f"card bucket {bucket_id} has an event but was never opened")
        return bucket["product_id"]  # type: ignore[no-any-return]

    # merchants and products ------------------------------------------------------------

    @handles(Merchant.Registered)
    def merchant_registered(self, b: DashboardBatch, _: int, e: Merchant.Registered) -> None:
        b["merchants"].put((e.originator_id,), name=e.name)

    @handles(Product.Listed)
    def product_listed(self, b: DashboardBatch, _: int, e: Product.Listed) -> None:
        b["products"].put(
            (e.originator_id,),
            merchant_id=e.merchant_id,
            title=e.title,
            delivery=e.delivery,
            price=e.price,
            listed=True,
            listed_at=e.timestamp,
        )

    @handles(Product.PriceChanged)
    def product_price_changed(self, b: DashboardBatch, _: int, e: Product.PriceChanged) -> None:
        b["products"].put((e.originator_id,), price=e.price)

    @handles(Product.Delisted)
    def product_delisted(self, b: DashboardBatch, _: int, e: Product.Delisted) -> None:
        b["products"].put((e.originator_id,), listed=False)

    # card stock ------------------------------------------------------------------------

    @handles(CardBucket.Opened)
    def card_bucket_opened(self, b: DashboardBatch, _: int, e: CardBucket.Opened) -> None:
        b["buckets"].put((e.originator_id,), product_id=e.product_id)

    @handles(CardBucket.CardsImported)
    def card_bucket_cards_imported(self, b: DashboardBatch, _: int, e: CardBucket.CardsImported) -> None:
        b["products"].add((self._product_of(b, e.originator_id),), imported=len(e.cards))

    @handles(CardBucket.CardsReserved)
    def card_bucket_cards_reserved(self, b: DashboardBatch, _: int, e: CardBucket.CardsReserved) -> None:
        product_id = self._product_of(b, e.originator_id)
        for card_id in e.card_ids:
            b.hold(card_id, product_id, e.order_id)

    @handles(CardBucket.CardsReleased)
    def card_bucket_cards_released(self, b: DashboardBatch, _: int, e: CardBucket.CardsReleased) -> None:
        for card_id in e.card_ids:
            b.release(card_id)

    @handles(CardBucket.CardsClaimed)
    def card_bucket_cards_claimed(self, b: DashboardBatch, _: int, e: CardBucket.CardsClaimed) -> None:
        for card_id in e.card_ids:
            b.release(card_id)
        b["products"].add((self._product_of(b, e.originator_id),), claimed=len(e.card_ids))

    @handles(CardBucket.CardVoided)
    def card_bucket_card_voided(self, b: DashboardBatch, _: int, e: CardBucket.CardVoided) -> None:
        b.release(e.card_id)
        b["products"].add((self._product_of(b, e.originator_id),), voided=1)

    # orders ----------------------------------------------------------------------------

    @handles(Order.Placed)
    def order_placed(self, b: DashboardBatch, _: int, e: Order.Placed) -> None:
        b["orders"].put(
            (e.originator_id,),
            merchant_id=e.merchant_id,
            product_id=e.product_id,
            buyer=buyer_of(e.contact),
            quantity=e.quantity,
        )

    @handles(Order.Paid)
    def order_paid(self, b: DashboardBatch, _: int, e: Order.Paid) -> None:
        order = self._order(b, e.originator_id)
        b["orders"].put((e.originator_id,), honoured=e.honoured)
        if not e.honoured:
            return
        merchant_id = order["merchant_id"]
        b["merchants"].add((merchant_id,), gmv=e.amount, orders_paid=1)
        b["daily"].add((merchant_id, day_of(e.timestamp)), gmv=e.amount, orders_paid=1)
        b["buyers"].add((merchant_id, order["buyer"]), paid_orders=1)
        b["products"].add((order["product_id"],), sold=order["quantity"])

    @handles(Order.Refunded)
    def order_refunded(self, b: DashboardBatch, _: int, e: Order.Refunded) -> None:
        order = self._order(b, e.originator_id)
        if order.get("honoured"):
            b["merchants"].add((order["merchant_id"],), orders_refunded=1, refund_amount=e.amount)

    @handles(Order.Reviewed)
    def order_reviewed(self, b: DashboardBatch, _: int, e: Order.Reviewed) -> None:
        merchant_id = self._order(b, e.originator_id)["merchant_id"]
        b["merchants"].add(
            (merchant_id,), reviews=1, rating_sum=e.rating, good_reviews=int(is_good(e.rating))
        )

    @handles(Order.Disputed)
    def order_disputed(self, b: DashboardBatch, _: int, e: Order.Disputed) -> None:
        b["merchants"].add((self._order(b, e.originator_id)["merchant_id"],), disputes=1)

    @handles(Order.DisputeResolved)
    def order_dispute_resolved(self, b: DashboardBatch, _: int, e: Order.DisputeResolved) -> None:
        b["merchants"].add((self._order(b, e.originator_id)["merchant_id"],), disputes_resolved=1)

    # money -----------------------------------------------------------------------------

    @handles(Posting.Recorded)
    def posting_recorded(self, b: DashboardBatch, _: int, e: Posting.Recorded) -> None:
        # The posting alone says whose sale it is (its merchant account) and how it was
        # split: no order needed, so it may arrive before or after the order's events.
        if e.kind not in SALES_KINDS:
            return
        merchant_id = merchant_in(e.entries)
        if merchant_id is None:
            raise LookupError(f"{e.kind} posting {e.ref} names no merchant account")
        money = movement(e.entries, merchant_id)
        b["merchants"].add((merchant_id,), platform_fees=money.fees, net_revenue=money.merchant)


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class ProductFigures:
    product_id: UUID
    title: str
    stock: int
    sold: int
    delivery: str
    price: int
    listed: bool


@dataclass(frozen=True)
class DayFigures:
    date: date
    gmv: int
    orders_paid: int


@dataclass(frozen=True)
class Dashboard:
    merchant_id: UUID
    gmv: int
    orders_paid: int
    orders_refunded: int
    refund_amount: int
    platform_fees: int
    net_revenue: int
    avg_ticket: int
    buyers: int
    repeat_buyers: int
    repeat_rate: float
    reviews: int
    avg_rating: float
    good_review_rate: float
    disputes: int
    disputes_resolved: int
    products: list[ProductFigures]
    daily: list[DayFigures]


def merchant_dashboard(
    conn: psycopg.Connection[Any],
    merchant_id: UUID,
    *,
    since: date | None = None,
    version: int | None = None,
) -> Dashboard | None:
    """A merchant's dashboard, or None for a merchant the projection has not seen."""
    with snapshot(conn):
        p = DashboardProjection.live(conn, version)
        row = conn.execute(
            "SELECT gmv, orders_paid, orders_refunded, refund_amount, platform_fees, net_revenue,"
            " reviews, rating_sum, good_reviews, disputes, disputes_resolved"
            f" FROM {p.table('merchants')} WHERE merchant_id = %s",
            (merchant_id,),
        ).fetchone()
        if row is None:
            return None
        (gmv, paid, refunded, refund_amount, fees, net, reviews, rating_sum, good, disputes,
         resolved) = row  # fmt: skip
        buyers, repeat = conn.execute(
            "SELECT count(*) FILTER (WHERE paid_orders >= 1),"
            " count(*) FILTER (WHERE paid_orders >= %s)"
            f" FROM {p.table('buyers')} WHERE merchant_id = %s",
            (REPEAT_ORDERS, merchant_id),
        ).fetchone() or (0, 0)
        products = [
            ProductFigures(
                product_id=pid,
                title=title,
                stock=imported - claimed - voided - held if delivery == "auto" else 0,
                sold=sold,
                delivery=delivery,
                price=price,
                listed=listed,
            )
            for pid, title, delivery, price, listed, imported, claimed, voided, sold, held in conn.execute(
                "SELECT p.product_id, p.title, p.delivery, p.price, p.listed, p.imported,"
                " p.claimed, p.voided, p.sold, h.held"
                f" FROM {p.table('products')} p"
                " LEFT JOIN LATERAL (SELECT count(*) AS held"
                f"  FROM {p.table('holds')} WHERE product_id = p.product_id) h ON true"
                " WHERE p.merchant_id = %s ORDER BY p.listed_at, p.product_id",
                (merchant_id,),
            )
        ]
        daily = [
            DayFigures(day, day_gmv, day_orders)
            for day, day_gmv, day_orders in conn.execute(
                f"SELECT day, gmv, orders_paid FROM {p.table('daily')}"
                " WHERE merchant_id = %s AND day >= %s ORDER BY day",
                (merchant_id, since or date.min),
            )
        ]
    return Dashboard(
        merchant_id=merchant_id,
        gmv=gmv,
        orders_paid=paid,
        orders_refunded=refunded,
        refund_amount=refund_amount,
        platform_fees=fees,
        net_revenue=net,
        avg_ticket=average_fen(gmv, paid),
        buyers=buyers,
        repeat_buyers=repeat,
        repeat_rate=ratio(repeat, buyers),
        reviews=reviews,
        avg_rating=mean(rating_sum, reviews),
        good_review_rate=ratio(good, reviews),
        disputes=disputes,
        disputes_resolved=resolved,
        products=products,
        daily=daily,
    )
