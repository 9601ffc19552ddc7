"""Merchants: registered with a tier and fee rate, restricted and reinstated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.exceptions import InvalidInput, MerchantRestricted
from domain.merchant import Merchant

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def replay(events: list[Any]) -> Merchant:
    merchant = None
    for event in events:
        merchant = event.mutate(merchant)
    assert merchant is not None
    return merchant


def registered() -> list[Any]:
    merchant = Merchant.register(" Shop ", " a@b.c ", "basic", 500, T0)
    merchant.issue_api_key("hash", T0)
    return merchant.collect_events()


def names(merchant: Merchant) -> list[str]:
    return [type(e).__name__ for e in merchant.collect_events()]


def test_a_registered_merchant_may_sell_and_stores_only_its_key_hash() -> None:
    merchant = replay(registered())
    assert merchant.name == "Shop" and merchant.api_key_hash == "hash"
    merchant.check_can_sell()


def test_a_merchant_needs_a_name() -> None:
    with pytest.raises(InvalidInput):
        Merchant.register("  ", "c", "basic", 500, T0)


def test_a_restricted_merchant_cannot_sell_until_reinstated() -> None:
    merchant = replay(registered())
    merchant.restrict("chargebacks", T0)
    merchant.restrict("again", T0)
    with pytest.raises(MerchantRestricted):
        merchant.check_can_sell()
    merchant.reinstate("resolved", T0)
    merchant.reinstate("again", T0)
    merchant.check_can_sell()
    assert names(merchant) == ["Restricted", "Reinstated"]


def test_a_tier_change_carries_old_and_new_tier() -> None:
    merchant = replay(registered())
    merchant.change_tier("core", 91.5, "great month", T0)
    (event,) = merchant.collect_events()
    assert (event.old_tier, event.new_tier, event.score) == ("basic", "core", 91.5)
    with pytest.raises(InvalidInput):
        merchant.change_tier("platinum", 99, "?", T0)


def test_a_fee_rate_is_bounded_and_recorded_only_when_it_changes() -> None:
    merchant = replay(registered())
    merchant.change_fee_rate(500, "same", T0)
    assert names(merchant) == []
    for bad in (-1, 5001):
        with pytest.raises(InvalidInput):
            merchant.change_fee_rate(bad, "bad", T0)
    merchant.change_fee_rate(300, "core", T0)
    assert names(merchant) == ["FeeRateChanged"]
    assert merchant.fee_rate_bps == 300
