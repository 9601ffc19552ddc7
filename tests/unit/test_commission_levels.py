"""Referral commissions (分销): level 1 and level 2, never a third level."""

from __future__ import annotations

from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from domain.commissions import LEVEL_RATE_BPS, MAX_LEVELS, Commission, commissions_for


def test_the_sharer_earns_level_one_and_its_referrer_level_two() -> None:
    sharer, referrer = uuid4(), uuid4()
    assert commissions_for(10_000, [sharer, referrer]) == [
        Commission(sharer, 1, 500),
        Commission(referrer, 2, 200),
    ]


def test_a_sharer_without_referrer_earns_only_level_one() -> None:
    sharer = uuid4()
    assert commissions_for(10_000, [sharer]) == [Commission(sharer, 1, 500)]


def test_no_chain_no_commission() -> None:
    assert commissions_for(10_000, []) == []


def test_there_is_never_a_third_level() -> None:
    chain = [uuid4() for _ in range(5)]
    result = commissions_for(10_000, chain)
    assert [c.level for c in result] == [1, 2]
    assert [c.promoter_id for c in result] == chain[:2]
    assert MAX_LEVELS == 2


def test_commissions_round_down_to_the_fen() -> None:
    sharer, referrer = uuid4(), uuid4()
    # 5% of 1.99 is 0.0995 and 2% is 0.0398: both round down.
    assert commissions_for(199, [sharer, referrer]) == [
        Commission(sharer, 1, 9),
        Commission(referrer, 2, 3),
    ]


def test_a_commission_that_rounds_to_zero_is_left_out() -> None:
    sharer, referrer = uuid4(), uuid4()
    # 5% of 0.30 is 0.015 -> 1 fen; 2% is 0.006 -> 0.
    assert commissions_for(30, [sharer, referrer]) == [Commission(sharer, 1, 1)]
    assert commissions_for(19, [sharer, referrer]) == []


def test_the_same_promoter_twice_in_the_chain_is_paid_once() -> None:
    promoter = uuid4()
    assert commissions_for(10_000, [promoter, promoter]) == [Commission(promoter, 1, 500)]


@given(
    st.integers(min_value=0, max_value=10**10),
    st.lists(st.sampled_from([uuid4() for _ in range(3)]), max_size=6),
)
def test_commissions_never_exceed_their_rates_nor_reach_a_third_level(amount: int, chain: list) -> None:
    result = commissions_for(amount, chain)
    assert len(result) <= 2
    assert len({c.promoter_id for c in result}) == len(result)
    for c in result:
        assert c.level in (1, 2)
        assert c.promoter_id == chain[c.level - 1]
        assert 0 < c.amount <= amount * LEVEL_RATE_BPS[c.level] // 10_000
