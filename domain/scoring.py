"""The merchant score (商家评分): nine components, 0 to 100 points in all.

Each component's raw value comes from the merchant's rolling 30-day figures (the score
inputs read model) or, for compliance, from the Merchant itself. ``NORMALISATION`` is
the one table that turns a raw value into a share of the component's weight:

| component              | weight | raw value                    | none at | full at  | scale  | no data |
|------------------------|--------|------------------------------|---------|----------|--------|---------|
| monthly_sales          | 30     | honoured payments (yuan)     | 1,000   | 100,000  | log    | 0       |
| average_ticket         | 15     | sales / orders (yuan)        | 5       | 100      | log    | 0       |
| sell_through           | 15     | cards sold / (sold + stock)  | 5 %     | 60 %     | linear | 1/2     |
| good_review_rate       | 20     | reviews rated 4-5 / reviews  | 90 %    | 98 %     | linear | 1/2     |
| after_sales_timeliness | 10     | disputes solved in 24 h/due  | 50 %    | 95 %     | linear | 1       |
| dispute_rate           | 5      | disputes / orders            | 5 %     | 0.5 %    | linear | 1/2     |
| compliance             | 3      | restrictions in force        | 1       | 0        | linear | -       |
| new_product_frequency  | 1      | products listed              | 0       | 4        | linear | -       |
| repurchase_rate        | 1      | repeat buyers' orders / all  | 0 %     | 30 %     | linear | 0       |

``NORMALISATION`` below holds the money bounds in fen (100 fen = 1 yuan).

- Between "none at" and "full at" the share rises linearly, or linearly in the
  logarithm of the raw value ("log": each tenfold of sales earns the same points).
  Outside them it is 0 or 1. "None at" above "full at" means less is better.
- "No data" is the share when a rate has no denominator (no reviews, no disputes due,
  no cards, no orders). Nothing due to resolve is a clean record (full marks); an
  unreviewed or unstocked merchant is neither good nor bad (half); a merchant with no
  orders has no ticket and no repeat buyers (none).
- Points are the weight times the share, rounded to 0.01; the score is their sum. The
  band of a score (domain.tiering) is read from the rounded score, the one shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Scale = Literal["linear", "log"]


@dataclass(frozen=True)
class Component:
    name: str
    weight: int
    scale: Scale
    none_at: float  # the raw value at (or past) which the component earns nothing
    full_at: float  # the raw value at (or past) which it earns its whole weight
    missing: float | None  # the share when there is no data; None: never missing
    what: str

    def __post_init__(self) -> None:
        if self.none_at == self.full_at:
            raise ValueError(f"{self.name}: none_at and full_at must differ")
        if self.scale == "log" and min(self.none_at, self.full_at) <= 0:
            raise ValueError(f"{self.name}: a log scale needs positive bounds")

    def share(self, raw: float | None) -> float:
        """The share of the weight (0 to 1) that this raw value earns."""
        if raw is None:
            if self.missing is None:
                raise ValueError(f"{self.name} always has a value")
            return self.missing
        if self.scale == "log":
            # No sales is as good as the floor; the log of 0 is not needed.
            if raw <= min(self.none_at, self.full_at):
                return 0.0 if self.none_at < self.full_at else 1.0
            low, high, x = math.log(self.none_at), math.log(self.full_at), math.log(raw)
        else:
            low, high, x = self.none_at, self.full_at, raw
        return min(1.0, max(0.0, (x - low) / (high - low)))


NORMALISATION: tuple[Component, ...] = (
    Component("monthly_sales", 30, "log", 100_000, 10_000_000, 0.0, "honoured payments in 30 days"),
    Component("average_ticket", 15, "log", 500, 10_000, 0.0, "sales per paid order"),
    Component("sell_through", 15, "linear", 0.05, 0.60, 0.5, "cards sold / (sold + on hand)"),
    Component("good_review_rate", 20, "linear", 0.90, 0.98, 0.5, "reviews rated 4 or 5 / reviews"),
    Component(
        "after_sales_timeliness", 10, "linear", 0.50, 0.95, 1.0, "disputes resolved within 24 h / due"
    ),
    Component("dispute_rate", 5, "linear", 0.05, 0.005, 0.5, "disputes opened / orders paid"),
    Component("compliance", 3, "linear", 1, 0, None, "restrictions or violations in force"),
    Component("new_product_frequency", 1, "linear", 0, 4, None, "products listed in 30 days"),
    Component("repurchase_rate", 1, "linear", 0.0, 0.30, 0.0, "orders by returning buyers / orders"),
)

COMPONENTS: dict[str, Component] = {c.name: c for c in NORMALISATION}
MAX_SCORE = sum(c.weight for c in NORMALISATION)


class Figures(Protocol):
    """A merchant's 30-day figures (projections.score_inputs.ScoreInputs has them)."""

    @property
    def sales(self) -> int: ...
    @property
    def avg_ticket(self) -> int | None: ...
    @property
    def sell_through(self) -> float | None: ...
    @property
    def good_review_rate(self) -> float | None: ...
    @property
    def resolved_within_24h(self) -> float | None: ...
    @property
    def dispute_rate(self) -> float | None: ...
    @property
    def new_products(self) -> int: ...
    @property
    def repurchase_rate(self) -> float | None: ...


def raw_values(figures: Figures, violations: int) -> dict[str, float | None]:
    """Each component's raw value: the figures, and the violations the Merchant knows of."""
    return {
        "monthly_sales": figures.sales,
        "average_ticket": figures.avg_ticket,
        "sell_through": figures.sell_through,
        "good_review_rate": figures.good_review_rate,
        "after_sales_timeliness": figures.resolved_within_24h,
        "dispute_rate": figures.dispute_rate,
        "compliance": violations,
        "new_product_frequency": figures.new_products,
        "repurchase_rate": figures.repurchase_rate,
    }


@dataclass(frozen=True)
class Points:
    name: str
    raw: float | None
    points: float
    weight: int


@dataclass(frozen=True)
class Breakdown:
    score: float
    components: tuple[Points, ...]

    def as_rows(self) -> list[list[object]]:
        """[name, raw, points, weight] per component: how events carry the breakdown."""
        return [[p.name, p.raw, p.points, p.weight] for p in self.components]


def breakdown(raw: Mapping[str, float | None]) -> Breakdown:
    """The points of every component and the score, from the raw values."""
    rows = tuple(
        Points(c.name, raw[c.name], round(c.weight * c.share(raw[c.name]), 2), c.weight)
        for c in NORMALISATION
    )
    return Breakdown(round(sum(p.points for p in rows), 2), rows)


def score(figures: Figures, violations: int) -> Breakdown:
    return breakdown(raw_values(figures, violations))


def headroom(b: Breakdown) -> list[tuple[str, float]]:
    """The points each component still has to give, most first (ties by table order):
    where a merchant gains most by improving."""
    room = [(p.name, round(p.weight - p.points, 2)) for p in b.components]
    return sorted((r for r in room if r[1] > 0), key=lambda r: -r[1])


def percentile(value: float, population: Sequence[float]) -> float | None:
    """Percent of the population scoring lower than ``value``, ties counting half (a
    mid-rank, so equal scores share one percentile); None for an empty population."""
    if not population:
        return None
    below = sum(1 for s in population if s < value)
    equal = sum(1 for s in population if s == value)
    return round(100 * (below + equal / 2) / len(population), 2)
