"""Merchant tiers on real PostgreSQL, with a moving clock: the Shop, the score inputs read
model, the tiering process manager and the HTTP routes together.

Each test has a database of its own (the tiering process evaluates every merchant it
knows, so other tests' merchants must not be in it) and steps the embedded workers by
hand: catch up with the log, then run what the clock has made due.

The sellers sell one product at 1,000 yuan, in one order a month of ``units`` cards,
reviewed with ``rating`` stars. With the published normalisation table that gives
(ticket, sell-through, timeliness, disputes and compliance always full: 48 points)

    5 stars: 68 + 15 x log10(units)  ->  1: 68 basic, 2: 72.5 growth, 10: 83 growth,
                                         50: 93.5 core, 100: 98 core (fast track)
    1 star:  48 + 15 x log10(units)  ->  1: 48 watch, 10: 63 basic
    nothing sold in the window: 33 watch
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from consumers.embedded import EmbeddedWorkers
from consumers.runner import LogRunner
from domain.clock import ManualClock
from domain.exceptions import MerchantRestricted
from domain.fees import fee_rate_for
from domain.ids import posting_id
from domain.ledger import FEES
from domain.merchant import Merchant
from domain.money import share
from domain.order import Order
from domain.posting import Posting
from domain.scoring import score
from domain.shop import Shop
from domain.tiering import TieringPolicy, day_of, evaluate, state_of
from kami.bootstrap import Kami, build
from projections import catalog
from projections.score_inputs import ScoreInputsProjection, score_inputs
from tests.e2e.api_client import Api, bearer, in_process
from tests.support.databases import fresh_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PRICE = 100_000  # fen: 1,000 yuan


@dataclass
class Seller:
    merchant_id: UUID
    auth: dict[str, str]
    product_id: UUID


@dataclass
class World:
    kami: Kami
    clock: ManualClock
    workers: EmbeddedWorkers
    api: Api

    @property
    def shop(self) -> Shop:
        return self.kami.shop

    def at(self, days: float, hour: int = 9) -> None:
        """Move the clock to that day after T0, at that hour (merchants register at 9:00)."""
        self.clock.set(T0.replace(hour=hour) + days * DAY)

    def settle(self) -> int:
        """Let the read side catch up and the process managers run what is due, until
        nothing more is; returns the evaluations and level changes made."""
        made = 0
        for _ in range(20):
            self.workers.runner.catch_up()
            n = self.workers.tiering.tick() + self.workers.levels.tick() + self.workers.deadlines.tick()
            if n == 0:
                self.workers.runner.catch_up()
                return made
            made += n
        raise AssertionError("the process managers never settled")

    def seller(self) -> Seller:
        r = self.api.http.post(
            "/v1/merchants", json={"name": f"m-{uuid4().hex[:8]}", "contact": "m@x"}, headers=self.api.admin
        )
        assert r.status_code == 201, r.text
        merchant_id, auth = UUID(r.json()["merchant_id"]), bearer(r.json()["api_key"])
        product_id = self.shop.list_product(merchant_id, "Top-up", PRICE, "auto").product_id
        return Seller(merchant_id, auth, product_id)

    def sell(self, s: Seller, units: int, rating: int | None = 5) -> UUID:
        """One order of ``units`` cards, paid (and reviewed): a month's trade."""
        self.shop.import_cards(s.merchant_id, s.product_id, [uuid4().hex for _ in range(units)])
        placed = self.shop.place_order(s.product_id, units, f"{uuid4().hex[:8]}@buyer")
        self.shop.record_payment("sandbox", placed.order_id, uuid4().hex, placed.amount)
        if rating is not None:
            self.shop.review_order(placed.order_id, placed.token, rating, "")
        return placed.order_id

    def month(self, k: int, trade: Callable[[], object] | None = None) -> None:
        """Month k: the trade at 8:00 on day 30k, then the evaluation due at 9:00."""
        self.at(30 * k, hour=8)
        if trade is not None:
            trade()
        self.at(30 * k)
        self.settle()

    def merchant(self, s: Seller) -> Merchant:
        return self.shop.get_merchant(s.merchant_id)

    def events(self, s: Seller, kind: type) -> list[Any]:
        return [e for e in self.shop.events.get(s.merchant_id) if isinstance(e, kind)]

    def score(self, s: Seller, auth: dict[str, str] | None = None) -> dict[str, Any]:
        self.workers.runner.catch_up()
        position = self.shop.position()
        r = self.api.http.get(
            f"/v1/merchants/{s.merchant_id}/score", params={"after": position}, headers=auth or s.auth
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
def make_world(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., World]]:
    with contextlib.ExitStack() as stack:

        def make(**env: str) -> World:
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            url = stack.enter_context(fresh_database(database_url, "kami_tiers"))
            clock = ManualClock(T0)
            kami = build(url, clock=clock)
            stack.callback(kami.close)
            workers = EmbeddedWorkers(kami)  # stepped by hand, never started
            api = stack.enter_context(in_process(kami))
            return World(kami, clock, workers, api)

        yield make


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def tiers(world: World, s: Seller) -> list[tuple[str, str]]:
    return [(e.old_tier, e.new_tier) for e in world.events(s, Merchant.TierChanged)]


