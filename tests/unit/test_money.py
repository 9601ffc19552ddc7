"""Money: decimal yuan strings at the edges, integer fen inside."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.exceptions import InvalidMoney
from domain.money import format_yuan, parse_yuan, share


@pytest.mark.parametrize(
    ("text", "fen"),
    [("9.90", 990), ("9.9", 990), ("9", 900), ("0.01", 1), ("0.5", 50), ("123456.78", 12345678)],
)
def test_parses_yuan_with_up_to_two_decimals_into_fen(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "1.234",
        "-1",
        "+1",
        "01",
        " 1",
        "1 ",
        "1e3",
        "1.",
        ".5",
        "",
        "1,00",
        "9.90\n",
        "\n9.90",
        "١٢",  # non-ASCII digits
        "NaN",
        "inf",
    ],
)
def test_refuses_malformed_money_strings(text: str) -> None:
    with pytest.raises(InvalidMoney):
        parse_yuan(text)


@pytest.mark.parametrize("value", [9.9, 990, None, b"9.90", ["9.90"]])
def test_refuses_anything_that_is_not_a_string(value: object) -> None:
    with pytest.raises(InvalidMoney):
        parse_yuan(value)


@pytest.mark.parametrize("text", ["0", "0.0", "0.00"])
def test_zero_is_refused_unless_allowed(text: str) -> None:
    with pytest.raises(InvalidMoney):
        parse_yuan(text)
    assert parse_yuan(text, allow_zero=True) == 0


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (1, "0.01"), (990, "9.90"), (-5, "-0.05"), (-990, "-9.90")]
)
def test_formats_fen_as_yuan_with_two_decimals(fen: int, text: str) -> None:
    assert format_yuan(fen) == text


@given(st.integers(min_value=1, max_value=10**13))
def test_format_then_parse_is_the_identity_for_positive_amounts(fen: int) -> None:
    assert parse_yuan(format_yuan(fen)) == fen


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10_000))
def test_a_share_rounds_down_and_never_exceeds_the_amount(amount: int, rate_bps: int) -> None:
    part = share(amount, rate_bps)
    assert 0 <= part <= amount
    assert part * 10_000 <= amount * rate_bps < (part + 1) * 10_000
