"""Promoter levels: the one table of thresholds and level-1 rates, and its use at payment."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.commissions import LEVEL_RATE_BPS, Commission, commissions_for
from domain.money import share
from domain.promoter import Promoter
from domain.promoter_levels import (
    BASE_LEVEL,
    LEVELS,
    level_for,
    level_one_rate_bps,
    next_level,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_levels_start_at_zero_sales_and_rise_in_both_threshold_and_rate() -> None:
    assert LEVELS[0].threshold == 0 and LEVELS[0].level == BASE_LEVEL
    assert [row.level for row in LEVELS] == list(range(1, len(LEVELS) + 1))
    for lower, higher in zip(LEVELS, LEVELS[1:], strict=False):
        assert higher.threshold > lower.threshold
        assert higher.rate_bps > lower.rate_bps


def test_the_base_level_rate_is_the_plain_level_one_commission() -> None:
    assert LEVEL_RATE_BPS[1] == level_one_rate_bps(BASE_LEVEL) == 500


@pytest.mark.parametrize(
    ("sales", "level"),
    [(-5, 1), (0, 1), (999_999, 1), (1_000_000, 2), (4_999_999, 2), (5_000_000, 3), (20_000_000, 4),
     (10**12, 4)],
)  # fmt: skip
def test_referred_sales_reach_a_level_at_its_threshold(sales: int, level: int) -> None:
    assert level_for(sales) == level


def test_the_next_threshold_is_the_row_above_and_none_at_the_top() -> None:
    nxt = next_level(1)
    assert nxt is not None and (nxt.level, nxt.threshold) == (2, 1_000_000)
    assert next_level(LEVELS[-1].level) is None


def test_a_higher_level_raises_the_level_one_commission_only() -> None:
    sharer, referrer = uuid4(), uuid4()
    assert commissions_for(100_000, [sharer, referrer], sharer_level=3) == [
        Commission(sharer, 1, 7_000),
        Commission(referrer, 2, 2_000),
    ]
    assert commissions_for(100_000, [sharer, referrer]) == commissions_for(100_000, [sharer, referrer], 1)


@given(
    st.integers(min_value=0, max_value=10**10),
    st.sampled_from([row.level for row in LEVELS]),
)
def test_the_level_one_commission_is_the_levels_rate_rounded_down(amount: int, level: int) -> None:
    sharer = uuid4()
    expected = share(amount, level_one_rate_bps(level))
    result = commissions_for(amount, [sharer], sharer_level=level)
    assert result == ([Commission(sharer, 1, expected)] if expected else [])


@given(st.lists(st.integers(min_value=-(10**8), max_value=10**8), max_size=30))
def test_the_level_is_a_function_of_the_net_sales_alone(moves: list[int]) -> None:
    # However sales and refunds interleave, the level is that of their sum.
    assert level_for(sum(moves)) == level_for(sum(sorted(moves)))


def joined() -> Promoter:
    promoter = Promoter.join("Ann", "ann@x", "CODE2345", "hash", None, T0)
    promoter.collect_events()
    return promoter


def test_a_promoter_starts_at_the_base_level_and_records_each_change_once() -> None:
    p = joined()
    assert p.level == BASE_LEVEL
    p.change_level(2, 1_200_000, T0)
    p.change_level(2, 1_300_000, T0)  # the same level: nothing to record
    p.change_level(1, 900_000, T0)  # refunds took it back under the threshold
    events = p.collect_events()
    assert [(e.old_level, e.new_level, e.referred_sales) for e in events] == [
        (1, 2, 1_200_000),
        (2, 1, 900_000),
    ]
    assert (p.level, p.referred_sales) == (1, 900_000)


def test_an_unknown_level_is_a_bug() -> None:
    with pytest.raises(KeyError):
        joined().change_level(9, 0, T0)
