"""The ledger (分账): every split is one balanced posting, and no split pays a negative share."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ledger
from domain.commissions import Commission, commissions_for
from domain.fees import FEE_RATE_BPS
from domain.posting import Posting, UnbalancedPosting

PROMOTERS = [uuid4() for _ in range(3)]


def total(*postings: ledger.Entries) -> Counter[str]:
    sums: Counter[str] = Counter()
    for entries in postings:
        for account, amount in entries.items():
            sums[account] += amount
    return Counter({account: amount for account, amount in sums.items() if amount})


def test_a_payment_splits_into_fee_commissions_and_merchant_net() -> None:
    merchant, sharer, referrer = uuid4(), uuid4(), uuid4()
    commissions = commissions_for(10_000, [sharer, referrer])
    entries = ledger.payment_split(10_000, FEE_RATE_BPS["basic"], merchant, commissions)
    assert entries == {
        ledger.CLEARING: 10_000,
        ledger.FEES: -500,
        ledger.pending_account(sharer): -500,
        ledger.pending_account(referrer): -200,
        ledger.merchant_account(merchant): -8_800,
    }


def test_a_refund_before_settlement_reverses_pending_commissions() -> None:
    merchant, sharer = uuid4(), uuid4()
    payment = ledger.payment_split(10_000, 500, merchant, [Commission(sharer, 1, 500)])
    refund = ledger.refund_split(payment, False, merchant)
    assert refund[ledger.pending_account(sharer)] == 500
    assert total(payment, refund) == Counter()


def test_a_refund_after_settlement_charges_the_merchant_and_leaves_the_commission() -> None:
    merchant, sharer = uuid4(), uuid4()
    commissions = [Commission(sharer, 1, 500)]
    payment = ledger.payment_split(10_000, 500, merchant, commissions)
    settled = ledger.settlement(commissions)
    refund = ledger.refund_split(payment, True, merchant)
    assert ledger.pending_account(sharer) not in refund
    assert total(payment, settled, refund) == Counter(
        {ledger.available_account(sharer): -500, ledger.merchant_account(merchant): 500}
    )


def test_an_unmatched_payment_and_its_return_cancel_out() -> None:
    unmatched, returned = ledger.unmatched_payment(990), ledger.returned_payment(990)
    assert ledger.is_balanced(unmatched) and ledger.is_balanced(returned)
    assert unmatched[ledger.REFUNDS] == -990
    assert total(unmatched, returned) == Counter()


def test_a_withdrawal_moves_available_commission_out_of_clearing() -> None:
    promoter = uuid4()
    assert ledger.withdrawal(promoter, 300) == {
        ledger.available_account(promoter): 300,
        ledger.CLEARING: -300,
    }


def test_a_posting_refuses_entries_that_do_not_balance() -> None:
    with pytest.raises(UnbalancedPosting):
        Posting.record("payment", str(uuid4()), None, {ledger.CLEARING: 1}, datetime.now(UTC))


@given(
    amount=st.integers(min_value=1, max_value=10**9),
    fee_rate=st.one_of(st.sampled_from(sorted(FEE_RATE_BPS.values())), st.integers(0, 5000)),
    chain=st.lists(st.sampled_from(PROMOTERS), max_size=3),
    settled=st.booleans(),
    withdraw_fraction=st.fractions(min_value=0, max_value=1),
)
def test_every_split_balances_and_pays_no_negative_share(
    amount: int, fee_rate: int, chain: list[UUID], settled: bool, withdraw_fraction
) -> None:
    merchant = uuid4()
    commissions = commissions_for(amount, chain)
    payment = ledger.payment_split(amount, fee_rate, merchant, commissions)

    assert ledger.is_balanced(payment)
    assert payment[ledger.CLEARING] == amount
    # The platform owes fees, commissions and the merchant net: none is ever negative.
    assert all(v < 0 for k, v in payment.items() if k != ledger.CLEARING)
    assert -payment.get(ledger.FEES, 0) == amount * fee_rate // 10_000
    for c in commissions:
        assert payment[ledger.pending_account(c.promoter_id)] == -c.amount

    postings = [payment]
    if settled:
        settlement = ledger.settlement(commissions)
        assert ledger.is_balanced(settlement)
        postings.append(settlement)
    refund = ledger.refund_split(payment, settled, merchant)
    assert ledger.is_balanced(refund)
    # A refund only takes back: it never pays out a fee or a commission.
    assert refund.get(ledger.FEES, 0) >= 0
    assert all(v >= 0 for k, v in refund.items() if k.endswith(":pending"))
    assert not any(k.endswith(":available") for k in refund)
    postings.append(refund)

    if settled:
        for c in commissions:
            w = int(c.amount * withdraw_fraction)
            if w:
                withdrawal = ledger.withdrawal(c.promoter_id, w)
                assert ledger.is_balanced(withdrawal)
                postings.append(withdrawal)

    balances = total(*postings)
    assert sum(balances.values()) == 0
    assert balances.get(ledger.FEES, 0) == 0
    assert not any(k.endswith(":pending") for k in balances)
    if settled:
        # The promoters keep their commissions; the merchant bears them.
        paid = sum(c.amount for c in commissions)
        assert balances.get(ledger.merchant_account(merchant), 0) == paid
        for c in commissions:
            assert balances.get(ledger.available_account(c.promoter_id), 0) <= 0
    else:
        assert balances == Counter()
