"""The recommended ranking formula: tier weight, quality blended with sales, cold start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.fees import TIERS
from domain.ranking import (
    COLD_START_BOOST,
    COLD_START_DAYS,
    SALES_SATURATION,
    TIER_WEIGHT,
    Signals,
    cold_start,
    quality,
    rank,
    sales,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=365)


def signals(**fields: object) -> Signals:
    base: dict[str, object] = {
        "tier": "basic", "merchant_since": OLD, "units_sold": 0, "reviews": 0, "good_reviews": 0,
    }  # fmt: skip
    return Signals(**(base | fields))  # type: ignore[arg-type]


def test_every_tier_has_a_weight_and_better_tiers_weigh_more() -> None:
    assert set(TIER_WEIGHT) == set(TIERS)
    weights = [TIER_WEIGHT[t] for t in TIERS]
    assert weights == sorted(weights, reverse=True)


def test_quality_is_smoothed_so_one_review_neither_makes_nor_breaks_a_product() -> None:
    assert quality(0, 0) == 0.8
    assert 0.8 < quality(1, 1) < quality(100, 100) <= 1
    assert 0.5 < quality(1, 0) < 0.8


def test_sales_saturate_on_a_log_scale() -> None:
    assert sales(0) == 0
    assert sales(SALES_SATURATION) == 1 == sales(SALES_SATURATION * 10)
    assert sales(10) < sales(100) < sales(999)


def test_the_cold_start_boost_fades_over_the_merchants_first_days() -> None:
    assert cold_start(NOW, NOW) == COLD_START_BOOST
    assert cold_start(NOW - timedelta(days=COLD_START_DAYS / 2), NOW) == COLD_START_BOOST / 2
    assert cold_start(NOW - timedelta(days=COLD_START_DAYS), NOW) == 0


def test_a_well_reviewed_product_can_outrank_one_that_only_sells() -> None:
    seller = signals(units_sold=200, reviews=100, good_reviews=60)
    loved = signals(units_sold=50, reviews=100, good_reviews=100)
    assert rank(loved, NOW) > rank(seller, NOW)


def test_a_new_merchant_is_seen_before_an_idle_old_one() -> None:
    assert rank(signals(merchant_since=NOW - timedelta(days=2)), NOW) > rank(signals(), NOW)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=1000),
    st.data(),
)
def test_the_same_product_ranks_higher_in_a_better_tier(
    units: int, reviews: int, data: st.DataObject
) -> None:
    good = data.draw(st.integers(min_value=0, max_value=reviews))
    ranks = [rank(signals(tier=t, units_sold=units, reviews=reviews, good_reviews=good), NOW) for t in TIERS]
    assert ranks == sorted(ranks, reverse=True)
