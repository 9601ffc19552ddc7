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
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic
from psycopg_pool import ConnectionPool

from consumers.due import DueCache
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

# When a dirty row is due for a tick: at once.
DIRTY = datetime.min.replace(tzinfo=UTC)

TOPICS = frozenset(
    get_topic(cls) for cls in (Order.Placed, Order.Paid, Order.Refunded, Promoter.LevelChanged)
)


class PromoterLevelManager:
    name = "pm_promoter_levels"
    topics = TOPICS

    def __init__(self, shop: Shop, pool: ConnectionPool) -> None:
        self._shop = shop
        self._pool = pool
        # A dirty row is a deadline due at once; clean ones, none (``consumers.due``).
        self._due = DueCache()

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SCHEMA)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        # The batch is worked out in memory from the rows its orders had before it, then
        # written in a few set-based statements: a statement per event was most of this
        # manager's cost in a follower's small steps.
        placed = [e for _, e in events if isinstance(e, Order.Placed) and e.promoter_chain]
        touched = [e.originator_id for _, e in events if isinstance(e, Order.Paid | Order.Refunded)]
        # order id -> [promoter id, paid], as stored before the batch (locked) or placed in it
        orders: dict[UUID, list[Any]] = {}
        wanted = {e.originator_id for e in placed} | set(touched)
        if wanted:
            rows = conn.execute(
                "SELECT order_id, promoter_id, paid FROM pm_promoter_orders WHERE order_id = ANY(%s)"
                " ORDER BY order_id FOR UPDATE",
                (sorted(wanted),),
            ).fetchall()
            orders = {row[0]: [row[1], int(row[2])] for row in rows}
        changed: set[UUID] = set()
        sales: dict[UUID, int] = {}
        levels: dict[UUID, int] = {}
        for _, e in events:
            if isinstance(e, Order.Placed) and e.promoter_chain:
                if e.originator_id not in orders:  # a replayed Placed changes nothing
                    orders[e.originator_id] = [e.promoter_chain[0], 0]
                    changed.add(e.originator_id)
            elif isinstance(e, Order.Paid) and e.honoured:
                if (order := orders.get(e.originator_id)) is not None:
                    order[1] = e.amount
                    changed.add(e.originator_id)
                    sales[order[0]] = sales.get(order[0], 0) + e.amount
            elif isinstance(e, Order.Refunded):
                # Only what an honoured payment added comes off; a payment sent back
                # (refunded in its own command) never added anything.
                if (order := orders.get(e.originator_id)) is not None and order[1]:
                    sales[order[0]] = sales.get(order[0], 0) - order[1]
                    order[1] = 0
                    changed.add(e.originator_id)
            elif isinstance(e, Promoter.LevelChanged):
                levels[e.originator_id] = e.new_level
        if not (changed or sales or levels):
            return
        # Rows in key order, so concurrent consumers lock them alike; one round trip.
        ids, promoters = sorted(changed), sorted(sales)
        with conn.pipeline(), conn.cursor() as cur:
            if ids:
                cur.execute(
                    "INSERT INTO pm_promoter_orders (order_id, promoter_id, paid)"
                    " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[])"
                    " ON CONFLICT (order_id) DO UPDATE SET paid = EXCLUDED.paid",
                    (ids, [orders[i][0] for i in ids], [orders[i][1] for i in ids]),
                )
            if promoters:
                cur.execute(
                    "INSERT INTO pm_promoter_levels (promoter_id, referred_sales)"
                    " SELECT * FROM unnest(%s::uuid[], %s::bigint[])"
                    " ON CONFLICT (promoter_id) DO UPDATE"
                    " SET referred_sales = pm_promoter_levels.referred_sales + EXCLUDED.referred_sales,"
                    " dirty = true",
                    (promoters, [sales[p] for p in promoters]),
                )
            if levels:
                leveled = sorted(levels)
                cur.execute(
                    "INSERT INTO pm_promoter_levels (promoter_id, level)"
                    " SELECT * FROM unnest(%s::uuid[], %s::integer[])"
                    " ON CONFLICT (promoter_id) DO UPDATE SET level = EXCLUDED.level, dirty = true",
                    (leveled, [levels[p] for p in leveled]),
                )
        if sales or levels:
            self._due.scheduled(DIRTY)

    def tick(self, limit: int = 500) -> int:
        """Record the level changes that referred sales call for; returns how many were issued."""
        if self._due.nothing_due(self._shop.clock()):
            return 0  # no row made dirty since the last tick left them all clean
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT promoter_id, referred_sales, level FROM pm_promoter_levels WHERE dirty"
                " ORDER BY promoter_id LIMIT %s",
                (limit,),
            ).fetchall()
            _clean(conn, [row for row in rows if level_for(row[1]) == row[2]])
        issued = 0
        refused = []
        for promoter_id, referred_sales, level in rows:
            if level_for(referred_sales) != level:
                try:
                    self._shop.set_promoter_level(promoter_id, referred_sales)
                    issued += 1
                except KamiError:
                    refused.append((promoter_id, referred_sales, level))  # an unknown promoter
                # Otherwise it stays dirty until its LevelChanged is applied and found to agree.
        if refused:
            with self._pool.connection() as conn:
                _clean(conn, refused)
        if issued or len(rows) >= limit:
            self._due.forget()
        else:
            self._due.learned(None)  # every row it read is clean now
        return issued


def _clean(conn: psycopg.Connection[Any], rows: Sequence[tuple[UUID, int, int]]) -> None:
    """Mark these rows clean, each only if nothing moved since it was read."""
    if rows:
        conn.execute(
            "UPDATE pm_promoter_levels AS p SET dirty = false"
            " FROM unnest(%s::uuid[], %s::bigint[], %s::integer[]) AS r(promoter_id, referred_sales, level)"
            " WHERE p.promoter_id = r.promoter_id AND p.referred_sales = r.referred_sales"
            " AND p.level = r.level",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
        )


def referred_sales(conn: psycopg.Connection[Any], promoter_id: UUID) -> int:
    """A promoter's cumulative referred sales as the manager has counted them (fen)."""
    row = conn.execute(
        "SELECT referred_sales FROM pm_promoter_levels WHERE promoter_id = %s", (promoter_id,)
    ).fetchone()
    return int(row[0]) if row else 0
