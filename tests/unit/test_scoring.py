"""The merchant score: the issue's weights and normalisation examples, and its shape."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.scoring import (
    COMPONENTS,
    MAX_SCORE,
    NORMALISATION,
    Component,
    breakdown,
    headroom,
    percentile,
    raw_values,
    score,
)


@dataclass(frozen=True)
class Fig:
    """Figures as the score inputs read model gives them (money in fen)."""

    sales: int = 0
    avg_ticket: int | None = None
    sell_through: float | None = None
    good_review_rate: float | None = None
    resolved_within_24h: float | None = None
    dispute_rate: float | None = None
    new_products: int = 0
    repurchase_rate: float | None = None


def points(fig: Fig, name: str, violations: int = 0) -> float:
    return next(p.points for p in score(fig, violations).components if p.name == name)


def test_the_weights_are_the_issues_and_sum_to_100() -> None:
    assert {c.name: c.weight for c in NORMALISATION} == {
        "monthly_sales": 30,
        "average_ticket": 15,
        "sell_through": 15,
        "good_review_rate": 20,
        "after_sales_timeliness": 10,
        "dispute_rate": 5,
        "compliance": 3,
        "new_product_frequency": 1,
        "repurchase_rate": 1,
    }
    assert MAX_SCORE == 100


@pytest.mark.parametrize(
    ("yuan", "expected"),
    [(100_000, 30.0), (250_000, 30.0), (1_000, 0.0), (500, 0.0), (0, 0.0), (10_000, 15.0)],
)
def test_monthly_sales_earn_full_marks_at_100000_yuan_falling_on_a_log_scale_to_none_at_1000(
    yuan: int, expected: float
) -> None:
    assert points(Fig(sales=yuan * 100), "monthly_sales") == expected


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.98, 20.0), (1.0, 20.0), (0.94, 10.0), (0.90, 0.0), (0.5, 0.0)]
)
def test_a_good_review_rate_of_98_percent_earns_full_marks_and_90_or_less_none(
    rate: float, expected: float
) -> None:
    assert points(Fig(good_review_rate=rate), "good_review_rate") == expected


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.0, 5.0), (0.005, 5.0), (0.0275, 2.5), (0.05, 0.0), (0.2, 0.0)]
)
def test_a_dispute_rate_of_half_a_percent_or_less_earns_full_marks_and_5_percent_none(
    rate: float, expected: float
) -> None:
    assert points(Fig(dispute_rate=rate), "dispute_rate") == expected


def test_compliance_is_lost_while_a_restriction_is_in_force() -> None:
    assert points(Fig(), "compliance", violations=0) == 3.0
    assert points(Fig(), "compliance", violations=1) == 0.0


def test_missing_rates_earn_the_documented_share() -> None:
    b = {p.name: p.points for p in score(Fig(), 0).components}
    # No reviews, stock or orders: half; nothing due to resolve: full; no orders: no ticket.
    assert b["good_review_rate"] == 10.0
    assert b["sell_through"] == 7.5
    assert b["dispute_rate"] == 2.5
    assert b["after_sales_timeliness"] == 10.0
    assert b["average_ticket"] == 0.0
    assert b["repurchase_rate"] == 0.0


def test_every_component_shows_its_raw_value_points_and_weight() -> None:
    fig = Fig(sales=123_456, avg_ticket=2_500, good_review_rate=0.95, new_products=2)
    b = score(fig, 0)
    assert [p.name for p in b.components] == [c.name for c in NORMALISATION]
    row = {p.name: p for p in b.components}
    assert (row["monthly_sales"].raw, row["monthly_sales"].weight) == (123_456, 30)
    assert row["new_product_frequency"].points == 0.5
    assert b.as_rows()[0] == ["monthly_sales", 123_456, row["monthly_sales"].points, 30]
    assert b.score == round(sum(p.points for p in b.components), 2)


def test_a_strong_merchant_scores_in_the_core_band_and_an_idle_one_under_50() -> None:
    strong = Fig(
        sales=12_000_000,
        avg_ticket=12_000,
        sell_through=0.7,
        good_review_rate=0.99,
        resolved_within_24h=1.0,
        dispute_rate=0.001,
        new_products=5,
        repurchase_rate=0.4,
    )
    assert score(strong, 0).score == 100.0
    assert score(Fig(), 0).score < 50


def test_headroom_lists_where_points_are_left_most_first() -> None:
    b = score(Fig(sales=1_000_000, good_review_rate=0.98), 0)
    room = headroom(b)
    assert room[0] == ("monthly_sales", 15.0)
    assert all(a[1] >= b_[1] for a, b_ in zip(room, room[1:], strict=False))
    assert "good_review_rate" not in dict(room)


def test_a_table_row_must_be_usable() -> None:
    with pytest.raises(ValueError):
        Component("x", 1, "linear", 1, 1, 0.0, "")
    with pytest.raises(ValueError):
        Component("x", 1, "log", 0, 10, 0.0, "")
    with pytest.raises(ValueError):
        COMPONENTS["compliance"].share(None)


rates = st.none() | st.floats(min_value=0, max_value=1)
figures = st.builds(
    Fig,
    sales=st.integers(min_value=0, max_value=10**9),
    avg_ticket=st.none() | st.integers(min_value=1, max_value=10**7),
    sell_through=rates,
    good_review_rate=rates,
    resolved_within_24h=rates,
    dispute_rate=rates,
    new_products=st.integers(min_value=0, max_value=50),
    repurchase_rate=rates,
)


@given(figures, st.integers(min_value=0, max_value=3))
def test_the_score_stays_between_0_and_100_and_each_component_within_its_weight(fig: Fig, v: int) -> None:
    b = score(fig, v)
    assert 0 <= b.score <= 100
    for p in b.components:
        assert 0 <= p.points <= p.weight


@given(figures, st.sampled_from([c.name for c in NORMALISATION if c.name != "compliance"]))
def test_improving_one_figure_never_lowers_the_score(fig: Fig, name: str) -> None:
    raw = raw_values(fig, 0)
    c = COMPONENTS[name]
    if raw[name] is None:
        return
    better = dict(raw)
    better[name] = c.full_at
    assert breakdown(better).score >= breakdown(raw).score


@given(figures)
def test_the_score_is_deterministic(fig: Fig) -> None:
    assert score(fig, 0) == score(replace(fig), 0)


def test_the_percentile_counts_lower_scores_and_half_the_ties() -> None:
    assert percentile(50, []) is None
    assert percentile(83, [98, 83, 68]) == 50.0
    assert percentile(99, [98, 83, 68]) == 100.0
    assert percentile(10, [98, 83, 68]) == 0.0
    assert percentile(70, [70, 70]) == 50.0
