"""The ledger (分账): every money movement is one balanced posting. This is the one place
that names the accounts and decides how a payment is split.

Sign convention: an entry is positive when money flows *into* the account from the
platform's point of view as an asset (cash held), negative when the platform owes it
to someone. Every posting sums to zero, so all balances together always sum to zero.

Accounts:

- ``platform:clearing``      cash held at the payment providers (asset, positive).
- ``platform:fees``          the platform's fee revenue (negative = earned).
- ``platform:refunds``       payments that must go back to a buyer (second payments,
                             late payments that found no stock) until they are refunded.
- ``merchant:<id>``          what the platform owes the merchant (its net revenue).
- ``promoter:<id>:pending``  commissions inside the order's after-sales window.
- ``promoter:<id>:available`` commissions the promoter may withdraw.

Movements (``kind`` of a posting):

- ``payment``      clearing +A; fees -F; each promoter's pending -c; merchant -(A-F-Σc).
- ``refund``       the payment reversed. Commissions still pending are reversed; once
                   settled they stay with the promoter and the merchant bears them.
- ``unmatched``    clearing +A; refunds -A (a payment the order cannot honour).
- ``return``       refunds +A; clearing -A (that payment sent back).
- ``settlement``   a promoter's pending +c; available -c.
- ``withdrawal``   available +w; clearing -w (money leaves the platform).
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from domain.commissions import Commission
from domain.money import share

CLEARING = "platform:clearing"
FEES = "platform:fees"
REFUNDS = "platform:refunds"


def merchant_account(merchant_id: UUID) -> str:
    return f"merchant:{merchant_id}"


def pending_account(promoter_id: UUID) -> str:
    return f"promoter:{promoter_id}:pending"


def available_account(promoter_id: UUID) -> str:
    return f"promoter:{promoter_id}:available"


Entries = dict[str, int]


def _add(entries: Entries, account: str, amount: int) -> None:
    if amount:
        entries[account] = entries.get(account, 0) + amount


def is_balanced(entries: Entries) -> bool:
    return sum(entries.values()) == 0


def payment_split(
    amount: int, fee_rate_bps: int, merchant_id: UUID, commissions: Iterable[Commission]
) -> Entries:
    entries: Entries = {}
    fee = share(amount, fee_rate_bps)
    _add(entries, CLEARING, amount)
    _add(entries, FEES, -fee)
    paid_out = fee
    for commission in commissions:
        _add(entries, pending_account(commission.promoter_id), -commission.amount)
        paid_out += commission.amount
    _add(entries, merchant_account(merchant_id), -(amount - paid_out))
    return entries


def refund_split(payment: Entries, settled: bool, merchant_id: UUID) -> Entries:
    """Reverse a payment posting; settled commissions are charged to the merchant instead."""
    entries: Entries = {}
    for account, amount in payment.items():
        if settled and account.endswith(":pending"):
            _add(entries, merchant_account(merchant_id), -amount)
        else:
            _add(entries, account, -amount)
    return entries


def unmatched_payment(amount: int) -> Entries:
    return {CLEARING: amount, REFUNDS: -amount}


def returned_payment(amount: int) -> Entries:
    return {REFUNDS: amount, CLEARING: -amount}


def settlement(commissions: Iterable[Commission]) -> Entries:
    entries: Entries = {}
    for commission in commissions:
        _add(entries, pending_account(commission.promoter_id), commission.amount)
        _add(entries, available_account(commission.promoter_id), -commission.amount)
    return entries


def withdrawal(promoter_id: UUID, amount: int) -> Entries:
    return {available_account(promoter_id): amount, CLEARING: -amount}
