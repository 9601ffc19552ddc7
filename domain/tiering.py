"""Merchant tiers (分层管理): the bands of the score, and when a merchant changes tier.

Pure rules, no I/O. The tiering process manager (consumers.tiering) decides *when* to
evaluate; ``evaluate`` decides *what* an evaluation changes, from the Merchant's state
and the score; the Shop records the outcome as Merchant events.

**Bands** (``BANDS``): core 90 or more, growth 70 to 89, basic 50 to 69, watch under 50.
The band of a score is where the score falls; the tier is where the merchant is. The
tier decides the fee rate (domain.fees), the ranking weight (domain.ranking) and, for
watch, withdrawal review.

**A change of tier** (``evaluate``):

- *Hysteresis.* A merchant leaves its tier only when this evaluation and the previous
  one both fall on the same side of it, and then moves to whichever of the two bands
  is nearer its tier: never further than both evaluations support. A score that
  wobbles across a band edge therefore never moves the merchant back and forth.
  Evaluations are counted by day (the score's window is by day): a second evaluation
  on the same day replaces that day's, it is not a second one in a row.
- *Fast track.* A score of ``FAST_TRACK_SCORE`` (core's floor plus a margin of 5) or
  more moves the merchant to core at once.
- *Grace.* A merchant is not demoted in its first 90 days (``GRACE``).

**Rectification** (整改): a merchant in watch scoring under 50 gets a deadline (15 to 30
days; 30 by default). At the deadline it is evaluated again: still under 50, and the
restrictions follow, a lower order limit (``RESTRICTED_ORDER_LIMIT`` per order) and
withdrawals held for review; 50 or more, and the rectification is passed. A merchant
that leaves watch ends its rectification and has its restrictions lifted.

**Appeals** (申诉, ``appeal``): the merchant is scored again at once. An appeal can only
help: a band above the tier is granted at once (no second evaluation needed), and
restrictions are lifted when the score is 50 or more. An appeal is not an evaluation
for hysteresis, so appealing never counts towards a demotion. One appeal at a time,
and ``APPEAL_COOLDOWN`` between one's filing and the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.fees import TIERS
from domain.merchant import ON_DEMAND, RECTIFICATION, SCHEDULE, Merchant

CORE, GROWTH, BASIC, WATCH = TIERS

# Each tier and the least score of its band, best first (the order of domain.fees.TIERS).
BANDS: tuple[tuple[str, float], ...] = ((CORE, 90.0), (GROWTH, 70.0), (BASIC, 50.0), (WATCH, 0.0))
BAND_FLOOR: dict[str, float] = dict(BANDS)
WATCH_LINE = BAND_FLOOR[BASIC]  # under this a watch merchant is in rectification

FAST_TRACK_MARGIN = 5.0
FAST_TRACK_SCORE = BAND_FLOOR[CORE] + FAST_TRACK_MARGIN
GRACE = timedelta(days=90)
RECTIFICATION_MIN = timedelta(days=15)
RECTIFICATION_MAX = timedelta(days=30)
RESTRICTED_ORDER_LIMIT = 5  # units per order while restricted
APPEAL_COOLDOWN = timedelta(days=14)
EVALUATION_EVERY = timedelta(days=30)  # "monthly"

# What started an evaluation (named in domain.merchant, whose events record it).
TRIGGERS = (SCHEDULE, ON_DEMAND, RECTIFICATION)

# How a rectification ended.
PASSED = "passed"
FAILED = "failed"
LEFT_WATCH = "left_watch"

UPHELD = "upheld"
REJECTED = "rejected"


def rank(tier: str) -> int:
    """0 for the best tier; larger is worse."""
    return TIERS.index(tier)


def band_for(score: float) -> str:
    for tier, floor in BANDS:
        if score >= floor:
            return tier
    return WATCH


@dataclass(frozen=True)
class TieringPolicy:
    """The tunable parts of the rules; the defaults are the documented ones."""

    evaluation_every: timedelta = EVALUATION_EVERY
    rectification: timedelta = RECTIFICATION_MAX
    grace: timedelta = GRACE
    fast_track_score: float = FAST_TRACK_SCORE
    restricted_order_limit: int = RESTRICTED_ORDER_LIMIT
    appeal_cooldown: timedelta = APPEAL_COOLDOWN

    def __post_init__(self) -> None:
        if not RECTIFICATION_MIN <= self.rectification <= RECTIFICATION_MAX:
            raise ValueError("a rectification deadline is 15 to 30 days")
        if self.evaluation_every < timedelta(days=1):
            raise ValueError("merchants are evaluated at most daily")
        if self.fast_track_score < BAND_FLOOR[CORE]:
            raise ValueError("the fast track starts inside the core band")
        if self.restricted_order_limit < 1:
            raise ValueError("a restricted merchant may still sell one unit per order")


DEFAULT_POLICY = TieringPolicy()


@dataclass(frozen=True)
class TierState:
    """What the rules need to know about a merchant."""

    tier: str
    registered_at: datetime
    # The band of the last evaluation on an earlier day than this one: "the previous".
    prior_band: str | None
    rectification_due: datetime | None
    restricted: bool  # the rectification's restrictions are in force
    last_scheduled_for: datetime | None = None


def state_of(merchant: Merchant, on: date) -> TierState:
    prior = merchant.last_band if merchant.last_evaluated_on != on else merchant.previous_band
    return TierState(
        tier=merchant.tier,
        registered_at=merchant.registered_at,
        prior_band=prior,
        rectification_due=merchant.rectification_due,
        restricted=merchant.order_limit is not None or merchant.withdrawals_held,
        last_scheduled_for=merchant.last_scheduled_for,
    )


@dataclass(frozen=True)
class Outcome:
    band: str
    new_tier: str | None  # None: the tier stays
    reason: str
    start_rectification: datetime | None = None  # its deadline
    end_rectification: str | None = None  # PASSED, FAILED or LEFT_WATCH
    restrict: bool = False
    lift: bool = False


def is_due(state: TierState, trigger: str, scheduled_for: datetime | None, now: datetime) -> bool:
    """Whether this evaluation should run: process managers may issue one twice (a tick
    before their own event is seen), and a repeat must change nothing."""
    if trigger == ON_DEMAND:
        return True
    if scheduled_for is None:
        raise ValueError(f"a {trigger} evaluation names the deadline it is for")
    if trigger == SCHEDULE:
        return state.last_scheduled_for is None or scheduled_for > state.last_scheduled_for
    if trigger == RECTIFICATION:
        return state.rectification_due == scheduled_for and now >= scheduled_for
    raise ValueError(f"unknown trigger {trigger!r}")


def evaluate(state: TierState, score: float, now: datetime, policy: TieringPolicy) -> Outcome:
    """What one evaluation with this score changes."""
    band = band_for(score)
    new_tier, reason = _move(state, band, score, now, policy)
    return _rectify(state, new_tier or state.tier, score, now, policy, band, new_tier, reason)


def _move(
    state: TierState, band: str, score: float, now: datetime, policy: TieringPolicy
) -> tuple[str | None, str]:
    tier, prior = state.tier, state.prior_band
    if band == tier:
        return None, f"score {score:g} is in the {tier} band"
    if rank(band) < rank(tier):
        if score >= policy.fast_track_score:
            return CORE, f"fast track: score {score:g} is at least {policy.fast_track_score:g}"
        if prior is not None and rank(prior) < rank(tier):
            target = TIERS[max(rank(band), rank(prior))]
            return target, f"two evaluations in a row above {tier} ({prior}, then {band} at {score:g})"
        return None, f"score {score:g} is in the {band} band; a second evaluation in a row is needed"
    grace_ends = state.registered_at + policy.grace
    if now < grace_ends:
        return None, f"grace: no demotion until {grace_ends.date().isoformat()} (score {score:g})"
    if prior is not None and rank(prior) > rank(tier):
        target = TIERS[min(rank(band), rank(prior))]
        return target, f"two evaluations in a row below {tier} ({prior}, then {band} at {score:g})"
    return None, f"score {score:g} is in the {band} band; a second evaluation in a row is needed"


def _rectify(
    state: TierState,
    tier: str,
    score: float,
    now: datetime,
    policy: TieringPolicy,
    band: str,
    new_tier: str | None,
    reason: str,
) -> Outcome:
    if tier != WATCH:
        return Outcome(
            band,
            new_tier,
            reason,
            end_rectification=LEFT_WATCH if state.rectification_due is not None else None,
            lift=state.restricted,
        )
    if state.restricted:
        # Restrictions stay until the merchant leaves watch, or an appeal lifts them.
        return Outcome(band, new_tier, reason)
    if state.rectification_due is None:
        if score < WATCH_LINE:
            return Outcome(band, new_tier, reason, start_rectification=now + policy.rectification)
        return Outcome(band, new_tier, reason)
    if now < state.rectification_due:
        return Outcome(band, new_tier, reason)
    if score < WATCH_LINE:
        why = f"{reason}; rectification failed: still under {WATCH_LINE:g} at the deadline"
        return Outcome(band, new_tier, why, end_rectification=FAILED, restrict=True)
    return Outcome(band, new_tier, f"{reason}; rectification passed", end_rectification=PASSED)


def appeal(state: TierState, score: float) -> Outcome:
    """What an appeal's fresh score changes: it may raise the tier and lift restrictions."""
    band = band_for(score)
    new_tier = band if rank(band) < rank(state.tier) else None
    tier = new_tier or state.tier
    if tier != WATCH:
        end = LEFT_WATCH if state.rectification_due is not None else None
        lift = state.restricted
    else:
        end, lift = None, state.restricted and score >= WATCH_LINE
    if new_tier is not None:
        reason = f"appeal: score {score:g} is in the {band} band"
    elif lift:
        reason = f"appeal: score {score:g} is no longer under {WATCH_LINE:g}"
    else:
        reason = f"appeal: score {score:g} supports no change"
    return Outcome(band, new_tier, reason, end_rectification=end, lift=lift)


