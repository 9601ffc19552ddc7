"""The promoter-levels process manager: counts each promoter's cumulative referred sales
and moves the promoter to the level they earn (domain.promoter_levels).

Referred sales are the honoured payments of orders placed with the promoter's code (it
was the sharer), net of refunds of those orders. The manager follows ``Order.Placed``
(who shared the order), ``Order.Paid`` and ``Order.Refunded`` (what it adds and takes
back) and ``Promoter.LevelChanged`` (the level the Promoter is at).

Kafka: an order's events read only the row its own ``Order.Placed`` wrote; sales meet
in the promoter's row only as additions (``+ delta``), and the level column is written
by the promoter's own events alone. The rows are therefore the same in any order that
keeps each aggregate's own. Crossing a threshold is not detected in ``apply``, where
it would depend on how orders interleave, but reconciled by ``tick``: every promoter
whose row changed is compared with the level its sales earn, and when they differ the
Shop records the change. The command is idempotent, so a tick that runs before the
follower has seen the level change only repeats a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic
from psycopg_pool import ConnectionPool

from domain.exceptions import KamiError
from domain.order import Order
from domain.promoter import Promoter
from domain.promoter_levels import BASE_LEVEL, level_for
from domain.shop import Shop

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pm_promoter_orders (
    order_id uuid PRIMARY KEY,
    promoter_id uuid NOT NULL,
    paid bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pm_promoter_levels (
    promoter_id uuid PRIMARY KEY,
    referred_sales bigint NOT NULL DEFAULT 0,
    level integer NOT NULL DEFAULT {BASE_LEVEL},
    dirty boolean NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS pm_promoter_levels_dirty ON pm_promoter_levels (promoter_id) WHERE dirty;
"""

TOPICS = frozenset(
    get_topic(cls) for cls in (Order.Placed, Order.Paid, Order.Refunded, Promoter.LevelChanged)
)


class PromoterLevelManager:
    name = "pm_promoter_levels"
    topics = TOPICS

    def __init__(self, shop: Shop, pool: ConnectionPool) -> None:
        self._shop = shop
        self._pool = pool

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SCHEMA)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        sales: dict[UUID, int] = {}
        levels: dict[UUID, int] = {}
        with conn.cursor() as cur:
            for _, e in events:
                if isinstance(e, Order.Placed) and e.promoter_chain:
                    cur.execute(
                        "INSERT INTO pm_promoter_orders (order_id, promoter_id) VALUES (%s, %s)"
                        " ON CONFLICT (order_id) DO NOTHING",
                        (e.originator_id, e.promoter_chain[0]),
                    )
                elif isinstance(e, Order.Paid) and e.honoured:
                    cur.execute(
                        "UPDATE pm_promoter_orders SET paid = %s WHERE order_id = %s RETURNING promoter_id",
                        (e.amount, e.originator_id),
                    )
                    if (row := cur.fetchone()) is not None:
                        sales[row[0]] = sales.get(row[0], 0) + e.amount
                elif isinstance(e, Order.Refunded):
                    # Only what an honoured payment added comes off; a payment sent back
                    # (refunded in its own command) never added anything.
                    cur.execute(
                        "SELECT promoter_id, paid FROM pm_promoter_orders WHERE order_id = %s FOR UPDATE",
                        (e.originator_id,),
                    )
                    if (row := cur.fetchone()) is not None and row[1]:
                        sales[row[0]] = sales.get(row[0], 0) - int(row[1])
                        cur.execute(
                            "UPDATE pm_promoter_orders SET paid = 0 WHERE order_id = %s", (e.originator_id,)
                        )
                elif isinstance(e, Promoter.LevelChanged):
                    levels[e.originator_id] = e.new_level
            # Rows in key order, so concurrent consumers lock them alike.
            for promoter_id in sorted(sales):
                cur.execute(
                    "INSERT INTO pm_promoter_levels (promoter_id, referred_sales) VALUES (%s, %s)"
                    " ON CONFLICT (promoter_id) DO UPDATE"
                    " SET referred_sales = pm_promoter_levels.referred_sales + EXCLUDED.referred_sales,"
                    " dirty = true",
                    (promoter_id, sales[promoter_id]),
                )
            for promoter_id in sorted(levels):
                cur.execute(
                    "INSERT INTO pm_promoter_levels (promoter_id, level) VALUES (%s, %s)"
                    " ON CONFLICT (promoter_id) DO UPDATE SET level = EXCLUDED.level, dirty = true",
                    (promoter_id, levels[promoter_id]),
                )

    def tick(self, limit: int = 500) -> int:
        """Record the level changes that referred sales call for; returns how many were issued."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT promoter_id, referred_sales, level FROM pm_promoter_levels WHERE dirty"
                " ORDER BY promoter_id LIMIT %s",
                (limit,),
            ).fetchall()
        issued = 0
        for promoter_id, referred_sales, level in rows:
            if level_for(referred_sales) != level:
                try:
                    self._shop.set_promoter_level(promoter_id, referred_sales)
                    issued += 1
                except KamiError:
                    pass  # an unknown promoter: nothing a retry would change
                else:
                    # Stays dirty until its LevelChanged is applied and found to agree.
                    continue
            with self._pool.connection() as conn:
                # Clean only if nothing moved since it was read.
                conn.execute(
                    "UPDATE pm_promoter_levels SET dirty = false"
                    " WHERE promoter_id = %s AND referred_sales = %s AND level = %s",
                    (promoter_id, referred_sales, level),
                )
        return issued


def referred_sales(conn: psycopg.Connection[Any], promoter_id: UUID) -> int:
    """A promoter's cumulative referred sales as the manager has counted them (fen)."""
    row = conn.execute(
        "SELECT referred_sales FROM pm_promoter_levels WHERE promoter_id = %s", (promoter_id,)
    ).fetchone()
    return int(row[0]) if row else 0
