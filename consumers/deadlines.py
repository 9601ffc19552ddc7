"""Process managers for order expiry and commission settlement.

Events set and cancel deadlines (domain.deadlines decides which); ``tick`` asks the
injected clock for the time and issues the command of every deadline passed. The
commands are idempotent, so a tick that runs twice, or before the follower has seen
the command's own event, does no harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from consumers.due import DueCache
from domain.deadlines import EXPIRE, SETTLE, TOPICS, Cancel, Decision, Schedule, deadlines_for
from domain.exceptions import KamiError
from domain.shop import Shop

SCHEMA = """
CREATE TABLE IF NOT EXISTS pm_deadlines (
    kind text NOT NULL,
    order_id uuid NOT NULL,
    due_at timestamptz NOT NULL,
    PRIMARY KEY (kind, order_id)
);
CREATE INDEX IF NOT EXISTS pm_deadlines_due ON pm_deadlines (due_at);
"""


class DeadlineManager:
    name = "pm_deadlines"
    topics = frozenset(TOPICS)

    def __init__(self, shop: Shop, pool: ConnectionPool) -> None:
        self._shop = shop
        self._pool = pool
        self._due = DueCache()

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SCHEMA)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        window = self._shop.settings.after_sales_window
        # A deadline's row ends as the last decision about it says (a schedule sets it, a
        # cancel removes it), so a batch needs only each deadline's last decision: two
        # statements per batch rather than one per event, which was the follower's
        # largest cost per order.
        last: dict[tuple[str, UUID], Decision] = {}
        for _, event in events:
            for decision in deadlines_for(event, window):
                last[(decision.kind, decision.order_id)] = decision
        # In key order, so that two followers lock the rows alike.
        decided = [last[key] for key in sorted(last, key=lambda k: (k[0], str(k[1])))]
        schedules = [d for d in decided if isinstance(d, Schedule)]
        cancels = [d for d in decided if isinstance(d, Cancel)]
        if schedules:
            self._due.scheduled(min(d.due_at for d in schedules))
        with conn.cursor() as cur:
            if schedules:
                cur.execute(
                    "INSERT INTO pm_deadlines (kind, order_id, due_at)"
                    " SELECT * FROM unnest(%s::text[], %s::uuid[], %s::timestamptz[])"
                    " ON CONFLICT (kind, order_id) DO UPDATE SET due_at = EXCLUDED.due_at",
                    (
                        [d.kind for d in schedules],
                        [d.order_id for d in schedules],
                        [d.due_at for d in schedules],
                    ),
                )
            if cancels:
                cur.execute(
                    "DELETE FROM pm_deadlines AS d USING unnest(%s::text[], %s::uuid[]) AS c(kind, order_id)"
                    " WHERE d.kind = c.kind AND d.order_id = c.order_id",
                    ([d.kind for d in cancels], [d.order_id for d in cancels]),
                )

    def tick(self, limit: int = 500) -> int:
        """Issue the commands of the deadlines the clock has passed; returns how many."""
        now = self._shop.clock()
        if self._due.nothing_due(now):
            return 0
        with self._pool.connection() as conn:
            due = conn.execute(
                "SELECT kind, order_id FROM pm_deadlines WHERE due_at <= %s"
                " ORDER BY due_at LIMIT %s",
                (now, limit),
            ).fetchall()
            if not due:
                self._due.learn(conn, "pm_deadlines")
                return 0
        # The commands' events cancel or move these deadlines: ask again next time.
        self._due.forget()
        done = 0
        for kind, order_id in due:
            try:
                if kind == EXPIRE:
                    self._shop.expire_order(order_id)
                elif kind == SETTLE:
                    self._shop.settle_commissions(order_id)
            except KamiError:
                # The order moved on (e.g. refunded meanwhile); its own event cancels this.
                continue
            done += 1
        return done
