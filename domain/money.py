"""Money is integer fen inside and a decimal string in yuan ("9.90") at the edges."""

from __future__ import annotations

import re

from domain.exceptions import InvalidMoney

_MONEY = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")


def parse_yuan(text: object, *, allow_zero: bool = False) -> int:
    """Parse "9.90" into 990 fen; refuse floats, signs, exponents and a third decimal."""
    if not isinstance(text, str) or not _MONEY.fullmatch(text):
        raise InvalidMoney(f"{text!r} is not an amount in yuan with at most two decimals")
    whole, _, frac = text.partition(".")
    fen = int(whole) * 100 + int((frac + "00")[:2])
    if fen == 0 and not allow_zero:
        raise InvalidMoney("the amount must be positive")
    return fen


def format_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def share(amount_fen: int, rate_bps: int) -> int:
    """A rate in basis points of an amount, rounded down to the fen.

    Rounding down keeps every split non-negative; the remainder always falls to the
    merchant's net, so the posting still balances.
    """
    return amount_fen * rate_bps // 10_000
