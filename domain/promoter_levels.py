"""Promoter levels (分销等级): cumulative referred sales earn a higher level-1 commission.

The one table of levels. A promoter's **referred sales** are the honoured payments of
the orders placed with its own code (it was the sharer, level 1 of the referral chain),
net of refunds of those orders, over its whole life. The level is the highest row whose
threshold the referred sales reach; it is recorded on the Promoter as
``Promoter.LevelChanged`` and read when an order is paid, so the commission of an order
uses the sharer's level at payment.

| level | referred sales from     | level-1 rate |
|-------|-------------------------|--------------|
| 1     | 0                       | 5.00 %       |
| 2     | 10,000 yuan             | 6.00 %       |
| 3     | 50,000 yuan             | 7.00 %       |
| 4     | 200,000 yuan            | 8.00 %       |

The level-2 commission (the sharer's referrer) stays at its flat rate
(domain.commissions) whatever either promoter's level: it rewards recruiting, while
levels reward selling, and keeping it flat caps what one order can pay out at
8 % + 2 %. Refunds lower the referred sales, so a level bought with orders refunded
later goes back down: levels follow net sales both ways.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    level: int
    threshold: int  # cumulative referred sales, fen, from which the level applies
    rate_bps: int  # basis points of an order's amount paid to the sharer (level 1)


LEVELS: tuple[Level, ...] = (
    Level(1, 0, 500),
    Level(2, 1_000_000, 600),
    Level(3, 5_000_000, 700),
    Level(4, 20_000_000, 800),
)

BASE_LEVEL = LEVELS[0].level


def level_for(referred_sales: int) -> int:
    """The level that cumulative referred sales (fen) earn; below zero is the base."""
    reached = [row.level for row in LEVELS if referred_sales >= row.threshold]
    return reached[-1] if reached else BASE_LEVEL


def level_row(level: int) -> Level:
    for row in LEVELS:
        if row.level == level:
            return row
    raise KeyError(f"no promoter level {level}")


def level_one_rate_bps(level: int) -> int:
    """The level-1 commission rate of a sharer at this promoter level."""
    return level_row(level).rate_bps


def next_level(level: int) -> Level | None:
    """The row above this level, or None at the top: what a promoter works towards."""
    above = [row for row in LEVELS if row.level > level]
    return above[0] if above else None
