"""The Order aggregate: from a quote and a reservation to delivery, expiry or refund."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.exceptions import AlreadyReviewed, InvalidInput, InvalidState

PENDING = "pending"
PAID = "paid"
DELIVERED = "delivered"
EXPIRED = "expired"
REFUNDED = "refunded"

MAX_CONTACT = 200
MAX_TEXT = 2000


class Order(Aggregate):
    class Placed(Aggregate.Created):
        product_id: UUID
        merchant_id: UUID
        delivery: str
        quantity: int
        unit_price: int
        amount: int
        contact: str
        token_hash: str
        promoter_chain: list[UUID]
        # Each item is [bucket_id, [card_id, ...]].
        reservation: list[list[Any]]
        expires_at: datetime

    class Paid(Aggregate.Event):
        provider: str
        txn_id: str
        amount: int
        fee_rate_bps: int
        # Each commission is [promoter_id, level, amount]: the accrual at payment.
        commissions: list[list[Any]]
        # False when the payment arrived too late to deliver and is sent back: the order
        # is refunded in the same command. Read models need not look elsewhere to know.
        honoured: bool

        def apply(self, order: Order) -> None:
            order.status = PAID
            order.paid_at = self.timestamp
            order.txn_id = self.txn_id
            order.commissions = [list(c) for c in self.commissions]

    class Delivered(Aggregate.Event):
        # Auto goods: each card is [card_id, sealed key]. Manual goods: content.
        cards: list[list[str]]
        content: str | None

        def apply(self, order: Order) -> None:
            order.status = DELIVERED
            order.cards = [list(c) for c in self.cards]
            order.content = self.content

    class Expired(Aggregate.Event):
        def apply(self, order: Order) -> None:
            order.status = EXPIRED

    class Refunded(Aggregate.Event):
        reason: str
        amount: int
        by: str

        def apply(self, order: Order) -> None:
            order.status = REFUNDED
            order.refunded_amount = self.amount

    class Reviewed(Aggregate.Event):
        rating: int
        comment: str

        def apply(self, order: Order) -> None:
            order.rating = self.rating

    class Disputed(Aggregate.Event):
        reason: str

        def apply(self, order: Order) -> None:
            order.disputed = True

    class DisputeResolved(Aggregate.Event):
        resolution: str

        def apply(self, order: Order) -> None:
            order.dispute_resolved = True

    class CommissionsSettled(Aggregate.Event):
        def apply(self, order: Order) -> None:
            order.commissions_settled = True

    def __init__(
        self,
        product_id: UUID,
        merchant_id: UUID,
        delivery: str,
        quantity: int,
        unit_price: int,
        amount: int,
        contact: str,
        token_hash: str,
        promoter_chain: list[UUID],
        reservation: list[list[Any]],
        expires_at: datetime,
    ) -> None:
        self.product_id = product_id
        self.merchant_id = merchant_id
        self.delivery = delivery
        self.quantity = quantity
        self.unit_price = unit_price
        self.amount = amount
        self.contact = contact
        self.token_hash = token_hash
        self.promoter_chain = list(promoter_chain)
        self.reservation = [list(item) for item in reservation]
        self.expires_at = expires_at
        self.status = PENDING
        self.paid_at: datetime | None = None
        self.txn_id: str | None = None
        self.commissions: list[list[Any]] = []
        self.cards: list[list[str]] = []
        self.content: str | None = None
        self.refunded_amount = 0
        self.rating: int | None = None
        self.disputed = False
        self.dispute_resolved = False
        self.commissions_settled = False

    @classmethod
    def place(
        cls,
        *,
        product_id: UUID,
        merchant_id: UUID,
        delivery: str,
        quantity: int,
        unit_price: int,
        contact: str,
        token_hash: str,
        promoter_chain: list[UUID],
        reservation: list[list[Any]],
        expires_at: datetime,
        at: datetime,
        order_id: UUID | None = None,
    ) -> Order:
        contact = contact.strip()
        if not contact or len(contact) > MAX_CONTACT:
            raise InvalidInput(f"a contact has 1 to {MAX_CONTACT} characters")
        return cls._create(
            cls.Placed,
            id=order_id or uuid4(),
            timestamp=at,
            product_id=product_id,
            merchant_id=merchant_id,
            delivery=delivery,
            quantity=quantity,
            unit_price=unit_price,
            amount=unit_price * quantity,
            contact=contact,
            token_hash=token_hash,
            promoter_chain=promoter_chain,
            reservation=reservation,
            expires_at=expires_at,
        )

    @property
    def reserved_card_ids(self) -> list[str]:
        return [cid for _, ids in self.reservation for cid in ids]

    def is_open(self) -> bool:
        """Not yet paid, expired or refunded: a payment may still be honoured."""
        return self.status in (PENDING, EXPIRED)

    def record_payment(
        self,
        provider: str,
        txn_id: str,
        amount: int,
        fee_rate_bps: int,
        commissions: list[list[Any]],
        at: datetime,
        *,
        honoured: bool = True,
    ) -> None:
        if not self.is_open():
            raise InvalidState("this order has already been paid or refunded")
        if not honoured and commissions:
            raise InvalidState("a payment sent back earns no commission")
        self.trigger_event(
            self.Paid,
            provider=provider,
            txn_id=txn_id,
            amount=amount,
            fee_rate_bps=fee_rate_bps,
            commissions=commissions,
            honoured=honoured,
            timestamp=at,
        )

    def deliver(self, cards: list[list[str]], content: str | None, at: datetime) -> None:
        if self.status != PAID:
            raise InvalidState("only a paid, undelivered order can be delivered")
        if content is not None and not content.strip():
            raise InvalidInput("delivery content cannot be empty")
        if content is not None and len(content) > MAX_TEXT:
            raise InvalidInput(f"delivery content is at most {MAX_TEXT} characters")
        self.trigger_event(self.Delivered, cards=cards, content=content, timestamp=at)

    def expire(self, at: datetime) -> None:
        if self.status != PENDING:
            raise InvalidState("only a pending order can expire")
        if at < self.expires_at:
            raise InvalidState("this order has not reached its expiry time")
        self.trigger_event(self.Expired, timestamp=at)

    def refund(self, reason: str, by: str, at: datetime) -> None:
        if self.status not in (PAID, DELIVERED):
            raise InvalidState("only a paid order can be refunded")
        if len(reason) > MAX_TEXT:
            raise InvalidInput(f"a reason is at most {MAX_TEXT} characters")
        self.trigger_event(self.Refunded, reason=reason, amount=self.amount, by=by, timestamp=at)

    def review(self, rating: int, comment: str, at: datetime) -> None:
        if self.status != DELIVERED:
            raise InvalidState("only a delivered order can be reviewed")
        if self.rating is not None:
            raise AlreadyReviewed("this order has already been reviewed")
        if not 1 <= rating <= 5:
            raise InvalidInput("a rating is from 1 to 5")
        if len(comment) > MAX_TEXT:
            raise InvalidInput(f"a comment is at most {MAX_TEXT} characters")
        self.trigger_event(self.Reviewed, rating=rating, comment=comment, timestamp=at)

    def dispute(self, reason: str, at: datetime) -> None:
        if self.status not in (PAID, DELIVERED):
            raise InvalidState("only a paid order can be disputed")
        if self.disputed:
            raise InvalidState("this order is already disputed")
        reason = reason.strip()
        if not reason or len(reason) > MAX_TEXT:
            raise InvalidInput(f"a reason has 1 to {MAX_TEXT} characters")
        self.trigger_event(self.Disputed, reason=reason, timestamp=at)

    def resolve_dispute(self, resolution: str, at: datetime) -> None:
        if not self.disputed or self.dispute_resolved:
            raise InvalidState("this order has no open dispute")
        self.trigger_event(self.DisputeResolved, resolution=resolution, timestamp=at)

    def settle_commissions(self, at: datetime) -> None:
        if self.commissions_settled or self.status not in (PAID, DELIVERED):
            raise InvalidState("no commissions to settle on this order")
        self.trigger_event(self.CommissionsSettled, timestamp=at)
