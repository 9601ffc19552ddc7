"""The process policy behind order expiry and commission settlement.

A pure function of an event: which deadlines to set or cancel. The process managers
keep the deadlines and, when the injected clock passes one, issue the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.order import Order

EXPIRE = "expire"
SETTLE = "settle"


@dataclass(frozen=True)
class Schedule:
    kind: str
    order_id: UUID
    due_at: datetime


@dataclass(frozen=True)
class Cancel:
    kind: str
    order_id: UUID


Decision = Schedule | Cancel


def deadlines_for(event: object, after_sales_window: timedelta) -> list[Decision]:
    if isinstance(event, Order.Placed):
        return [Schedule(EXPIRE, event.originator_id, event.expires_at)]
    if isinstance(event, Order.Paid):
        decisions: list[Decision] = [Cancel(EXPIRE, event.originator_id)]
        if event.commissions:
            due = event.timestamp + after_sales_window
            decisions.append(Schedule(SETTLE, event.originator_id, due))
        return decisions
    if isinstance(event, Order.Expired):
        return [Cancel(EXPIRE, event.originator_id)]
    if isinstance(event, Order.Refunded):
        return [Cancel(EXPIRE, event.originator_id), Cancel(SETTLE, event.originator_id)]
    if isinstance(event, Order.CommissionsSettled):
        return [Cancel(SETTLE, event.originator_id)]
    return []


TOPICS = tuple(
    f"domain.order:Order.{name}"
    for name in ("Placed", "Paid", "Expired", "Refunded", "CommissionsSettled")
)
