"""The Merchant aggregate: who sells, at what fee, in which tier, under what restrictions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.exceptions import InvalidInput, InvalidState, MerchantRestricted, OverLimit
from domain.fees import TIERS

MAX_NAME = 200

# What started an evaluation (``Merchant.Evaluated.trigger``; rules in domain.tiering).
SCHEDULE = "schedule"
ON_DEMAND = "on_demand"
RECTIFICATION = "rectification"


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
        # The score breakdown behind the change, [name, raw, points, weight] per component
        # (domain.scoring); None for a change made by hand, and in events recorded before.
        components: list[list[Any]] | None = None

        def apply(self, merchant: Merchant) -> None:
            merchant.tier = self.new_tier

    class Restricted(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.restricted = True

    class CardKeyShredded(Aggregate.Event):
        """The merchant's card key is deleted: its cards can never be read, so never sold."""

        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.shredded = True

    class Reinstated(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.restricted = False

    # ---- tiering (issue 4): evaluations, rectification, restrictions, appeals

    class Evaluated(Aggregate.Event):
        """The tiering process scored the merchant (domain.scoring, domain.tiering)."""

        score: float
        band: str
        components: list[list[Any]]
        trigger: str  # SCHEDULE, ON_DEMAND or RECTIFICATION
        scheduled_for: datetime | None

        def apply(self, merchant: Merchant) -> None:
            day = self.timestamp.astimezone(UTC).date()
            # Evaluations count by day: a second one the same day replaces that day's.
            if merchant.last_evaluated_on != day:
                merchant.previous_band = merchant.last_band
            merchant.last_band = self.band
            merchant.last_evaluated_on = day
            merchant.last_score = self.score
            merchant.last_evaluated_at = self.timestamp
            if self.trigger == SCHEDULE:
                merchant.last_scheduled_for = self.scheduled_for

    class RectificationStarted(Aggregate.Event):
        due_at: datetime
        score: float

        def apply(self, merchant: Merchant) -> None:
            merchant.rectification_due = self.due_at

    class RectificationEnded(Aggregate.Event):
        outcome: str  # passed, failed or left_watch
        score: float

        def apply(self, merchant: Merchant) -> None:
            merchant.rectification_due = None

    class OrderLimitChanged(Aggregate.Event):
        limit: int | None  # units per order; None: no limit beyond the product's own
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.order_limit = self.limit

    class WithdrawalsHeld(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.withdrawals_held = True

    class WithdrawalsReleased(Aggregate.Event):
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.withdrawals_held = False

    class AppealFiled(Aggregate.Event):
        appeal_id: UUID
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.open_appeal = self.appeal_id
            merchant.last_appeal_at = self.timestamp

    class AppealDecided(Aggregate.Event):
        appeal_id: UUID
        outcome: str  # upheld or rejected
        score: float
        band: str
        components: list[list[Any]]
        reason: str

        def apply(self, merchant: Merchant) -> None:
            merchant.open_appeal = None
            merchant.last_appeal_outcome = self.outcome

    def __init__(self, name: str, contact: str, tier: str, fee_rate_bps: int) -> None:
        self.name = name
        self.contact = contact
        self.tier = tier
        self.fee_rate_bps = fee_rate_bps
        self.api_key_hash = ""
        self.restricted = False
        self.shredded = False
        self.last_band: str | None = None
        self.previous_band: str | None = None
        self.last_evaluated_on: date | None = None
        self.last_evaluated_at: datetime | None = None
        self.last_score: float | None = None
        self.last_scheduled_for: datetime | None = None
        self.rectification_due: datetime | None = None
        self.order_limit: int | None = None
        self.withdrawals_held = False
        self.open_appeal: UUID | None = None
        self.last_appeal_at: datetime | None = None
        self.last_appeal_outcome: str | None = None

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

    def change_tier(
        self,
        new_tier: str,
        score: float,
        reason: str,
        at: datetime,
        components: list[list[Any]] | None = None,
    ) -> None:
        if new_tier not in TIERS:
            raise InvalidInput(f"unknown tier {new_tier!r}")
        self.trigger_event(
            self.TierChanged,
            old_tier=self.tier,
            new_tier=new_tier,
            score=score,
            reason=reason,
            components=components,
            timestamp=at,
        )

    def restrict(self, reason: str, at: datetime) -> None:
        if not self.restricted:
            self.trigger_event(self.Restricted, reason=reason, timestamp=at)

    def shred_card_key(self, reason: str, at: datetime) -> None:
        if not self.shredded:
            self.trigger_event(self.CardKeyShredded, reason=reason, timestamp=at)

    def reinstate(self, reason: str, at: datetime) -> None:
        if self.restricted:
            self.trigger_event(self.Reinstated, reason=reason, timestamp=at)

    def check_can_sell(self) -> None:
        if self.restricted:
            raise MerchantRestricted("this merchant is restricted and cannot take orders")

    # ---- tiering (issue 4)

    @property
    def registered_at(self) -> datetime:
        return self.created_on

    @property
    def violations(self) -> int:
        """Restrictions or violations in force, for the score's compliance component."""
        return int(self.restricted)

    @property
    def withdrawals_need_review(self) -> bool:
        """Watch-tier merchants' withdrawals are reviewed, and held ones until released."""
        return self.tier == TIERS[-1] or self.withdrawals_held

    def record_evaluation(
        self,
        score: float,
        band: str,
        components: list[list[Any]],
        trigger: str,
        scheduled_for: datetime | None,
        at: datetime,
    ) -> None:
        self.trigger_event(
            self.Evaluated,
            score=score,
            band=band,
            components=components,
            trigger=trigger,
            scheduled_for=scheduled_for,
            timestamp=at,
        )

    def start_rectification(self, due_at: datetime, score: float, at: datetime) -> None:
        if self.rectification_due is not None:
            raise InvalidState("a rectification is already running")
        self.trigger_event(self.RectificationStarted, due_at=due_at, score=score, timestamp=at)

    def end_rectification(self, outcome: str, score: float, at: datetime) -> None:
        if self.rectification_due is not None:
            self.trigger_event(self.RectificationEnded, outcome=outcome, score=score, timestamp=at)

    def limit_orders(self, limit: int | None, reason: str, at: datetime) -> None:
        if limit is not None and limit < 1:
            raise InvalidInput("an order limit is at least 1")
        if limit != self.order_limit:
            self.trigger_event(self.OrderLimitChanged, limit=limit, reason=reason, timestamp=at)

    def hold_withdrawals(self, reason: str, at: datetime) -> None:
        if not self.withdrawals_held:
            self.trigger_event(self.WithdrawalsHeld, reason=reason, timestamp=at)

    def release_withdrawals(self, reason: str, at: datetime) -> None:
        if self.withdrawals_held:
            self.trigger_event(self.WithdrawalsReleased, reason=reason, timestamp=at)

    def file_appeal(self, reason: str, at: datetime, cooldown: timedelta) -> UUID:
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise InvalidInput("an appeal needs a reason of 1 to 2000 characters")
        if self.open_appeal is not None:
            raise InvalidState("an appeal is already being decided")
        if self.last_appeal_at is not None and at < self.last_appeal_at + cooldown:
            after = (self.last_appeal_at + cooldown).isoformat()
            raise InvalidState(f"one appeal per {cooldown.days} days; the next from {after}")
        appeal_id = uuid4()
        self.trigger_event(self.AppealFiled, appeal_id=appeal_id, reason=reason, timestamp=at)
        return appeal_id

    def decide_appeal(
        self, outcome: str, score: float, band: str, components: list[list[Any]], reason: str, at: datetime
    ) -> None:
        if self.open_appeal is None:
            raise InvalidState("no appeal is open")
        self.trigger_event(
            self.AppealDecided,
            appeal_id=self.open_appeal,
            outcome=outcome,
            score=score,
            band=band,
            components=components,
            reason=reason,
            timestamp=at,
        )

    def check_order_quantity(self, quantity: int) -> None:
        """A restricted merchant sells at most its lower limit per order."""
        if self.order_limit is not None and quantity > self.order_limit:
            raise OverLimit(f"this merchant may sell at most {self.order_limit} per order for now")

    def check_can_withdraw(self) -> None:
        """For merchant payouts: held withdrawals wait for review."""
        if self.withdrawals_held:
            raise MerchantRestricted("this merchant's withdrawals are held for review")