# ------------------------------------------------------------------ tier changes


def test_a_merchant_moves_up_and_back_down_on_the_monthly_schedule(world: World) -> None:
    s = world.seller()
    world.at(29)
    world.settle()
    assert world.events(s, Merchant.Evaluated) == []  # not due before its month is up

    world.month(1, lambda: world.sell(s, 10))  # 83: growth band, first time
    first = world.score(s)
    assert (first["band"], first["tier"]) == ("growth", "basic")
    assert first["next_tier"]["evaluations_needed"] == 1

    world.month(2, lambda: world.sell(s, 10))  # 83 again: promoted
    assert world.merchant(s).tier == "growth"
    assert world.merchant(s).fee_rate_bps == fee_rate_for("growth")
    (up,) = world.events(s, Merchant.TierChanged)
    assert (up.old_tier, up.new_tier, up.score) == ("basic", "growth", 83.0)
    assert "two evaluations in a row above basic" in up.reason
    assert {row[0] for row in up.components} >= {"monthly_sales", "good_review_rate"}

    world.month(3, lambda: world.sell(s, 1))  # 68: basic band, first time
    assert world.merchant(s).tier == "growth"
    world.month(4, lambda: world.sell(s, 1))  # 68 again: demoted
    assert tiers(world, s) == [("basic", "growth"), ("growth", "basic")]
    assert world.merchant(s).fee_rate_bps == fee_rate_for("basic")
    assert [e.trigger for e in world.events(s, Merchant.Evaluated)] == ["schedule"] * 4


def test_a_new_merchant_is_not_demoted_in_its_first_90_days(world: World) -> None:
    s = world.seller()
    world.month(1)  # nothing sold: 33, watch band
    world.month(2)
    assert world.merchant(s).tier == "basic"
    assert [(e.score, e.band) for e in world.events(s, Merchant.Evaluated)] == [(33.0, "watch")] * 2
    assert all(e.trigger == "schedule" for e in world.events(s, Merchant.Evaluated))
    assert world.score(s)["grace_until"] == (T0 + 90 * DAY).isoformat().replace("+00:00", "Z")

    world.month(3)  # day 90: grace is over, and the last two evaluations were in watch
    assert tiers(world, s) == [("basic", "watch")]
    assert world.merchant(s).rectification_due == T0 + 120 * DAY


def test_a_score_wobbling_at_a_band_edge_never_moves_the_merchant(world: World) -> None:
    s = world.seller()
    for k, units in enumerate([2, 1, 2, 1, 2], start=1):  # 72.5, 68, ...: growth, basic, ...
        world.month(k, lambda units=units: world.sell(s, units))
    assert [e.band for e in world.events(s, Merchant.Evaluated)] == ["growth", "basic"] * 2 + ["growth"]
    assert tiers(world, s) == []

    world.month(6, lambda: world.sell(s, 2))  # growth twice in a row at last
    assert tiers(world, s) == [("basic", "growth")]
    for k, units in enumerate([1, 2, 1, 2], start=7):  # now wobbling below growth
        world.month(k, lambda units=units: world.sell(s, units))
    assert tiers(world, s) == [("basic", "growth")]


