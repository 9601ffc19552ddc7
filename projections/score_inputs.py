"""Merchant score inputs (issue 4): rolling 30-day figures, from daily buckets.

Each merchant has one row per UTC day with that day's counts, so the figures of any
window are sums over its days, as of any date, deterministically: the tiering process
asks for ``as_of`` a day and gets the same answer before and after a rebuild.

Window: the ``days`` days ending with ``as_of`` inclusive (30 by default). Definitions
(money in fen; honoured payment, buyer, good review as in projections.definitions):

- **sales**: honoured payments in the window (gross); **orders**: their count;
  **avg_ticket**: sales / orders in whole fen, rounded half up.
- **sell_through**: cards sold in the window / (cards sold in the window + cards on
  hand at the end of ``as_of``), where on hand = imported - sold - voided since the
  start (reservations are transient and ignored). Auto goods only.
- **good_review_rate**: reviews rated 4 or 5 / reviews, reviews written in the window.
- **dispute_rate**: disputes opened in the window / orders paid in the window.
- **resolved_within_24h**: of the disputes whose 24 h deadline fell in the window, the
  share resolved before it. Counting by deadline day means a window never includes a
  resolution that happened after its end.
- **refund_rate**: orders refunded in the window / orders paid in the window.
- **repurchase_rate**: of the orders paid in the window, the share by a returning buyer
  (one with an earlier honoured payment at this merchant, at any time).
- **new_products**: products listed in the window.

A rate whose denominator is 0 is None ("no data"), for the score to treat as it
decides, unlike the dashboard's 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from domain.card_stock import CardBucket
from domain.order import Order
from domain.posting import Posting
from domain.product import Product
from projections.base import (
    Batch,
    Projection,
    Table,
    counter,
    day_of,
    fact,
    handles,
    key,
    of_type,
    snapshot,
)
from projections.definitions import PAYMENT, REFUND, SALES_KINDS, average_fen, buyer_of, is_good, movement

WINDOW_DAYS = 30
RESOLVE_WITHIN = timedelta(hours=24)

DAY_COUNTERS = (
    "sales",
    "orders",
    "repeat_orders",
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
    (key("order_id", "uuid"), fact("merchant_id", "uuid"), fact("buyer", "text")),
    ("order_id",),
)
BUYERS = Table(
    "buyers",
    (key("merchant_id", "uuid"), key("buyer", "text"), counter("paid_orders")),
    ("merchant_id", "buyer"),
)
DISPUTES = Table(
    "disputes",
    (key("order_id", "uuid"), fact("merchant_id", "uuid"), fact("disputed_at", "timestamptz")),
    ("order_id",),
)
BUCKETS = Table("buckets", (key("bucket_id", "uuid"), fact("merchant_id", "uuid")), ("bucket_id",))

_CARD_EVENTS = (CardBucket.CardsImported, CardBucket.CardsClaimed, CardBucket.CardVoided)


def _deadline_day(disputed_at: datetime) -> date:
    return day_of(disputed_at + RESOLVE_WITHIN)


class ScoreInputsProjection(Projection[Batch]):
    read_model = "score_inputs"
    tables = (DAILY, ORDERS, BUYERS, DISPUTES, BUCKETS)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        batch = Batch(self)
        placed = {
            e.originator_id: (e.merchant_id, buyer_of(e.contact)) for e in of_type(events, Order.Placed)
        }
        sales = [e for e in of_type(events, Posting.Recorded) if e.kind in SALES_KINDS and e.order_id]
        orders = {e.order_id for e in sales}
        orders |= {e.originator_id for e in of_type(events, Order.Reviewed, Order.Disputed)}
        batch["orders"].load(conn, [(o,) for o in orders - placed.keys()])
        # Buyers are keyed by their order's merchant and buyer, known once orders are.
        buyers = set()
        for e in sales:
            if e.kind != PAYMENT:
                continue
            if e.order_id in placed:
                buyers.add(placed[e.order_id])
            elif (order := batch["orders"].get((e.order_id,))) is not None:
                buyers.add((order["merchant_id"], order["buyer"]))
        batch["buyers"].load(conn, buyers)
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

    @handles(Posting.Recorded)
    def posting_recorded(self, b: Batch, _: int, e: Posting.Recorded) -> None:
        if e.kind not in SALES_KINDS or e.order_id is None:
            return
        order = self._row(b, "orders", e.order_id)
        merchant_id = order["merchant_id"]
        money = movement(e.entries, merchant_id)
        if e.kind == PAYMENT:
            buyer = (merchant_id, order["buyer"])
            earlier = (b["buyers"].get(buyer) or {}).get("paid_orders", 0)
            b["buyers"].add(buyer, paid_orders=1)
            self._day(b, merchant_id, e.timestamp, sales=money.cash, orders=1, repeat_orders=int(earlier > 0))
        elif e.kind == REFUND:
            self._day(b, merchant_id, e.timestamp, refunds=1, refund_amount=-money.cash)


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
    f"coalesce(sum({c}) FILTER (WHERE day > %(start)s), 0)::bigint" for c in DAY_COUNTERS
)


def _inputs(merchant_id: UUID, as_of: date, days: int, row: Sequence[int]) -> ScoreInputs:
    w = dict(zip(DAY_COUNTERS, row[: len(DAY_COUNTERS)], strict=True))
    on_hand = int(row[len(DAY_COUNTERS)])
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
    return _inputs(merchant_id, as_of, days, [0] * (len(DAY_COUNTERS) + 1))


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
    with snapshot(conn):
        p = ScoreInputsProjection.live(conn, version)
        rows = conn.execute(
            f"SELECT merchant_id, {_WINDOW_SUMS},"
            " coalesce(sum(cards_imported - cards_sold - cards_voided), 0)::bigint"
            f" FROM {p.table('daily')} WHERE day <= %(as_of)s"
            " AND (%(merchant)s::uuid IS NULL OR merchant_id = %(merchant)s::uuid)"
            " GROUP BY merchant_id ORDER BY merchant_id",
            {"start": as_of - timedelta(days=days), "as_of": as_of, "merchant": merchant_id},
        ).fetchall()
    return [_inputs(row[0], as_of, days, row[1:]) for row in rows]
