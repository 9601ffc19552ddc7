"""Payments are idempotent by txn id: a Payment's id derives from provider and txn id."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.ids import payment_id

# What became of a payment.
APPLIED = "applied"  # paid the order
RETURNED = "returned"  # could not be honoured (second payment, no stock): refunded


class Payment(Aggregate):
    class Received(Aggregate.Created):
        provider: str
        txn_id: str
        order_id: UUID
        amount: int
        outcome: str

    def __init__(self, provider: str, txn_id: str, order_id: UUID, amount: int, outcome: str):
        self.provider = provider
        self.txn_id = txn_id
        self.order_id = order_id
        self.amount = amount
        self.outcome = outcome

    @classmethod
    def receive(
        cls, provider: str, txn_id: str, order_id: UUID, amount: int, outcome: str, at: datetime
    ) -> Payment:
        return cls._create(
            cls.Received,
            id=payment_id(provider, txn_id),
            timestamp=at,
            provider=provider,
            txn_id=txn_id,
            order_id=order_id,
            amount=amount,
            outcome=outcome,
        )