def test_a_score_well_inside_core_takes_the_fast_track(world: World) -> None:
    fast, near = world.seller(), world.seller()

    def trade() -> None:
        world.sell(fast, 100)  # 98
        world.sell(near, 50)  # 93.5: core band, but not by the margin

    world.month(1, trade)
    assert tiers(world, fast) == [("basic", "core")]
    assert world.events(fast, Merchant.TierChanged)[0].reason.startswith("fast track")
    assert world.merchant(fast).fee_rate_bps == fee_rate_for("core")
    assert tiers(world, near) == []
    world.month(2, lambda: world.sell(near, 50))
    assert tiers(world, near) == [("basic", "core")]


# ------------------------------------------------------------------- rectification


def demote_to_watch(world: World, s: Seller) -> None:
    """Three idle months: watch at day 90, when grace ends."""
    for k in (1, 2, 3):
        world.month(k)
    assert world.merchant(s).tier == "watch"


def test_still_under_50_at_the_rectification_deadline_brings_a_lower_order_limit_and_held_withdrawals(
    make_world: Callable[..., World],
) -> None:
    world = make_world(KAMI_TIER_RECTIFICATION_DAYS="15")
    s = world.seller()
    demote_to_watch(world, s)
    assert world.merchant(s).rectification_due == T0 + 105 * DAY
    assert world.score(s)["rectification_due"] is not None

    world.at(104)
    world.shop.import_cards(s.merchant_id, s.product_id, [uuid4().hex for _ in range(6)])
    world.shop.place_order(s.product_id, 6, "b@x")  # no limit yet (the order lapses unpaid)
    world.settle()
    assert world.merchant(s).order_limit is None

    world.at(105)
    world.settle()
    m = world.merchant(s)
    assert (m.order_limit, m.withdrawals_held, m.rectification_due) == (5, True, None)
    (ended,) = world.events(s, Merchant.RectificationEnded)
    assert ended.outcome == "failed" and ended.score < 50
    assert [e.trigger for e in world.events(s, Merchant.Evaluated)][-1] == "rectification"
    with pytest.raises(MerchantRestricted, match="withdrawals are held"):
        m.check_can_withdraw()

    over = world.api.http.post(
        "/v1/orders", json={"product_id": str(s.product_id), "quantity": 6, "contact": "b@x"}
    )
    within = world.api.http.post(
        "/v1/orders", json={"product_id": str(s.product_id), "quantity": 5, "contact": "b@x"}
    )
    assert (over.status_code, over.json()["error"]) == (422, "over_limit")
    assert within.status_code == 201
    restrictions = world.score(s)["restrictions"]
    assert restrictions == {"order_limit": 5, "withdrawals_held": True, "withdrawal_review": True}


def test_50_or_more_at_the_deadline_passes_the_rectification_and_the_merchant_climbs_out(
    make_world: Callable[..., World],
) -> None:
    world = make_world(KAMI_TIER_RECTIFICATION_DAYS="15")
    s = world.seller()
    demote_to_watch(world, s)
    world.at(104)
    world.sell(s, 10, rating=1)  # 63: basic band
    world.at(105)
    world.settle()
    (ended,) = world.events(s, Merchant.RectificationEnded)
    assert ended.outcome == "passed"
    assert world.merchant(s).order_limit is None and world.merchant(s).tier == "watch"

    world.month(4)  # day 120: the window still holds day 104's sale: basic a second time
    assert tiers(world, s)[-1] == ("watch", "basic")


# ------------------------------------------------------------------------ appeals


def test_an_appeal_is_recorded_and_re_evaluated_at_once(make_world: Callable[..., World]) -> None:
    world = make_world(KAMI_TIER_RECTIFICATION_DAYS="15")
    s, other = world.seller(), world.seller()
    demote_to_watch(world, s)
    world.at(105)
    world.settle()
    assert world.merchant(s).withdrawals_held

    world.at(110)
    world.sell(s, 5)  # within the limit of 5: 78.5, growth band
    path = f"/v1/merchants/{s.merchant_id}/appeal"
    r = world.api.http.post(path, json={"reason": "back on track"}, headers=s.auth)
    assert r.status_code == 201, r.text
    again = world.api.http.post(path, json={"reason": "?"}, headers=s.auth)
    assert (again.status_code, again.json()["error"]) == (409, "invalid_state")
    forbidden = world.api.http.post(path, json={"reason": "x"}, headers=other.auth)
    assert forbidden.status_code == 403
    (filed,) = world.events(s, Merchant.AppealFiled)
    assert (filed.appeal_id, filed.reason) == (UUID(r.json()["appeal_id"]), "back on track")

    world.settle()  # the process decides it at once: no second evaluation needed
    (decided,) = world.events(s, Merchant.AppealDecided)
    assert (decided.outcome, decided.band) == ("upheld", "growth")
    m = world.merchant(s)
    assert (m.tier, m.order_limit, m.withdrawals_held) == ("growth", None, False)
    assert m.fee_rate_bps == fee_rate_for("growth")
    assert world.score(s)["appeal"]["last_outcome"] == "upheld"
    assert world.events(s, Merchant.TierChanged)[-1].reason.startswith("appeal")


