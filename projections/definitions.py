"""The definitions the read models share (shared/API.md, "Definitions used by the read
models"), and what a ledger posting means for them.

Money figures are read from the ``Posting.Recorded`` entries, never recomputed: the fee
and commission rules live in domain.ledger alone, so a read model cannot disagree with
the ledger about what the platform, a merchant or a promoter got.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.ledger import CLEARING, FEES, merchant_account

# Posting kinds (domain.ledger): an honoured payment, and its reversal by a refund.
# Payments an order could not honour are posted as "unmatched" then "return" and are
# never sales.
PAYMENT = "payment"
REFUND = "refund"
SALES_KINDS = frozenset({PAYMENT, REFUND})

GOOD_RATING = 4  # a good review is rated 4 or 5
REPEAT_ORDERS = 2  # a repeat buyer has two or more paid orders at the merchant


def buyer_of(contact: str) -> str:
    """A buyer is an order's contact, trimmed and lower-cased."""
    return contact.strip().lower()


def is_good(rating: int) -> bool:
    return rating >= GOOD_RATING


@dataclass(frozen=True)
class Movement:
    """What one payment or refund posting moved, seen from one merchant's sales.

    ``cash`` is the buyer's money entering (+, payment) or leaving (-, refund) the
    platform; ``fees`` the platform's fee earned (+) or given back (-); ``merchant``
    the merchant's net revenue gained (+) or lost (-).
    """

    cash: int
    fees: int
    merchant: int


def movement(entries: dict[str, int], merchant_id: UUID) -> Movement:
    # Ledger sign convention: negative is what the platform owes (revenue, earnings).
    return Movement(
        cash=entries.get(CLEARING, 0),
        fees=-entries.get(FEES, 0),
        merchant=-entries.get(merchant_account(merchant_id), 0),
    )


def ratio(part: int | float, whole: int | float) -> float:
    """A rate between 0 and 1 for the dashboard: 0.0 when there is nothing to divide."""
    return part / whole if whole else 0.0


def mean(total: int, count: int) -> float:
    """A mean of counts (e.g. ratings); 0.0 when there is nothing."""
    return total / count if count else 0.0


def average_fen(total: int, count: int) -> int:
    """An average amount in whole fen, rounded half up; 0 when there is nothing."""
    return (2 * total + count) // (2 * count) if count else 0
