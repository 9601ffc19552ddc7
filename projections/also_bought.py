"""Also-bought (关联推荐, ``GET /v1/products/{id}/also-bought``).

For a product P, the products Q != P that P's buyers also bought, with a count:
``count(P, Q)`` = the paid orders of Q by buyers who have a paid order of P, summed over
those buyers, whichever came first. Buyers are contacts trimmed and lower-cased, across
the whole platform; "paid" means an honoured payment (a ``payment`` posting); refunds
do not take purchases back, as on the dashboard.

Kept incrementally: when buyer b pays for Q for the k-th time,
  - every other product P that b bought gains 1 on (P, Q);
  - if k == 1, Q gains on (Q, P) all of b's earlier paid orders of P.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from domain.order import Order
from domain.posting import Posting
from domain.product import Product
from projections.base import Batch, Projection, Table, counter, fact, handles, key, of_type, value
from projections.definitions import PAYMENT, buyer_of

ORDERS = Table(
    "orders",
    (key("order_id", "uuid"), fact("product_id", "uuid"), fact("buyer", "text")),
    ("order_id",),
)
BUYER_PRODUCTS = Table(
    "buyer_products",
    (key("buyer", "text"), key("product_id", "uuid"), counter("orders")),
    ("buyer", "product_id"),
)
PAIRS = Table(
    "pairs",
    (key("product_id", "uuid"), key("other_id", "uuid"), counter("orders")),
    ("product_id", "other_id"),
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


class AlsoBoughtBatch(Batch):
    def __init__(self, projection: AlsoBoughtProjection) -> None:
        super().__init__(projection)
        # Each buyer of this batch's payments: product -> paid orders, kept current.
        self.bought: dict[str, dict[UUID, int]] = {}


class AlsoBoughtProjection(Projection[AlsoBoughtBatch]):
    read_model = "also_bought"
    tables = (ORDERS, BUYER_PRODUCTS, PAIRS, PRODUCTS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> AlsoBoughtBatch:
        batch = AlsoBoughtBatch(self)
        placed = {e.originator_id: buyer_of(e.contact) for e in of_type(events, Order.Placed)}
        paid = {
            e.order_id
            for e in of_type(events, Posting.Recorded)
            if e.kind == PAYMENT and e.order_id is not None
        }
        batch["orders"].load(conn, [(o,) for o in paid - placed.keys()])
        buyers = {placed[o] for o in paid if o in placed}
        for o in paid - placed.keys():
            if (order := batch["orders"].get((o,))) is not None:
                buyers.add(order["buyer"])
        for buyer in buyers:
            batch.bought[buyer] = {}
        for buyer, product_id in batch["buyer_products"].load_by(conn, "buyer", buyers):
            row = batch["buyer_products"].get((buyer, product_id))
            batch.bought[buyer][product_id] = row["orders"] if row else 0
        return batch

    @handles(Product.Listed)
    def product_listed(self, b: AlsoBoughtBatch, _: int, e: Product.Listed) -> None:
        b["products"].put((e.originator_id,), merchant_id=e.merchant_id, title=e.title, listed=True)

    @handles(Product.Delisted)
    def product_delisted(self, b: AlsoBoughtBatch, _: int, e: Product.Delisted) -> None:
        b["products"].put((e.originator_id,), listed=False)

    @handles(Order.Placed)
    def order_placed(self, b: AlsoBoughtBatch, _: int, e: Order.Placed) -> None:
        b["orders"].put((e.originator_id,), product_id=e.product_id, buyer=buyer_of(e.contact))

    @handles(Posting.Recorded)
    def posting_recorded(self, b: AlsoBoughtBatch, _: int, e: Posting.Recorded) -> None:
        if e.kind != PAYMENT or e.order_id is None:
            return
        order = b["orders"].get((e.order_id,))
        if order is None:
            raise LookupError(f"order {e.order_id} was paid but never placed")
        buyer, bought_now = order["buyer"], order["product_id"]
        bought = b.bought[buyer]
        first = bought.get(bought_now, 0) == 0
        for other, orders in bought.items():
            if other == bought_now or orders == 0:
                continue
            b["pairs"].add((other, bought_now), orders=1)
            if first:
                b["pairs"].add((bought_now, other), orders=orders)
        bought[bought_now] = bought.get(bought_now, 0) + 1
        b["buyer_products"].add((buyer, bought_now), orders=1)


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
            f"SELECT x.other_id, coalesce(pr.title, ''), x.orders FROM {p.table('pairs')} x"
            f" LEFT JOIN {p.table('products')} pr ON pr.product_id = x.other_id"
            " WHERE x.product_id = %s AND x.orders > 0"
            " AND (%s OR coalesce(pr.listed, true))"
            " ORDER BY x.orders DESC, x.other_id LIMIT %s",
            (product_id, include_delisted, limit),
        )
    ]
