"""What the read models read from a posting alone: whose sale it is and how it was split."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from eventsourcing.utils import get_topic

from domain import ledger
from domain.commissions import Commission
from domain.money import share
from domain.posting import Posting
from projections.dashboard import DashboardBatch, DashboardProjection
from projections.definitions import merchant_in, movement

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_payment_and_its_refund_name_their_merchant_and_split() -> None:
    merchant, promoter = uuid4(), uuid4()
    payment = ledger.payment_split(10_000, 500, merchant, [Commission(promoter, 1, 500)])
    assert merchant_in(payment) == merchant
    money = movement(payment, merchant)
    assert (money.cash, money.fees, money.merchant) == (10_000, share(10_000, 500), 10_000 - 500 - 500)
    refund = ledger.refund_split(payment, True, merchant)  # after settlement
    assert merchant_in(refund) == merchant
    back = movement(refund, merchant)
    # The fee goes back; the merchant bears the settled commission.
    assert (back.cash, back.fees, money.merchant + back.merchant) == (-10_000, -500, -500)


def test_postings_without_a_merchant_name_none() -> None:
    promoter = uuid4()
    assert merchant_in(ledger.settlement([Commission(promoter, 1, 5)])) is None
    assert merchant_in(ledger.withdrawal(promoter, 5)) is None
    assert merchant_in(ledger.unmatched_payment(5)) is None
    assert merchant_in({"merchant:not-an-id": 1, ledger.CLEARING: -1}) is None


def test_the_dashboard_books_fees_and_net_from_a_posting_before_its_order_arrives() -> None:
    # Nothing of the order is loaded or seeded: the posting needs no other aggregate.
    projection = DashboardProjection()
    batch = DashboardBatch(projection)
    merchant, order = uuid4(), uuid4()
    entries = ledger.payment_split(2_000, 400, merchant, [])
    event = Posting.Recorded(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=NOW,
        originator_topic=get_topic(Posting),
        kind="payment",
        ref=str(order),
        order_id=order,
        entries=entries,
    )
    projection.posting_recorded(batch, 1, event)
    batch["merchants"].seed({(merchant,): None})
    assert batch["merchants"].get((merchant,)) == {"platform_fees": 80, "net_revenue": 1_920}
