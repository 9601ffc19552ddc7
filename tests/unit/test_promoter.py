"""Promoters: credited commissions are available; withdrawals never go below zero."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.exceptions import InsufficientBalance, InvalidInput
from domain.ids import promoter_code_id
from domain.promoter import CODE_ALPHABET, CODE_LENGTH, Promoter, PromoterCode, new_code, normalise_code

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def replay(events: list[Any]) -> Promoter:
    promoter = None
    for event in events:
        promoter = event.mutate(promoter)
    assert promoter is not None
    return promoter


def joined(*credits: int) -> list[Any]:
    promoter = Promoter.join("Ann", "ann@example.com", new_code(), "h", None, T0)
    for amount in credits:
        promoter.credit(uuid4(), 1, amount, T0)
    return promoter.collect_events()


def test_a_promoter_joins_with_nothing_to_withdraw() -> None:
    promoter = replay(joined())
    assert promoter.available == 0 and promoter.withdrawn == 0
    with pytest.raises(InsufficientBalance):
        promoter.withdraw(1, T0)


def test_credited_commissions_become_available() -> None:
    promoter = replay(joined(300, 200))
    assert promoter.available == 500


def test_a_withdrawal_draws_on_the_available_balance() -> None:
    promoter = replay(joined(500))
    withdrawal_id = promoter.withdraw(500, T0)
    events = promoter.collect_events()
    assert [type(e).__name__ for e in events] == ["WithdrawalRequested"]
    assert events[0].withdrawal_id == withdrawal_id
    assert promoter.available == 0 and promoter.withdrawn == 500


def test_a_withdrawal_beyond_the_balance_is_refused_and_changes_nothing() -> None:
    promoter = replay(joined(500))
    with pytest.raises(InsufficientBalance):
        promoter.withdraw(501, T0)
    assert promoter.collect_events() == []
    assert promoter.available == 500


@pytest.mark.parametrize("amount", [0, -1])
def test_a_withdrawal_must_be_positive(amount: int) -> None:
    promoter = replay(joined(500))
    with pytest.raises(InvalidInput):
        promoter.withdraw(amount, T0)


@given(st.lists(st.integers(1, 1000), max_size=5), st.lists(st.integers(-10, 2000), max_size=10))
def test_the_available_balance_never_goes_below_zero(credits: list[int], attempts: list[int]) -> None:
    promoter = replay(joined(*credits))
    for amount in attempts:
        with contextlib.suppress(InsufficientBalance, InvalidInput):
            promoter.withdraw(amount, T0)
        assert promoter.available >= 0
    assert promoter.available + promoter.withdrawn == sum(credits)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_promoter_needs_a_name(name: str) -> None:
    with pytest.raises(InvalidInput):
        Promoter.join(name, "c", new_code(), "h", None, T0)


def test_codes_are_unambiguous_and_claimed_by_a_deterministic_id() -> None:
    code = new_code()
    assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
    assert not set("01IO") & set(CODE_ALPHABET)
    claim = PromoterCode.claim(code, uuid4(), T0)
    assert claim.id == promoter_code_id(code) == promoter_code_id(normalise_code(f" {code.lower()} "))
