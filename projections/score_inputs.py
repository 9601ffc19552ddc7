"""Merchant score inputs (issue 4): rolling 30-day figures, from daily buckets.

Each merchant has one row per UTC day with that day's counts, so the figures of any
window are sums over its days, as of any date, deterministically: the tiering process
asks for ``as_of`` a day and gets the same answer before and after a rebuild.

Window: the ``days`` days ending with ``as_of`` inclusive (30 by default). Definitions
(money in fen; honoured payment, buyer, good review as in projections.definitions):

- **sales**: honoured payments in the window (gross, ``Order.Paid.amount``);
  **orders**: their count; **avg_ticket**: sales / orders in whole fen, rounded half up.
- **sell_through**: cards sold in the window / (cards sold in the window + cards on
  hand at the end of ``as_of``), where on hand = imported - sold - voided since the
  start (reservations are transient and ignored). Auto goods only.
- **good_review_rate**: reviews rated 4 or 5 / reviews, reviews written in the window.
- **dispute_rate**: disputes opened in the window / orders paid in the window.
- **resolved_within_24h**: of the disputes whose 24 h deadline fell in the window, the
  share resolved before it. Counting by deadline day means a window never includes a
  resolution that happened after its end.
- **refund_rate**: orders refunded in the window (after an honoured payment) / orders
  paid in the window.
- **repurchase_rate**: of the orders paid in the window, the share by a returning buyer
  (one with an earlier honoured payment at this merchant, at any time). "Earlier" is by
  business time: each buyer's first honoured payment at a merchant is its first order
  and every other is a repeat, so repeat orders = orders - buyers whose first payment
  falls in the window.
- **new_products**: products listed in the window.

A rate whose denominator is 0 is None ("no data"), for the score to treat as it
decides, unlike the dashboard's 0.0.

Order (``projections.base``): handlers read only their own aggregate's earlier facts
(an order's merchant and buyer, a dispute's opening, a bucket's merchant); days are
counters, and a buyer's first payment is the earliest of its orders' payment times
(``LEAST``), so the rows are the same whatever order the orders' events arrive in.
Which of a buyer's orders is a repeat is decided when read, from that earliest time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import psycopg

from domain.card_stock import CardBucket
from domain.order import Order
from domain.product import Product
from projections.base import (
    Batch,
    Projection,
    Table,
    counter,
    day_of,
    earliest,
    fact,
    handles,
    key,
    of_type,
    snapshot,
    value,
)
from projections.definitions import average_fen, buyer_of, is_good

WINDOW_DAYS = 30
RESOLVE_WITHIN = timedelta(hours=24)

DAY_COUNTERS = (
    "sales",
    "orders",
    "refunds",
    "refund_amount",
    "reviews",
    "good_reviews",
    "disputes",
    "disputes_due",
    "disputes_resolved_in_time",
    "new_products",
    "cards_imported",
    "cards_sold",
    "cards_voided",
)

DAILY = Table(
    "daily",
    (key("merchant_id", "uuid"), key("day", "date"), *(counter(c) for c in DAY_COUNTERS)),
    ("merchant_id", "day"),
    indexes=(("day",),),
)
ORDERS = Table(
    "orders",
    (
        key("order_id", "uuid"),
        fact("merchant_id", "uuid"),
        fact("buyer", "text"),
        value("honoured", "boolean"),
    ),
    ("order_id",),
)
# A buyer's first honoured payment at a merchant: the earliest of its orders' payments.
BUYERS = Table(
    "buyers",
    (key("merchant_id", "uuid"), key("buyer", "text"), earliest("first_paid_at", "timestamptz")),
    ("merchant_id", "buyer"),
    indexes=(("merchant_id", "first_paid_at"),),
)
DISPUTES = Table(
    "disputes",
    (key("order_id", "uuid"), fact("merchant_id", "uuid"), fact("disputed_at", "timestamptz")),
    ("order_id",),
)
BUCKETS = Table("buckets", (key("bucket_id", "uuid"), fact("merchant_id", "uuid")), ("bucket_id",))

_CARD_EVENTS = (CardBucket.CardsImported, CardBucket.CardsClaimed, CardBucket.CardVoided)
_ORDER_EVENTS = (Order.Paid, Order.Refunded, Order.Reviewed, Order.Disputed)


def _deadline_day(disputed_at: datetime) -> date:
    return day_of(disputed_at + RESOLVE_WITHIN)


class ScoreInputsProjection(Projection[Batch]):
    read_model = "score_inputs"
    tables = (DAILY, ORDERS, BUYERS, DISPUTES, BUCKETS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        batch = Batch(self)
        placed = {e.originator_id for e in of_type(events, Order.Placed)}
        orders = {e.originator_id for e in of_type(events, *_ORDER_EVENTS)}
        batch["orders"].load(conn, [(o,) for o in orders - placed])
        disputed = {e.originator_id for e in of_type(events, Order.Disputed)}
        resolved = {e.originator_id for e in of_type(events, Order.DisputeResolved)}
        batch["disputes"].load(conn, [(o,) for o in resolved - disputed])
        opened = {e.originator_id for e in of_type(events, CardBucket.Opened)}
        buckets = {e.originator_id for e in of_type(events, *_CARD_EVENTS)}
        batch["buckets"].load(conn, [(b,) for b in buckets - opened])
        return batch

    @staticmethod
    def _row(batch: Batch, table: str, k: Any) -> Mapping[str, Any]:
        row = batch[table].get((k,))
        if row is None:
            raise LookupError(f"{table} {k} has an event but no row")
        return row

    def _day(self, b: Batch, merchant_id: UUID, moment: datetime | date, **counts: int) -> None:
        day = moment if not isinstance(moment, datetime) else day_of(moment)
        b["daily"].add((merchant_id, day), **counts)

    @handles(Product.Listed)
    def product_listed(self, b: Batch, _: int, e: Product.Listed) -> None:
        self._day(b, e.merchant_id, e.timestamp, new_products=1)

    @handles(CardBucket.Opened)
    def card_bucket_opened(self, b: Batch, _: int, e: CardBucket.Opened) -> None:
        b["buckets"].put((e.originator_id,), merchant_id=e.merchant_id)

    @handles(CardBucket.CardsImported)
    def card_bucket_cards_imported(self, b: Batch, _: int, e: CardBucket.CardsImported) -> None:
        merchant_id = self._row(b, "buckets", e.originator_id)["merchant_id"]
        self._day(b, merchant_id, e.timestamp, cards_imported=len(e.cards))

    @handles(CardBucket.CardsClaimed)
    def card_bucket_cards_claimed(self, b: Batch, _: int, e: CardBucket.CardsClaimed) -> None:
        merchant_id = self._row(b, "buckets", e.originator_id)["merchant_id"]
        self._day(b, merchant_id, e.timestamp, cards_sold=len(e.card_ids))

    @handles(CardBucket.CardVoided)
    def card_bucket_card_voided(self, b: Batch, _: int, e: CardBucket.CardVoided) -> None:
        merchant_id = self._row(b, "buckets", e.originator_id)["merchant_id"]
        self._day(b, merchant_id, e.timestamp, cards_voided=1)

    @handles(Order.Placed)
    def order_placed(self, b: Batch, _: int, e: Order.Placed) -> None:
        b["orders"].put((e.originator_id,), merchant_id=e.merchant_id, buyer=buyer_of(e.contact))

    @handles(Order.Reviewed)
    def order_reviewed(self, b: Batch, _: int, e: Order.Reviewed) -> None:
        merchant_id = self._row(b, "orders", e.originator_id)["merchant_id"]
        self._day(b, merchant_id, e.timestamp, reviews=1, good_reviews=int(is_good(e.rating)))

    @handles(Order.Disputed)
    def order_disputed(self, b: Batch, _: int, e: Order.Disputed) -> None:
        merchant_id = self._row(b, "orders", e.originator_id)["merchant_id"]
        b["disputes"].put((e.originator_id,), merchant_id=merchant_id, disputed_at=e.timestamp)
        self._day(b, merchant_id, e.timestamp, disputes=1)
        self._day(b, merchant_id, _deadline_day(e.timestamp), disputes_due=1)

    @handles(Order.DisputeResolved)
    def order_dispute_resolved(self, b: Batch, _: int, e: Order.DisputeResolved) -> None:
        dispute = self._row(b, "disputes", e.originator_id)
        if e.timestamp - dispute["disputed_at"] <= RESOLVE_WITHIN:
            day = _deadline_day(dispute["disputed_at"])
            self._day(b, dispute["merchant_id"], day, disputes_resolved_in_time=1)

    @handles(Order.Paid)
    def order_paid(self, b: Batch, _: int, e: Order.Paid) -> None:
        order = self._row(b, "orders", e.originator_id)
        b["orders"].put((e.originator_id,), honoured=e.honoured)
        if not e.honoured:
            return
        merchant_id = order["merchant_id"]
        self._day(b, merchant_id, e.timestamp, sales=e.amount, orders=1)
        b["buyers"].lower((merchant_id, order["buyer"]), first_paid_at=e.timestamp)

    @handles(Order.Refunded)
    def order_refunded(self, b: Batch, _: int, e: Order.Refunded) -> None:
        order = self._row(b, "orders", e.originator_id)
        if order.get("honoured"):
            self._day(b, order["merchant_id"], e.timestamp, refunds=1, refund_amount=e.amount)


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class ScoreInputs:
    merchant_id: UUID
    as_of: date
    days: int
    sales: int
    orders: int
    avg_ticket: int | None
    cards_sold: int
    cards_on_hand: int
    sell_through: float | None
    reviews: int
    good_reviews: int
    good_review_rate: float | None
    disputes: int
    dispute_rate: float | None
    disputes_due: int
    disputes_resolved_in_time: int
    resolved_within_24h: float | None
    refunds: int
    refund_amount: int
    refund_rate: float | None
    repeat_orders: int
    repurchase_rate: float | None
    new_products: int


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


_WINDOW_SUMS = ", ".join(
    f"coalesce(sum({c}) FILTER (WHERE day > %(start)s), 0)::bigint AS {c}" for c in DAY_COUNTERS
)


def _inputs(merchant_id: UUID, as_of: date, days: int, row: Sequence[int]) -> ScoreInputs:
    """``row``: the window's day sums, cards on hand, and buyers whose first payment
    falls in the window."""
    w = dict(zip(DAY_COUNTERS, row[: len(DAY_COUNTERS)], strict=True))
    on_hand, new_buyers = int(row[len(DAY_COUNTERS)]), int(row[len(DAY_COUNTERS) + 1])
    # Every order paid in the window is a repeat except each new buyer's first.
    w["repeat_orders"] = w["orders"] - new_buyers
    return ScoreInputs(
        merchant_id=merchant_id,
        as_of=as_of,
        days=days,
        sales=w["sales"],
        orders=w["orders"],
        avg_ticket=average_fen(w["sales"], w["orders"]) if w["orders"] else None,
        cards_sold=w["cards_sold"],
        cards_on_hand=on_hand,
        sell_through=_rate(w["cards_sold"], w["cards_sold"] + on_hand),
        reviews=w["reviews"],
        good_reviews=w["good_reviews"],
        good_review_rate=_rate(w["good_reviews"], w["reviews"]),
        disputes=w["disputes"],
        dispute_rate=_rate(w["disputes"], w["orders"]),
        disputes_due=w["disputes_due"],
        disputes_resolved_in_time=w["disputes_resolved_in_time"],
        resolved_within_24h=_rate(w["disputes_resolved_in_time"], w["disputes_due"]),
        refunds=w["refunds"],
        refund_amount=w["refund_amount"],
        refund_rate=_rate(w["refunds"], w["orders"]),
        repeat_orders=w["repeat_orders"],
        repurchase_rate=_rate(w["repeat_orders"], w["orders"]),
        new_products=w["new_products"],
    )


def score_inputs(
    conn: psycopg.Connection[Any],
    merchant_id: UUID,
    as_of: date,
    *,
    days: int = WINDOW_DAYS,
    version: int | None = None,
) -> ScoreInputs:
    """One merchant's figures over the ``days`` days ending with ``as_of``."""
    found = _query(conn, as_of, days, version, merchant_id)
    if found:
        return found[0]
    return _inputs(merchant_id, as_of, days, [0] * (len(DAY_COUNTERS) + 2))