def test_an_appeal_the_score_does_not_support_changes_nothing(world: World) -> None:
    s = world.seller()
    demote_to_watch(world, s)
    path = f"/v1/merchants/{s.merchant_id}/appeal"
    r = world.api.http.post(path, json={"reason": "unfair"}, headers=s.auth)
    assert r.status_code == 201
    world.settle()
    (decided,) = world.events(s, Merchant.AppealDecided)
    assert decided.outcome == "rejected"
    assert world.merchant(s).tier == "watch"
    assert tiers(world, s) == [("basic", "watch")]
    # An appeal is not an evaluation: the hysteresis count is unchanged.
    assert len(world.events(s, Merchant.Evaluated)) == 3
    later = world.api.http.post(path, json={"reason": "x"}, headers=s.auth)
    assert (later.status_code, later.json()["error"]) == (409, "invalid_state")


# ------------------------------------------------------------------ fees and ledger


def payment_fee(world: World, order_id: UUID) -> int:
    posting = world.shop.repository.get(posting_id("payment", str(order_id)))
    assert isinstance(posting, Posting)
    return -posting.entries[FEES]


def test_the_ledger_split_uses_the_fee_rate_in_force_at_payment(world: World) -> None:
    s = world.seller()
    world.at(10)
    early = world.sell(s, 2, rating=None)
    world.shop.import_cards(s.merchant_id, s.product_id, [uuid4().hex])
    pending = world.shop.place_order(s.product_id, 1, "late@buyer")  # placed as basic...
    world.month(1, lambda: world.sell(s, 100))  # 98: core by the fast track
    assert world.merchant(s).tier == "core"
    world.shop.record_payment("sandbox", pending.order_id, uuid4().hex, pending.amount)  # ...paid as core

    assert payment_fee(world, early) == share(2 * PRICE, fee_rate_for("basic"))
    assert payment_fee(world, pending.order_id) == share(PRICE, fee_rate_for("core"))
    order = world.shop.repository.get(pending.order_id)
    assert isinstance(order, Order) and order.status == "delivered"
    # A refund gives back exactly the fee taken at payment, whatever the tier is now.
    world.shop.refund_order(early, "changed mind", s.merchant_id)
    refund = world.shop.repository.get(posting_id("refund", str(early)))
    assert isinstance(refund, Posting)
    assert refund.entries[FEES] == share(2 * PRICE, fee_rate_for("basic"))


# --------------------------------------------------------------------- the score route


