"""The product listing (``GET /v1/products``): what can be bought, and how it ranks.

Definitions (money in fen; days are UTC days of the event's business time):

- **listed**: a product from its ``Product.Listed`` until its ``Product.Delisted``.
- **units sold**: units of orders with an honoured payment, by the day of the payment,
  net of refunds (a refund takes the units off the day they were paid, so a window
  never counts a sale that was later given back).
- **reviews / good reviews**: reviews of the product's orders, and those rated 4 or 5.
- **merchant tier / since**: the merchant's tier (``Merchant.Registered``,
  ``Merchant.TierChanged``) and registration time, for the ranking weight and the
  cold-start boost.
- **restricted merchants** (``Merchant.Restricted`` until ``Merchant.Reinstated``) are
  not listed: their products cannot take orders.

The recommended order is domain.ranking's formula, computed when read (it depends on
the time: the sales window and a new merchant's boost); the other orders are plain.

Order (``projections.base``): a handler reads only rows its own aggregate wrote: an
order's product and quantity (its ``Order.Placed``) and the day it was paid (its
``Order.Paid``). Product, merchant and order facts are puts of columns only their own
aggregate writes; sales and reviews meet in product rows only as counters. So the rows
are the same whatever order the aggregates' events arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from domain.merchant import Merchant
from domain.order import Order
from domain.product import Product
from domain.ranking import SALES_WINDOW_DAYS, Signals, rank
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
from projections.definitions import is_good

PRODUCTS = Table(
    "products",
    (
        key("product_id", "uuid"),
        value("merchant_id", "uuid"),
        value("title", "text"),
        value("price", "bigint"),
        value("delivery", "text"),
        value("listed", "boolean"),
        value("listed_at", "timestamptz"),
        counter("reviews"),
        counter("good_reviews"),
    ),
    ("product_id",),
    indexes=(("merchant_id",),),
)
SALES = Table(
    "sales",
    (key("product_id", "uuid"), key("day", "date"), counter("units"), counter("orders")),
    ("product_id", "day"),
    indexes=(("day",),),
)
ORDERS = Table(
    "orders",
    (
        key("order_id", "uuid"),
        fact("product_id", "uuid"),
        fact("quantity", "integer"),
        value("paid_day", "date"),
    ),
    ("order_id",),
)
MERCHANTS = Table(
    "merchants",
    (
        key("merchant_id", "uuid"),
        value("tier", "text"),
        value("registered_at", "timestamptz"),
        value("restricted", "boolean"),
    ),
    ("merchant_id",),
)

_ORDER_EVENTS = (Order.Paid, Order.Refunded, Order.Reviewed)


class ListingProjection(Projection[Batch]):
    read_model = "listing"
    tables = (PRODUCTS, SALES, ORDERS, MERCHANTS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        batch = Batch(self)
        placed = {e.originator_id for e in of_type(events, Order.Placed)}
        orders = {e.originator_id for e in of_type(events, *_ORDER_EVENTS)}
        batch["orders"].load(conn, [(o,) for o in orders - placed])
        return batch

    @staticmethod
    def _order(b: Batch, order_id: UUID) -> Mapping[str, Any]:
        row = b["orders"].get((order_id,))
        if row is None:
            raise LookupError(f"order {order_id} has an event but no Order.Placed")
        return row

    @handles(Product.Listed)
    def product_listed(self, b: Batch, _: int, e: Product.Listed) -> None:
        b["products"].put(
            (e.originator_id,),
            merchant_id=e.merchant_id,
            title=e.title,
            price=e.price,
            delivery=e.delivery,
            listed=True,
            listed_at=e.timestamp,
        )

    @handles(Product.PriceChanged)
    def product_price_changed(self, b: Batch, _: int, e: Product.PriceChanged) -> None:
        b["products"].put((e.originator_id,), price=e.price)

    @handles(Product.Delisted)
    def product_delisted(self, b: Batch, _: int, e: Product.Delisted) -> None:
        b["products"].put((e.originator_id,), listed=False)

    @handles(Merchant.Registered)
    def merchant_registered(self, b: Batch, _: int, e: Merchant.Registered) -> None:
        b["merchants"].put((e.originator_id,), tier=e.tier, registered_at=e.timestamp)

    @handles(Merchant.TierChanged)
    def merchant_tier_changed(self, b: Batch, _: int, e: Merchant.TierChanged) -> None:
        b["merchants"].put((e.originator_id,), tier=e.new_tier)

    @handles(Merchant.Restricted)
    def merchant_restricted(self, b: Batch, _: int, e: Merchant.Restricted) -> None:
        b["merchants"].put((e.originator_id,), restricted=True)

    @handles(Merchant.Reinstated)
    def merchant_reinstated(self, b: Batch, _: int, e: Merchant.Reinstated) -> None:
        b["merchants"].put((e.originator_id,), restricted=False)

    @handles(Order.Placed)
    def order_placed(self, b: Batch, _: int, e: Order.Placed) -> None:
        b["orders"].put((e.originator_id,), product_id=e.product_id, quantity=e.quantity)

    @handles(Order.Paid)
    def order_paid(self, b: Batch, _: int, e: Order.Paid) -> None:
        if not e.honoured:
            return
        order = self._order(b, e.originator_id)
        day = day_of(e.timestamp)
        b["orders"].put((e.originator_id,), paid_day=day)
        b["sales"].add((order["product_id"], day), units=order["quantity"], orders=1)

    @handles(Order.Refunded)
    def order_refunded(self, b: Batch, _: int, e: Order.Refunded) -> None:
        order = self._order(b, e.originator_id)
        if order.get("paid_day") is None:
            return  # a payment sent back was never a sale
        b["sales"].add((order["product_id"], order["paid_day"]), units=-order["quantity"], orders=-1)
        b["orders"].put((e.originator_id,), paid_day=None)

    @handles(Order.Reviewed)
    def order_reviewed(self, b: Batch, _: int, e: Order.Reviewed) -> None:
        product_id = self._order(b, e.originator_id)["product_id"]
        b["products"].add((product_id,), reviews=1, good_reviews=int(is_good(e.rating)))


# ---------------------------------------------------------------------------- queries

RECOMMENDED = "recommended"
SORTS = (RECOMMENDED, "newest", "price_asc", "price_desc", "sales")


@dataclass(frozen=True)
class ListedProduct:
    product_id: UUID
    merchant_id: UUID
    title: str
    price: int
    delivery: str
    listed_at: datetime
    merchant_tier: str
    merchant_since: datetime
    units_sold: int  # in the ranking's sales window
    reviews: int
    good_reviews: int
    rank: float


@dataclass(frozen=True)
class Listing:
    items: list[ListedProduct]
    total: int


def _window_start(now: datetime) -> date:
    return day_of(now) - timedelta(days=SALES_WINDOW_DAYS)


def _sort_key(sort: str) -> Any:
    # Every order ends with the product id, so it is total and the same on every read.
    keys: dict[str, Any] = {
        RECOMMENDED: lambda p: (-p.rank, -p.listed_at.timestamp(), str(p.product_id)),
        "newest": lambda p: (-p.listed_at.timestamp(), str(p.product_id)),
        "price_asc": lambda p: (p.price, str(p.product_id)),
        "price_desc": lambda p: (-p.price, str(p.product_id)),
        "sales": lambda p: (-p.units_sold, str(p.product_id)),
    }
    if sort not in keys:
        raise ValueError(f"unknown sort {sort!r}")
    return keys[sort]


def product_listing(
    conn: psycopg.Connection[Any],
    now: datetime,
    *,
    sort: str = RECOMMENDED,
    merchant_id: UUID | None = None,
    limit: int = 20,
    offset: int = 0,
    version: int | None = None,
) -> Listing:
    """One page of the products that can be bought, in the order asked, as of ``now``.

    Every candidate is ranked in memory: the formula lives in domain.ranking alone, and
    depends on the time. That is a scan of the listed products per request, fine for a
    catalogue of tens of thousands; a larger one would keep a ranked table refreshed by
    a process instead.
    """
    key_of = _sort_key(sort)
    with snapshot(conn):
        p = ListingProjection.live(conn, version)
        rows = conn.execute(
            "SELECT p.product_id, p.merchant_id, p.title, p.price, p.delivery, p.listed_at,"
            " m.tier, m.registered_at, coalesce(s.units, 0)::bigint, p.reviews, p.good_reviews"
            f" FROM {p.table('products')} p JOIN {p.table('merchants')} m USING (merchant_id)"
            " LEFT JOIN (SELECT product_id, sum(units) AS units"
            f" FROM {p.table('sales')} WHERE day > %(start)s AND day <= %(today)s"
            " GROUP BY product_id) s USING (product_id)"
            " WHERE p.listed AND p.title IS NOT NULL AND m.tier IS NOT NULL"
            " AND m.restricted IS NOT TRUE"
            " AND (%(merchant)s::uuid IS NULL OR p.merchant_id = %(merchant)s::uuid)",
            {"start": _window_start(now), "today": day_of(now), "merchant": merchant_id},
        ).fetchall()
    products = []
    for pid, mid, title, price, delivery, listed_at, tier, since, units, reviews, good in rows:
        signals = Signals(tier, since, int(units), int(reviews), int(good))
        products.append(
            ListedProduct(
                pid, mid, title, int(price), delivery, listed_at, tier, since,
                int(units), int(reviews), int(good), rank(signals, now),
            )
        )  # fmt: skip
    products.sort(key=key_of)
    return Listing(products[offset : offset + limit], len(products))