def all_score_inputs(
    conn: psycopg.Connection[Any],
    as_of: date,
    *,
    days: int = WINDOW_DAYS,
    version: int | None = None,
) -> list[ScoreInputs]:
    """Every merchant with any activity up to ``as_of``: what a tiering run scores."""
    return _query(conn, as_of, days, version, None)


def _query(
    conn: psycopg.Connection[Any], as_of: date, days: int, version: int | None, merchant_id: UUID | None
) -> list[ScoreInputs]:
    start = as_of - timedelta(days=days)
    with snapshot(conn):
        p = ScoreInputsProjection.live(conn, version)
        rows = conn.execute(
            f"WITH d AS (SELECT merchant_id, {_WINDOW_SUMS},"
            " coalesce(sum(cards_imported - cards_sold - cards_voided), 0)::bigint AS on_hand"
            f" FROM {p.table('daily')} WHERE day <= %(as_of)s"
            " AND (%(merchant)s::uuid IS NULL OR merchant_id = %(merchant)s::uuid)"
            " GROUP BY merchant_id),"
            " n AS (SELECT merchant_id, count(*)::bigint AS new_buyers"
            f" FROM {p.table('buyers')} WHERE first_paid_at >= %(from)s AND first_paid_at < %(to)s"
            " AND (%(merchant)s::uuid IS NULL OR merchant_id = %(merchant)s::uuid)"
            " GROUP BY merchant_id)"
            " SELECT d.*, coalesce(n.new_buyers, 0) FROM d LEFT JOIN n USING (merchant_id)"
            " ORDER BY merchant_id",
            {
                "start": start,
                "as_of": as_of,
                "merchant": merchant_id,
                # The window's days as instants: from the start of its first UTC day to
                # the start of the day after as_of.
                "from": _midnight(start + timedelta(days=1)),
                "to": _midnight(as_of + timedelta(days=1)),
            },
        ).fetchall()
    return [_inputs(row[0], as_of, days, row[1:]) for row in rows]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)