@dataclass(frozen=True)
class NextTier:
    tier: str
    min_score: float
    points_needed: float
    # Evaluations in a row at or above min_score that would move the merchant there.
    evaluations_needed: int


def next_tier(state: TierState, score: float, policy: TieringPolicy) -> NextTier | None:
    """What the merchant needs for the tier above its own; None in core."""
    if state.tier == CORE:
        return None
    target = TIERS[rank(state.tier) - 1]
    floor = BAND_FLOOR[target]
    needed = round(max(0.0, floor - score), 2)
    # One more suffices on the fast track, or when the previous evaluation was above too.
    prior_above = state.prior_band is not None and rank(state.prior_band) < rank(state.tier)
    evaluations = 1 if score >= policy.fast_track_score or (needed == 0 and prior_above) else 2
    return NextTier(target, floor, needed, evaluations)


# ------------------------------------------------------------- the process policy

EVALUATE = "evaluate"
RECTIFY = "rectify"
DECIDE_APPEAL = "appeal"


@dataclass(frozen=True)
class Due:
    kind: str
    merchant_id: UUID
    due_at: datetime


@dataclass(frozen=True)
class Undue:
    kind: str
    merchant_id: UUID


def schedule_for(event: Any, policy: TieringPolicy) -> list[Due | Undue]:
    """The deadlines an event of a Merchant sets or cancels (a pure function of it)."""
    mid = getattr(event, "originator_id", None)
    if isinstance(event, Merchant.Registered):
        return [Due(EVALUATE, mid, event.timestamp + policy.evaluation_every)]
    if isinstance(event, Merchant.Evaluated) and event.trigger in (SCHEDULE, ON_DEMAND):
        # Every regular evaluation starts the next period: an on-demand run moves the
        # schedule rather than adding a second evaluation soon after.
        return [Due(EVALUATE, mid, event.timestamp + policy.evaluation_every)]
    if isinstance(event, Merchant.RectificationStarted):
        return [Due(RECTIFY, mid, event.due_at)]
    if isinstance(event, Merchant.RectificationEnded):
        return [Undue(RECTIFY, mid)]
    if isinstance(event, Merchant.AppealFiled):
        return [Due(DECIDE_APPEAL, mid, event.timestamp)]
    if isinstance(event, Merchant.AppealDecided):
        return [Undue(DECIDE_APPEAL, mid)]
    return []


TOPICS = tuple(
    get_topic(cls)
    for cls in (
        Merchant.Registered,
        Merchant.Evaluated,
        Merchant.RectificationStarted,
        Merchant.RectificationEnded,
        Merchant.AppealFiled,
        Merchant.AppealDecided,
    )
)


def day_of(moment: datetime) -> date:
    """The UTC day of an instant: the score's windows are UTC days."""
    return moment.astimezone(UTC).date()


@dataclass(frozen=True)
class TierEvaluation:
    """What an evaluation or an appeal's decision did."""

    merchant_id: UUID
    evaluated: bool  # False: not due (a repeat), nothing recorded
    score: float
    band: str
    old_tier: str
    tier: str
    reason: str
    position: int


@dataclass(frozen=True)
class AppealFiled:
    appeal_id: UUID
    position: int