def test_the_score_route_shows_every_component_the_tier_and_the_percentile(world: World) -> None:
    top, mid, low, idle = world.seller(), world.seller(), world.seller(), world.seller()

    def trade() -> None:
        world.sell(top, 100)  # 98
        world.sell(mid, 10)  # 83
        world.sell(low, 1)  # 68

    world.month(1, trade)

    body = world.score(mid)
    assert (body["score"], body["band"], body["tier"]) == (83.0, "growth", "basic")
    assert [c["name"] for c in body["components"]] == [
        "monthly_sales", "average_ticket", "sell_through", "good_review_rate", "after_sales_timeliness",
        "dispute_rate", "compliance", "new_product_frequency", "repurchase_rate",
    ]  # fmt: skip
    sales = body["components"][0]
    assert (sales["raw"], sales["points"], sales["weight"], sales["unit"]) == ("10000.00", 15.0, 30, "yuan")
    assert sum(c["points"] for c in body["components"]) == pytest.approx(body["score"])
    assert body["active_merchants"] == 3
    assert world.score(top)["percentile"] == 83.33
    assert body["percentile"] == 50.0
    assert world.score(low)["percentile"] == 16.67
    assert world.score(idle, world.api.admin)["percentile"] == 0.0  # below all three active ones
    assert body["next_tier"]["tier"] == "growth" and body["next_tier"]["points_needed"] == 0
    assert body["fee_rate_bps"] == fee_rate_for("basic")

    path = f"/v1/merchants/{mid.merchant_id}/score"
    assert world.api.http.get(path, headers=low.auth).status_code == 403
    assert world.api.http.get(path, headers=world.api.auditor).status_code == 403
    assert world.api.http.get(path).status_code == 401
    assert world.api.http.get(f"/v1/merchants/{uuid4()}/score", headers=world.api.admin).status_code == 404
    world.api.http.app.state.read_wait_seconds = 0.05  # type: ignore[attr-defined]
    lagging = world.api.http.get(path, params={"after": 10**12}, headers=mid.auth)
    assert (lagging.status_code, lagging.json()["error"]) == (503, "projection_lagging")


# ---------------------------------------------------------------- rebuild of the read side


def test_scores_and_tiers_come_out_the_same_after_a_rebuild_of_the_read_side(world: World) -> None:
    sellers = [world.seller() for _ in range(3)]
    plans = [[10, 10, 1, 1], [100, 2, 2, 1], [1, 50, 50, 2]]
    for k in range(4):

        def trade(k: int = k) -> None:
            for s, plan in zip(sellers, plans, strict=True):
                world.sell(s, plan[k], rating=5 if plan[k] != 1 else 1)

        world.month(k + 1, trade)
    world.at(125)
    world.settle()
    before = [world.score(s, world.api.admin) for s in sellers]
    assert any(tiers(world, s) for s in sellers)

    # Rebuild the score inputs from zero beside the live version, then read from it.
    live = ScoreInputsProjection.VERSION
    rebuilt = ScoreInputsProjection(live + 1)
    LogRunner(world.kami.pool, world.shop.recorder, world.shop.mapper, [rebuilt], batch_size=7).catch_up()
    with world.kami.pool.connection() as conn:
        catalog.promote(conn, rebuilt.read_model, rebuilt.version)
    # The workers now keep the rebuilt version; the route waits on its position.
    world.workers = EmbeddedWorkers(world.kami)
    world.settle()
    after = [world.score(s, world.api.admin) for s in sellers]
    strip = [{k: v for k, v in b.items() if k != "position"} for b in before]
    assert [{k: v for k, v in b.items() if k != "position"} for b in after] == strip

    # Every evaluation recorded is what the rebuilt read model gives as of its day, and the
    # tier rules replayed on those scores make the same changes.
    policy = TieringPolicy()
    for s in sellers:
        evaluations = world.events(s, Merchant.Evaluated)
        replay = Merchant.register("replay", "r@x", "basic", 500, T0)
        replay.collect_events()
        changes = []
        for e in evaluations:
            with world.kami.pool.connection() as conn:
                figures = score_inputs(conn, s.merchant_id, day_of(e.timestamp), version=rebuilt.version)
            b = score(figures, 0)
            assert (b.score, b.as_rows()) == (e.score, e.components)
            outcome = evaluate(state_of(replay, day_of(e.timestamp)), b.score, e.timestamp, policy)
            rows = b.as_rows()
            replay.record_evaluation(b.score, outcome.band, rows, e.trigger, e.scheduled_for, e.timestamp)
            if outcome.new_tier is not None:
                changes.append((replay.tier, outcome.new_tier))
                replay.change_tier(outcome.new_tier, b.score, outcome.reason, e.timestamp)
        assert changes == tiers(world, s)


# ------------------------------------------------------------------ configuration


def test_the_evaluation_period_is_configurable(make_world: Callable[..., World]) -> None:
    world = make_world(KAMI_TIER_EVALUATION_DAYS="7")
    s = world.seller()
    world.at(6)
    world.settle()
    assert world.events(s, Merchant.Evaluated) == []
    world.at(7)
    world.settle()
    world.at(14)
    world.settle()
    assert [e.timestamp for e in world.events(s, Merchant.Evaluated)] == [T0 + 7 * DAY, T0 + 14 * DAY]
