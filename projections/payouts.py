"""Referral payouts (``GET /v1/promoters/{id}/payouts``): a promoter's commissions.

Definitions (money in fen):

- A commission accrues when an order's payment is honoured: ``Order.Paid`` carries the
  split decided by domain.commissions (level 1 the sharer, level 2 its referrer).
- **pending**: accrued commissions whose order's after-sales window has not closed.
- **available**: commissions settled, minus withdrawals. An order's commissions settle
  when its window closes (``Order.CommissionsSettled``; the same command credits each
  promoter with the same amounts), so this is what the promoter may still withdraw,
  the Promoter aggregate's ``available``.
- **withdrawn**: the sum of withdrawals requested (``Promoter.WithdrawalRequested``).
- **reversed**: pending commissions cancelled because the order was refunded first. A
  refund after settlement leaves them with the promoter (the merchant bears them).
- **history**: one row per commission, oldest first: order, referral level, amount,
  status pending / available / reversed.
- **direct_referrals**: promoters who joined with this promoter's code;
  **indirect_referrals**: those who joined with a direct referral's code. Each
  ``Promoter.Joined`` names its upline (referrer, referrer's referrer), so it counts
  itself for both without reading another promoter's row.
- **level**: the promoter's commission level (domain.promoter_levels), from its
  ``Promoter.LevelChanged`` events; 1 until the first.

Order (``projections.base``): a commission's whole lifecycle is its order's events
(paid, settled, refunded), in the order's own order; a promoter's row meets many
aggregates only as counters, so it is the same whatever order they arrive in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.order import Order
from domain.promoter import Promoter
from projections.base import (
    Batch,
    Projection,
    Table,
    counter,
    fact,
    handles,
    key,
    of_type,
    snapshot,
    value,
)

PENDING = "pending"
AVAILABLE = "available"
REVERSED = "reversed"

PROMOTERS = Table(
    "promoters",
    (
        key("promoter_id", "uuid"),
        value("name", "text"),
        value("referrer_id", "uuid"),
        value("joined_at", "timestamptz"),
        value("level", "integer", default="1"),
        counter("pending"),
        counter("available"),
        counter("withdrawn"),
        counter("reversed"),
        counter("direct_referrals"),
        counter("indirect_referrals"),
    ),
    ("promoter_id",),
)
COMMISSIONS = Table(
    "commissions",
    (
        key("order_id", "uuid"),
        key("promoter_id", "uuid"),
        fact("level", "integer"),
        fact("amount", "bigint"),
        fact("status", "text"),
        fact("accrued_at", "timestamptz"),
        value("closed_at", "timestamptz"),
    ),
    ("order_id", "promoter_id"),
    indexes=(("promoter_id", "accrued_at"),),
)


class PayoutsBatch(Batch):
    def __init__(self, projection: PayoutsProjection) -> None:
        super().__init__(projection)
        # Commission keys by order, for the settlements and refunds of this batch.
        self.by_order: dict[UUID, list[tuple[UUID, UUID]]] = {}

    def accrue(self, order_id: UUID, promoter_id: UUID, level: int, amount: int, at: datetime) -> None:
        k = (order_id, promoter_id)
        self["commissions"].put(k, level=level, amount=amount, status=PENDING, accrued_at=at)
        self.by_order.setdefault(order_id, []).append(k)


class PayoutsProjection(Projection[PayoutsBatch]):
    read_model = "payouts"
    tables = (PROMOTERS, COMMISSIONS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> PayoutsBatch:
        batch = PayoutsBatch(self)
        # The commissions earlier batches accrued for the orders settled or refunded now.
        paid = {e.originator_id for e in of_type(events, Order.Paid)}
        closing = {e.originator_id for e in of_type(events, Order.CommissionsSettled, Order.Refunded)}
        for k in batch["commissions"].load_by(conn, "order_id", closing - paid):
            batch.by_order.setdefault(k[0], []).append(k)
        return batch

    @handles(Promoter.Joined)
    def promoter_joined(self, b: PayoutsBatch, _: int, e: Promoter.Joined) -> None:
        b["promoters"].put((e.originator_id,), name=e.name, referrer_id=e.referrer_id, joined_at=e.timestamp)
        # The event names its upline: counting needs no other promoter's row.
        for promoter_id, column in zip(e.upline, ("direct_referrals", "indirect_referrals"), strict=False):
            b["promoters"].add((UUID(str(promoter_id)),), **{column: 1})

    @handles(Order.Paid)
    def order_paid(self, b: PayoutsBatch, _: int, e: Order.Paid) -> None:
        for promoter_id, level, amount in e.commissions:
            promoter = UUID(str(promoter_id))
            b.accrue(e.originator_id, promoter, int(level), int(amount), e.timestamp)
            b["promoters"].add((promoter,), pending=int(amount))

    @handles(Order.CommissionsSettled)
    def order_commissions_settled(self, b: PayoutsBatch, _: int, e: Order.CommissionsSettled) -> None:
        # The order's own event, not the promoters' credits: the order knows whether it
        # was refunded first, so settling and reversing cannot race across aggregates.
        for k, amount in self._pending(b, e.originator_id):
            b["commissions"].put(k, status=AVAILABLE, closed_at=e.timestamp)
            b["promoters"].add((k[1],), pending=-amount, available=amount)

    @handles(Order.Refunded)
    def order_refunded(self, b: PayoutsBatch, _: int, e: Order.Refunded) -> None:
        for k, amount in self._pending(b, e.originator_id):
            b["commissions"].put(k, status=REVERSED, closed_at=e.timestamp)
            b["promoters"].add((k[1],), pending=-amount, reversed=amount)

    @staticmethod
    def _pending(b: PayoutsBatch, order_id: UUID) -> list[tuple[tuple[UUID, UUID], int]]:
        found = []
        for k in b.by_order.get(order_id, []):
            commission = b["commissions"].get(k)
            if commission is not None and commission["status"] == PENDING:
                found.append((k, int(commission["amount"])))
        return found

    @handles(Promoter.LevelChanged)
    def promoter_level_changed(self, b: PayoutsBatch, _: int, e: Promoter.LevelChanged) -> None:
        # The promoter's own event, after its Joined: the row is there to update.
        b["promoters"].put((e.originator_id,), level=e.new_level)

    @handles(Promoter.WithdrawalRequested)
    def promoter_withdrawal_requested(self, b: PayoutsBatch, _: int, e: Promoter.WithdrawalRequested) -> None:
        b["promoters"].add((e.originator_id,), withdrawn=e.amount, available=-e.amount)


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Commission:
    order_id: UUID
    level: int
    amount: int
    status: str
    accrued_at: datetime


@dataclass(frozen=True)
class Payouts:
    promoter_id: UUID
    level: int
    pending: int
    available: int
    withdrawn: int
    reversed: int
    direct_referrals: int
    indirect_referrals: int
    history: list[Commission]


def promoter_payouts(
    conn: psycopg.Connection[Any], promoter_id: UUID, *, version: int | None = None
) -> Payouts | None:
    """A promoter's payouts, or None for a promoter the projection has not seen."""
    with snapshot(conn):
        p = PayoutsProjection.live(conn, version)
        row = conn.execute(
            "SELECT level, pending, available, withdrawn, reversed, direct_referrals,"
            f" indirect_referrals FROM {p.table('promoters')} WHERE promoter_id = %s",
            (promoter_id,),
        ).fetchone()
        if row is None:
            return None
        history = [
            Commission(*r)
            for r in conn.execute(
                f"SELECT order_id, level, amount, status, accrued_at FROM {p.table('commissions')}"
                " WHERE promoter_id = %s ORDER BY accrued_at, order_id",
                (promoter_id,),
            )
        ]
    level, pending, available, withdrawn, reversed_, direct, indirect = row
    return Payouts(
        promoter_id=promoter_id,
        level=level,
        pending=pending,
        available=available,
        withdrawn=withdrawn,
        reversed=reversed_,
        direct_referrals=direct,
        indirect_referrals=indirect,
        history=history,
    )
