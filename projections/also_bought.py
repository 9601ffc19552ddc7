"""Also-bought (关联推荐, ``GET /v1/products/{id}/also-bought``).

For a product P, the products Q != P that P's buyers also bought, with a count:
``count(P, Q)`` = the paid orders of Q by buyers who have a paid order of P, summed over
those buyers, whichever came first. Buyers are contacts trimmed and lower-cased, across
the whole platform; "paid" means an honoured payment (``Order.Paid`` with ``honoured``);
refunds do not take purchases back, as on the dashboard.

Kept as one counter per (buyer, product): an honoured payment adds 1 to its buyer's
count of its product, knowing the buyer and product from its own ``Order.Placed``. The
pairs are that table joined with itself by buyer, when read. Counting the pairs as
payments arrive would read what *other* orders of the buyer did before, which through
Kafka may not have arrived yet, or be committed by another consumer process at the same
moment; a sum of counters is the same in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from domain.order import Order
from domain.product import Product
from projections.base import Batch, Projection, Table, counter, fact, handles, key, of_type, value
from projections.definitions import buyer_of

ORDERS = Table(
    "orders",
    (key("order_id", "uuid"), fact("product_id", "uuid"), fact("buyer", "text")),
    ("order_id",),
)
BUYER_PRODUCTS = Table(
    "buyer_products",
    (key("buyer", "text"), key("product_id", "uuid"), counter("orders")),
    ("buyer", "product_id"),
    # A product's buyers, for the read; the key serves each buyer's products.
    indexes=(("product_id", "buyer"),),
)
PRODUCTS = Table(
    "products",
    (
        key("product_id", "uuid"),
        value("merchant_id", "uuid"),
        value("title", "text"),
        value("listed", "boolean"),
    ),
    ("product_id",),
)


class AlsoBoughtProjection(Projection[Batch]):
    read_model = "also_bought"
    tables = (ORDERS, BUYER_PRODUCTS, PRODUCTS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        batch = Batch(self)
        placed = {e.originator_id for e in of_type(events, Order.Placed)}
        paid = {e.originator_id for e in of_type(events, Order.Paid) if e.honoured}
        batch["orders"].load(conn, [(o,) for o in paid - placed])
        return batch

    @handles(Product.Listed)
    def product_listed(self, b: Batch, _: int, e: Product.Listed) -> None:
        b["products"].put((e.originator_id,), merchant_id=e.merchant_id, title=e.title, listed=True)

    @handles(Product.Delisted)
    def product_delisted(self, b: Batch, _: int, e: Product.Delisted) -> None:
        b["products"].put((e.originator_id,), listed=False)

    @handles(Order.Placed)
    def order_placed(self, b: Batch, _: int, e: Order.Placed) -> None:
        b["orders"].put((e.originator_id,), product_id=e.product_id, buyer=buyer_of(e.contact))

    @handles(Order.Paid)
    def order_paid(self, b: Batch, _: int, e: Order.Paid) -> None:
        if not e.honoured:
            return
        order = b["orders"].get((e.originator_id,))
        if order is None:
            raise LookupError(f"order {e.originator_id} was paid but never placed")
        b["buyer_products"].add((order["buyer"], order["product_id"]), orders=1)


@dataclass(frozen=True)
class AlsoBought:
    product_id: UUID
    title: str
    orders: int


def also_bought(
    conn: psycopg.Connection[Any],
    product_id: UUID,
    *,
    limit: int = 10,
    include_delisted: bool = False,
    version: int | None = None,
) -> list[AlsoBought]:
    """What buyers of this product also bought, most orders first."""
    p = AlsoBoughtProjection.live(conn, version)
    return [
        AlsoBought(*row)
        for row in conn.execute(
            "SELECT x.other_id, coalesce(pr.title, ''), x.orders FROM ("
            "  SELECT o.product_id AS other_id, sum(o.orders)::bigint AS orders"
            f"  FROM {p.table('buyer_products')} s"
            f"  JOIN {p.table('buyer_products')} o ON o.buyer = s.buyer AND o.product_id <> s.product_id"
            "  WHERE s.product_id = %s AND s.orders > 0 AND o.orders > 0"
            "  GROUP BY o.product_id) x"
            f" LEFT JOIN {p.table('products')} pr ON pr.product_id = x.other_id"
            " WHERE (%s OR coalesce(pr.listed, true))"
            " ORDER BY x.orders DESC, x.other_id LIMIT %s",
            (product_id, include_delisted, limit),
        )
    ]
