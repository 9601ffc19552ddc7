"""Promoters (分销): who shares products, who referred them, and what they may withdraw."""

from __future__ import annotations

import secrets
from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.exceptions import InsufficientBalance, InvalidInput
from domain.ids import promoter_code_id
from domain.promoter_levels import BASE_LEVEL, level_row

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
CODE_LENGTH = 8
MAX_NAME = 200


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    return code.strip().upper()


class Promoter(Aggregate):
    class Joined(Aggregate.Created):
        name: str
        contact: str
        code: str
        token_hash: str
        referrer_id: UUID | None
        # The referrer and the referrer's referrer, fixed at join: read models count
        # direct and indirect referrals from this event alone, never from another's.
        upline: list[UUID]

    class CommissionCredited(Aggregate.Event):
        order_id: UUID
        level: int
        amount: int

        def apply(self, promoter: Promoter) -> None:
            promoter.available += self.amount

    class WithdrawalRequested(Aggregate.Event):
        withdrawal_id: UUID
        amount: int

        def apply(self, promoter: Promoter) -> None:
            promoter.available -= self.amount
            promoter.withdrawn += self.amount

    class LevelChanged(Aggregate.Event):
        """Cumulative referred sales moved the promoter to another level (domain.promoter_levels)."""

        old_level: int
        new_level: int
        referred_sales: int  # fen, as the promoter-levels process counted them

        def apply(self, promoter: Promoter) -> None:
            promoter.level = self.new_level
            promoter.referred_sales = self.referred_sales

    def __init__(
        self,
        name: str,
        contact: str,
        code: str,
        token_hash: str,
        referrer_id: UUID | None,
        upline: list[UUID],
    ) -> None:
        self.level = BASE_LEVEL
        # The referred sales at the last level change; the live count is the process's.
        self.referred_sales = 0
        self.upline = list(upline)
        self.name = name
        self.contact = contact
        self.code = code
        self.token_hash = token_hash
        self.referrer_id = referrer_id
        self.available = 0
        self.withdrawn = 0

    @classmethod
    def join(
        cls,
        name: str,
        contact: str,
        code: str,
        token_hash: str,
        referrer: Promoter | None,
        at: datetime,
    ) -> Promoter:
        if not name.strip() or len(name.strip()) > MAX_NAME:
            raise InvalidInput(f"a promoter needs a name of 1 to {MAX_NAME} characters")
        if len(contact.strip()) > MAX_NAME:
            raise InvalidInput(f"a contact is at most {MAX_NAME} characters")
        return cls._create(
            cls.Joined,
            id=uuid4(),
            timestamp=at,
            name=name.strip(),
            contact=contact.strip(),
            code=code,
            token_hash=token_hash,
            referrer_id=referrer.id if referrer else None,
            upline=[referrer.id, *referrer.upline[:1]] if referrer else [],
        )

    def credit(self, order_id: UUID, level: int, amount: int, at: datetime) -> None:
        self.trigger_event(
            self.CommissionCredited, order_id=order_id, level=level, amount=amount, timestamp=at
        )

    def change_level(self, level: int, referred_sales: int, at: datetime) -> None:
        level_row(level)  # an unknown level raises KeyError: a bug in the caller, never input
        if level != self.level:
            self.trigger_event(
                self.LevelChanged,
                old_level=self.level,
                new_level=level,
                referred_sales=referred_sales,
                timestamp=at,
            )

    def withdraw(self, amount: int, at: datetime) -> UUID:
        if amount <= 0:
            raise InvalidInput("a withdrawal must be positive")
        if amount > self.available:
            raise InsufficientBalance("the available balance does not cover this withdrawal")
        withdrawal_id = uuid4()
        self.trigger_event(
            self.WithdrawalRequested, withdrawal_id=withdrawal_id, amount=amount, timestamp=at
        )
        return withdrawal_id


class PromoterCode(Aggregate):
    """Claims a referral code: its id derives from the code, so a code is taken once."""

    class Claimed(Aggregate.Created):
        code: str
        promoter_id: UUID

    def __init__(self, code: str, promoter_id: UUID) -> None:
        self.code = code
        self.promoter_id = promoter_id

    @classmethod
    def claim(cls, code: str, promoter_id: UUID, at: datetime) -> PromoterCode:
        return cls._create(
            cls.Claimed,
            id=promoter_code_id(code),
            timestamp=at,
            code=code,
            promoter_id=promoter_id,
        )
