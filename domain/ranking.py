"""The recommended order of the product listing (``GET /v1/products?sort=recommended``).

The one place for the ranking formula and its weights:

    rank = TIER_WEIGHT[merchant tier] x (QUALITY_SHARE x quality
                                         + SALES_SHARE x sales
                                         + cold start)

- **quality**: the product's good-review rate (reviews rated 4 or 5), smoothed towards
  ``PRIOR_GOOD_RATE`` as if it had ``PRIOR_REVIEWS`` more reviews, so that one review
  neither makes nor breaks a product: (good + 4) / (reviews + 5).
- **sales**: units sold in the last ``SALES_WINDOW_DAYS`` days (honoured payments, net
  of refunds), on a log scale that saturates at ``SALES_SATURATION`` units:
  log(1 + units) / log(1 + 1000), at most 1. Quality and sales weigh alike, so a
  product that sells a lot but disappoints its buyers does not lead on sales alone.
- **cold start**: a merchant's first ``COLD_START_DAYS`` days add ``COLD_START_BOOST``,
  fading linearly to nothing, so a new merchant's products are seen before they have
  had the chance to sell.
- **tier weight**: better tiers rank higher; watch merchants' products sink.

Ties go to the newer product, then to the product id, so the order is total and the
same on every read. Delisted products are not listed at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

TIER_WEIGHT: dict[str, float] = {"core": 1.5, "growth": 1.2, "basic": 1.0, "watch": 0.5}
QUALITY_SHARE = 0.5
SALES_SHARE = 0.5
PRIOR_REVIEWS = 5
PRIOR_GOOD_RATE = 0.8
SALES_SATURATION = 1000
SALES_WINDOW_DAYS = 30
COLD_START_DAYS = 30
COLD_START_BOOST = 0.25


@dataclass(frozen=True)
class Signals:
    """What the listing knows of one product when it ranks it."""

    tier: str
    merchant_since: datetime
    units_sold: int  # in the sales window
    reviews: int
    good_reviews: int


def quality(reviews: int, good_reviews: int) -> float:
    return (good_reviews + PRIOR_REVIEWS * PRIOR_GOOD_RATE) / (reviews + PRIOR_REVIEWS)


def sales(units: int) -> float:
    return min(1.0, math.log1p(max(0, units)) / math.log1p(SALES_SATURATION))


def cold_start(merchant_since: datetime, now: datetime) -> float:
    age = now - merchant_since
    window = timedelta(days=COLD_START_DAYS)
    if age >= window:
        return 0.0
    return COLD_START_BOOST * (1 - max(age, timedelta(0)) / window)


def rank(s: Signals, now: datetime) -> float:
    relevance = (
        QUALITY_SHARE * quality(s.reviews, s.good_reviews)
        + SALES_SHARE * sales(s.units_sold)
        + cold_start(s.merchant_since, now)
    )
    # Rounded so that float noise never decides between two equal products.
    return round(TIER_WEIGHT[s.tier] * relevance, 9)
