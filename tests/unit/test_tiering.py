"""The tier rules, without I/O: bands, hysteresis, fast track, grace, rectification,
appeals and the process policy. ``run`` plays evaluations forward the way the Merchant
records their outcomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.exceptions import InvalidState, OverLimit
from domain.fees import TIERS
from domain.merchant import ON_DEMAND, RECTIFICATION, SCHEDULE, Merchant
from domain.tiering import (
    DECIDE_APPEAL,
    EVALUATE,
    FAILED,
    LEFT_WATCH,
    PASSED,
    RECTIFY,
    Due,
    Outcome,
    TieringPolicy,
    TierState,
    Undue,
    appeal,
    band_for,
    evaluate,
    is_due,
    next_tier,
    schedule_for,
    state_of,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MONTH = timedelta(days=30)
POLICY = TieringPolicy()
VETERAN = T0 - timedelta(days=365)  # registered long ago: no grace


def state(tier: str = "basic", registered_at: datetime = VETERAN, **fields: Any) -> TierState:
    values: dict[str, Any] = {
        "tier": tier,
        "registered_at": registered_at,
        "prior_band": None,
        "rectification_due": None,
        "restricted": False,
    }
    return TierState(**(values | fields))


def after(s: TierState, o: Outcome) -> TierState:
    """The state once an evaluation's outcome is recorded (a later day's evaluation)."""
    due = s.rectification_due
    if o.end_rectification is not None:
        due = None
    if o.start_rectification is not None:
        due = o.start_rectification
    restricted = (s.restricted or o.restrict) and not o.lift
    tier = o.new_tier or s.tier
    return replace(s, tier=tier, prior_band=o.band, rectification_due=due, restricted=restricted)


def run(s: TierState, scores: list[float], start: datetime = T0) -> tuple[TierState, list[Outcome]]:
    outcomes = []
    for i, value in enumerate(scores):
        o = evaluate(s, value, start + i * MONTH, POLICY)
        outcomes.append(o)
        s = after(s, o)
    return s, outcomes


# ------------------------------------------------------------------------ bands


@pytest.mark.parametrize(
    ("score", "band"),
    [(100, "core"), (90, "core"), (89.99, "growth"), (70, "growth"), (69.99, "basic"), (50, "basic"),
     (49.99, "watch"), (0, "watch")],
)  # fmt: skip
def test_bands_are_core_90_growth_70_basic_50_and_watch_below(score: float, band: str) -> None:
    assert band_for(score) == band


# ------------------------------------------------------------- moving between tiers


def test_a_promotion_needs_two_evaluations_in_a_row_in_the_better_band() -> None:
    s, outcomes = run(state("basic"), [75, 75])
    assert [o.new_tier for o in outcomes] == [None, "growth"]
    assert s.tier == "growth"


def test_a_demotion_needs_two_evaluations_in_a_row_in_the_worse_band() -> None:
    s, outcomes = run(state("growth"), [60, 60])
    assert [o.new_tier for o in outcomes] == [None, "basic"]
    assert "two evaluations in a row below growth" in outcomes[1].reason


def test_a_move_goes_no_further_than_both_evaluations_support() -> None:
    down, _ = run(state("core"), [60, 20])
    up, _ = run(state("watch"), [75, 55])
    assert (down.tier, up.tier) == ("basic", "basic")


def test_an_evaluation_back_in_the_tier_resets_the_count() -> None:
    s, outcomes = run(state("basic"), [75, 65, 75])
    assert [o.new_tier for o in outcomes] == [None, None, None]
    assert s.tier == "basic"


def test_the_fast_track_moves_a_score_well_inside_core_at_once() -> None:
    just_core = evaluate(state("basic"), 92, T0, POLICY)
    fast = evaluate(state("basic"), 95, T0, POLICY)
    assert just_core.new_tier is None
    assert fast.new_tier == "core"
    assert fast.reason.startswith("fast track")


def test_grace_keeps_a_new_merchant_from_demotion_for_90_days() -> None:
    new = state("basic", registered_at=T0)
    during = evaluate(replace(new, prior_band="watch"), 10, T0 + timedelta(days=89), POLICY)
    after_grace = evaluate(replace(new, prior_band="watch"), 10, T0 + timedelta(days=90), POLICY)
    assert during.new_tier is None and during.reason.startswith("grace")
    assert after_grace.new_tier == "watch"


def test_grace_does_not_hold_back_a_promotion() -> None:
    s, _ = run(state("basic", registered_at=T0), [80, 80])
    assert s.tier == "growth"


@given(
    st.sampled_from([(90.0, "growth"), (70.0, "basic"), (50.0, "watch")]),
    st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_a_score_wobbling_across_a_band_edge_never_flaps(edge: tuple[float, str], above: list[bool]) -> None:
    floor, below_tier = edge
    start = band_for(floor)
    # Alternating around the edge (never twice in a row on the far side) moves nobody.
    sequence = [floor + 0.5 if up else floor - 0.5 for up in above]
    sequence = [v if i % 2 == 0 else floor + 0.5 for i, v in enumerate(sequence)]
    s, outcomes = run(state(start), sequence)
    assert s.tier == start
    assert all(o.new_tier is None for o in outcomes)
    s2, _ = run(state(below_tier), [floor - 0.5 if i % 2 else floor + 0.5 for i in range(len(above))])
    assert s2.tier == below_tier


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=24))
def test_a_tier_change_is_always_backed_by_two_evaluations_or_the_fast_track(scores: list[float]) -> None:
    s = state("basic")
    previous: str | None = None
    for i, value in enumerate(scores):
        o = evaluate(s, value, T0 + i * MONTH, POLICY)
        if o.new_tier is not None:
            fast = value >= POLICY.fast_track_score and o.new_tier == "core"
            same_side = previous is not None and (
                (TIERS.index(previous) < TIERS.index(s.tier)) == (TIERS.index(o.band) < TIERS.index(s.tier))
            )
            assert fast or same_side
        previous = o.band
        s = after(s, o)


# --------------------------------------------------------------------- rectification


def test_a_watch_merchant_under_50_gets_a_rectification_deadline() -> None:
    o = evaluate(state("watch"), 30, T0, POLICY)
    assert o.start_rectification == T0 + timedelta(days=30)
    assert evaluate(state("watch"), 55, T0, POLICY).start_rectification is None


def test_still_under_50_at_the_deadline_brings_the_restrictions() -> None:
    due = T0 + timedelta(days=30)
    s = state("watch", rectification_due=due)
    before = evaluate(s, 30, due - timedelta(seconds=1), POLICY)
    at = evaluate(s, 30, due, POLICY)
    passed = evaluate(s, 52, due, POLICY)
    assert (before.end_rectification, before.restrict) == (None, False)
    assert (at.end_rectification, at.restrict) == (FAILED, True)
    assert (passed.end_rectification, passed.restrict) == (PASSED, False)


def test_leaving_watch_ends_the_rectification_and_lifts_the_restrictions() -> None:
    s = state("watch", prior_band="basic", restricted=True)
    o = evaluate(s, 60, T0, POLICY)
    assert o.new_tier == "basic" and o.lift
    running = state("watch", prior_band="basic", rectification_due=T0 + MONTH)
    assert evaluate(running, 60, T0, POLICY).end_rectification == LEFT_WATCH


def test_restrictions_stay_while_the_merchant_is_in_watch() -> None:
    o = evaluate(state("watch", restricted=True), 55, T0, POLICY)
    assert not o.lift and not o.restrict and o.start_rectification is None


@pytest.mark.parametrize("days", [14, 31])
def test_the_rectification_deadline_is_15_to_30_days(days: int) -> None:
    with pytest.raises(ValueError):
        TieringPolicy(rectification=timedelta(days=days))
    assert TieringPolicy(rectification=timedelta(days=15)).rectification.days == 15


# --------------------------------------------------------------------------- appeals


def test_an_appeal_grants_a_better_band_at_once_and_lifts_restrictions() -> None:
    o = appeal(state("watch", restricted=True), 72)
    assert (o.new_tier, o.lift) == ("growth", True)


def test_an_appeal_lifts_restrictions_at_50_even_while_still_in_watch() -> None:
    s = state("watch", restricted=True, prior_band="watch")
    assert appeal(s, 45).lift is False
    assert appeal(replace(s, tier="basic"), 45).new_tier is None


def test_an_appeal_never_demotes() -> None:
    o = appeal(state("core"), 10)
    assert (o.new_tier, o.lift, o.restrict) == (None, False, False)
    assert o.reason.startswith("appeal: score 10 supports no change")


# --------------------------------------------------------------------- next tier


def test_next_tier_says_how_many_points_and_evaluations_are_missing() -> None:
    n = next_tier(state("basic"), 64.5, POLICY)
    assert n is not None
    assert (n.tier, n.min_score, n.points_needed, n.evaluations_needed) == ("growth", 70.0, 5.5, 2)
    halfway = next_tier(state("basic", prior_band="growth"), 71, POLICY)
    assert halfway is not None and (halfway.points_needed, halfway.evaluations_needed) == (0, 1)
    assert next_tier(state("core"), 99, POLICY) is None


# ------------------------------------------------------------- idempotent evaluations


def test_a_scheduled_evaluation_runs_once_per_deadline() -> None:
    due = T0
    assert is_due(state(), SCHEDULE, due, T0)
    done = state(last_scheduled_for=due)
    assert not is_due(done, SCHEDULE, due, T0)
    assert is_due(done, SCHEDULE, due + MONTH, T0 + MONTH)
    assert is_due(done, ON_DEMAND, None, T0)


def test_a_rectification_check_runs_only_for_the_open_deadline_once_it_passed() -> None:
    due = T0 + MONTH
    s = state("watch", rectification_due=due)
    assert not is_due(s, RECTIFICATION, due, due - timedelta(seconds=1))
    assert is_due(s, RECTIFICATION, due, due)
    assert not is_due(replace(s, rectification_due=None), RECTIFICATION, due, due)
    with pytest.raises(ValueError):
        is_due(s, SCHEDULE, None, due)


# ------------------------------------------------------- the Merchant's own records


def registered(at: datetime = T0) -> Merchant:
    merchant = Merchant.register("Shop", "a@b.c", "basic", 500, at)
    merchant.collect_events()
    return merchant


def test_two_evaluations_on_one_day_count_once() -> None:
    m = registered(VETERAN)
    m.record_evaluation(75, "growth", [], ON_DEMAND, None, T0)
    m.record_evaluation(75, "growth", [], ON_DEMAND, None, T0 + timedelta(hours=1))
    same_day = state_of(m, T0.date())
    next_day = state_of(m, (T0 + timedelta(days=1)).date())
    assert same_day.prior_band is None  # the day's first evaluation had no predecessor
    assert next_day.prior_band == "growth"


def test_the_merchant_records_rectification_restrictions_and_appeals() -> None:
    m = registered()
    m.start_rectification(T0 + MONTH, 30.0, T0)
    with pytest.raises(InvalidState):
        m.start_rectification(T0 + MONTH, 30.0, T0)
    m.end_rectification(FAILED, 30.0, T0 + MONTH)
    m.limit_orders(5, "rectification failed", T0 + MONTH)
    m.hold_withdrawals("rectification failed", T0 + MONTH)
    m.check_order_quantity(5)
    with pytest.raises(OverLimit):
        m.check_order_quantity(6)
    assert state_of(m, T0.date()).restricted and m.withdrawals_need_review
    appeal_id = m.file_appeal("the disputes were resolved", T0 + MONTH, POLICY.appeal_cooldown)
    with pytest.raises(InvalidState):
        m.file_appeal("again", T0 + MONTH, POLICY.appeal_cooldown)
    m.decide_appeal("upheld", 55.0, "basic", [], "appeal", T0 + MONTH)
    with pytest.raises(InvalidState):  # the cooldown
        m.file_appeal("again", T0 + MONTH + timedelta(days=13), POLICY.appeal_cooldown)
    m.file_appeal("again", T0 + MONTH + timedelta(days=14), POLICY.appeal_cooldown)
    names = [type(e).__name__ for e in m.collect_events()]
    assert names == [
        "RectificationStarted", "RectificationEnded", "OrderLimitChanged", "WithdrawalsHeld",
        "AppealFiled", "AppealDecided", "AppealFiled",
    ]  # fmt: skip
    assert m.open_appeal is not None and m.open_appeal != appeal_id


# --------------------------------------------------------------- the process policy


def test_registration_and_every_regular_evaluation_schedule_the_next_one() -> None:
    reg = Merchant.register("Shop", "a@b.c", "basic", 500, T0)
    (registered_event,) = reg.collect_events()
    assert schedule_for(registered_event, POLICY) == [Due(EVALUATE, reg.id, T0 + MONTH)]
    reg.record_evaluation(60, "basic", [], ON_DEMAND, None, T0 + timedelta(days=3))
    reg.record_evaluation(60, "basic", [], RECTIFICATION, T0, T0 + timedelta(days=4))
    on_demand, rectification = reg.collect_events()
    assert schedule_for(on_demand, POLICY) == [Due(EVALUATE, reg.id, T0 + timedelta(days=33))]
    assert schedule_for(rectification, POLICY) == []


def test_rectification_and_appeals_set_and_cancel_their_deadlines() -> None:
    m = registered()
    m.start_rectification(T0 + MONTH, 30.0, T0)
    m.end_rectification(PASSED, 60.0, T0 + MONTH)
    m.file_appeal("please", T0, POLICY.appeal_cooldown)
    m.decide_appeal("rejected", 40.0, "watch", [], "appeal", T0)
    decisions = [schedule_for(e, POLICY) for e in m.collect_events()]
    assert decisions == [
        [Due(RECTIFY, m.id, T0 + MONTH)],
        [Undue(RECTIFY, m.id)],
        [Due(DECIDE_APPEAL, m.id, T0)],
        [Undue(DECIDE_APPEAL, m.id)],
    ]
    assert schedule_for(object(), POLICY) == []
    assert schedule_for(uuid4(), POLICY) == []
