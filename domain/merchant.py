"""The Merchant aggregate: who sells, at what fee, in which tier, under what restrictions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.exceptions import InvalidInput, MerchantRestricted
from domain.fees import TIERS

MAX_NAME = 200


class Merchant(Aggregate):
    class Registered(Aggregate.Created):
        name: str
        contact: str
        tier: str
        fee_rate_bps: int

    class ApiKeyIssued(Aggregate.Event):
        key_hash: str

        def apply(self, merchant: Merchant) -> None:
            merchant.api_key_hash = self.key_hash

    class FeeRateChanged(Aggregate.Event):
        fee_rate_bps: int
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.fee_rate_bps = self.fee_rate_bps

    class TierChanged(Aggregate.Event):
        old_tier: str
        new_tier: str
        score: float
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.tier = self.new_tier

    class Restricted(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.restricted = True

    class Reinstated(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.restricted = False

    def __init__(self, name: str, contact: str, tier: str, fee_rate_bps: int) -> None:
        self.name = name
        self.contact = contact
        self.tier = tier
        self.fee_rate_bps = fee_rate_bps
        self.api_key_hash = ""
        self.restricted = False

    @classmethod
    def register(
        cls, name: str, contact: str, tier: str, fee_rate_bps: int, at: datetime
    ) -> Merchant:
        if not name.strip() or len(name.strip()) > MAX_NAME:
            raise InvalidInput(f"a merchant needs a name of 1 to {MAX_NAME} characters")
        if len(contact.strip()) > MAX_NAME:
            raise InvalidInput(f"a contact is at most {MAX_NAME} characters")
        return cls._create(
            cls.Registered,
            id=uuid4(),
            timestamp=at,
            name=name.strip(),
            contact=contact.strip(),
            tier=tier,
            fee_rate_bps=fee_rate_bps,
        )

    @property
    def merchant_id(self) -> UUID:
        return self.id

    def issue_api_key(self, key_hash: str, at: datetime) -> None:
        self.trigger_event(self.ApiKeyIssued, key_hash=key_hash, timestamp=at)

    def change_fee_rate(self, fee_rate_bps: int, reason: str, at: datetime) -> None:
        if not 0 <= fee_rate_bps <= 5000:
            raise InvalidInput("a fee rate is between 0 and 5000 basis points")
        if fee_rate_bps != self.fee_rate_bps:
            self.trigger_event(
                self.FeeRateChanged, fee_rate_bps=fee_rate_bps, reason=reason, timestamp=at
            )

    def change_tier(self, new_tier: str, score: float, reason: str, at: datetime) -> None:
        if new_tier not in TIERS:
            raise InvalidInput(f"unknown tier {new_tier!r}")
        self.trigger_event(
            self.TierChanged,
            old_tier=self.tier,
            new_tier=new_tier,
            score=score,
            reason=reason,
            timestamp=at,
        )

    def restrict(self, reason: str, at: datetime) -> None:
        if not self.restricted:
            self.trigger_event(self.Restricted, reason=reason, timestamp=at)

    def reinstate(self, reason: str, at: datetime) -> None:
        if self.restricted:
            self.trigger_event(self.Reinstated, reason=reason, timestamp=at)

    def check_can_sell(self) -> None:
        if self.restricted:
            raise MerchantRestricted("this merchant is restricted and cannot take orders")
