"""The platform fee table by merchant tier."""

from __future__ import annotations

import pytest

from domain.fees import FEE_RATE_BPS, NEW_MERCHANT_TIER, TIERS, fee_rate_for


def test_every_tier_has_a_fee_rate() -> None:
    assert set(FEE_RATE_BPS) == set(TIERS)


def test_better_tiers_pay_lower_fees() -> None:
    rates = [fee_rate_for(tier) for tier in TIERS]  # TIERS runs best to worst
    assert rates == sorted(rates)
    assert len(set(rates)) == len(rates)


def test_fee_rates_are_sane_fractions_of_an_order() -> None:
    assert all(0 < rate < 10_000 for rate in FEE_RATE_BPS.values())


def test_a_new_merchant_starts_in_a_known_tier() -> None:
    assert NEW_MERCHANT_TIER in TIERS
    assert fee_rate_for(NEW_MERCHANT_TIER) == 500


def test_an_unknown_tier_has_no_fee_rate() -> None:
    with pytest.raises(KeyError):
        fee_rate_for("platinum")
