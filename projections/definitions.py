"""The definitions the read models share (shared/API.md, "Definitions used by the read
models"), and what a ledger posting means for them.

- **honoured payment**: an ``Order.Paid`` whose ``honoured`` is true. The same command
  records the ``payment`` posting; a payment the order cannot honour is posted as
  ``unmatched`` then ``return`` and is never a sale.
- **buyer**: an order's contact, trimmed and lower-cased; **good review**: rated 4 or 5.

Fees and net revenue are read from the ``Posting.Recorded`` entries, never recomputed:
the fee and commission rules live in domain.ledger alone, so a read model cannot
disagree with the ledger about what the platform, a merchant or a promoter got. A
payment or refund posting names the merchant's account, so it says whose sale it is
by itself, whatever order it arrives in relative to the order's own events.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.ledger import CLEARING, FEES, merchant_account

_MERCHANT = "merchant"

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


def merchant_in(entries: dict[str, int]) -> UUID | None:
    """The merchant whose account a posting moves (payment and refund postings name one).

    Account names belong to domain.ledger: a name is taken for a merchant's only if
    ``merchant_account`` gives it back, so a change there cannot be misread here.
    """
    for account in entries:
        head, _, tail = account.partition(":")
        if head != _MERCHANT:
            continue
        try:
            merchant_id = UUID(tail)
        except ValueError:
            continue
        if merchant_account(merchant_id) == account:
            return merchant_id
    return None


def ratio(part: int | float, whole: int | float) -> float:
    """A rate between 0 and 1 for the dashboard: 0.0 when there is nothing to divide."""
    return part / whole if whole else 0.0


def mean(total: int, count: int) -> float:
    """A mean of counts (e.g. ratings); 0.0 when there is nothing."""
    return total / count if count else 0.0


def average_fen(total: int, count: int) -> int:
    """An average amount in whole fen, rounded half up; 0 when there is nothing."""
    return (2 * total + count) // (2 * count) if count else 0
