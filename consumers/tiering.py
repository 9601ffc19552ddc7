"""The tiering process manager: evaluates merchants on a schedule, at their rectification
deadlines and on appeal, and ``kami tiers evaluate`` on demand.

Merchant events set and cancel its deadlines (domain.tiering.schedule_for decides
which): registration and every regular evaluation schedule the next evaluation one
period later (30 days by default, ``KAMI_TIER_EVALUATION_DAYS``); a rectification its
deadline check; an appeal its decision, due at once. ``tick`` asks the injected clock
for the time, reads each due merchant's 30-day figures from the score inputs read model
as of today, and issues the Shop command, which applies the tier rules to the Merchant.

The commands are idempotent (a scheduled evaluation runs once per deadline, a
rectification check once per deadline, an appeal is decided once), so a tick that runs
twice, or before the follower has seen the command's own event, changes nothing. After
a command the tick removes the row it ran, unless an event already moved it; the
command's events then schedule what comes next.

Kafka: the manager follows Merchant events only, and only one merchant's rows depend on
one merchant's events, so the per-aggregate order is all it needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from consumers.due import DueCache
from domain.exceptions import KamiError
from domain.merchant import ON_DEMAND, RECTIFICATION, SCHEDULE, Merchant
from domain.shop import Shop
from domain.tiering import (
    DECIDE_APPEAL,
    DEFAULT_POLICY,
    EVALUATE,
    RECTIFY,
    TOPICS,
    Due,
    TierEvaluation,
    TieringPolicy,
    Undue,
    day_of,
    schedule_for,
)
from kami.settings import SettingsError
from projections.score_inputs import ScoreInputs, score_inputs

SCHEMA = """
CREATE TABLE IF NOT EXISTS pm_tiering_due (
    kind text NOT NULL,
    merchant_id uuid NOT NULL,
    due_at timestamptz NOT NULL,
    PRIMARY KEY (kind, merchant_id)
);
CREATE INDEX IF NOT EXISTS pm_tiering_due_at ON pm_tiering_due (due_at);
CREATE TABLE IF NOT EXISTS pm_tiering_merchants (
    merchant_id uuid PRIMARY KEY,
    registered_at timestamptz NOT NULL
);
"""

EVALUATION_DAYS_VAR = "KAMI_TIER_EVALUATION_DAYS"
RECTIFICATION_DAYS_VAR = "KAMI_TIER_RECTIFICATION_DAYS"


def policy_from_env(environ: Mapping[str, str] | None = None) -> TieringPolicy:
    """The tiering policy, with the evaluation period and rectification deadline the
    environment sets (days; defaults 30 and 30)."""
    env = os.environ if environ is None else environ
    every = _days(env, EVALUATION_DAYS_VAR, DEFAULT_POLICY.evaluation_every, 1, 366)
    rectification = _days(env, RECTIFICATION_DAYS_VAR, DEFAULT_POLICY.rectification, 15, 30)
    return TieringPolicy(evaluation_every=every, rectification=rectification)


def _days(env: Mapping[str, str], name: str, default: timedelta, low: int, high: int) -> timedelta:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not low <= days <= high:
        raise SettingsError(f"{name} must be a whole number of days from {low} to {high}", (name,))
    return timedelta(days=days)


class TieringManager:
    name = "pm_tiering"
    topics = frozenset(TOPICS)

    def __init__(
        self,
        shop: Shop,
        pool: ConnectionPool,
        policy: TieringPolicy = DEFAULT_POLICY,
        *,
        score_version: int | None = None,
    ) -> None:
        self._shop = shop
        self._pool = pool
        self.policy = policy
        # The score inputs version to read; None: the live one (tests name their own).
        self._score_version = score_version
        self._due = DueCache()

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SCHEMA)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        with conn.cursor() as cur:
            for _, event in events:
                if isinstance(event, Merchant.Registered):
                    cur.execute(
                        "INSERT INTO pm_tiering_merchants (merchant_id, registered_at) VALUES (%s, %s)"
                        " ON CONFLICT (merchant_id) DO NOTHING",
                        (event.originator_id, event.timestamp),
                    )
                for decision in schedule_for(event, self.policy):
                    if isinstance(decision, Due):
                        self._due.scheduled(decision.due_at)
                        cur.execute(
                            "INSERT INTO pm_tiering_due (kind, merchant_id, due_at) VALUES (%s, %s, %s)"
                            " ON CONFLICT (kind, merchant_id) DO UPDATE SET due_at = EXCLUDED.due_at",
                            (decision.kind, decision.merchant_id, decision.due_at),
                        )
                    elif isinstance(decision, Undue):
                        cur.execute(
                            "DELETE FROM pm_tiering_due WHERE kind = %s AND merchant_id = %s",
                            (decision.kind, decision.merchant_id),
                        )

    def figures(self, merchant_id: UUID) -> ScoreInputs:
        """The merchant's 30-day figures as of today (the injected clock's UTC day)."""
        with self._pool.connection() as conn:
            return score_inputs(conn, merchant_id, day_of(self._shop.clock()), version=self._score_version)

    def tick(self, limit: int = 200) -> int:
        """Run the evaluations the clock has made due; returns how many ran."""
        now = self._shop.clock()
        if self._due.nothing_due(now):
            return 0
        with self._pool.connection() as conn:
            # A fixed order: a scheduled evaluation and a rectification check due at the
            # same instant always run evaluation first (it decides the deadline too).
            due = conn.execute(
                "SELECT kind, merchant_id, due_at FROM pm_tiering_due WHERE due_at <= %s"
                " ORDER BY due_at, merchant_id, kind LIMIT %s",
                (now, limit),
            ).fetchall()
            if not due:
                self._due.learn(conn, "pm_tiering_due")
                return 0
        # The commands' events schedule what comes next: ask again next time.
        self._due.forget()
        done = 0
        for kind, merchant_id, due_at in due:
            try:
                if kind == EVALUATE:
                    result = self._shop.evaluate_merchant(
                        merchant_id, self.figures(merchant_id), SCHEDULE, due_at, self.policy
                    )
                elif kind == RECTIFY:
                    result = self._shop.evaluate_merchant(
                        merchant_id, self.figures(merchant_id), RECTIFICATION, due_at, self.policy
                    )
                elif kind == DECIDE_APPEAL:
                    result = self._shop.decide_appeal(merchant_id, self.figures(merchant_id), self.policy)
                else:
                    raise ValueError(f"unknown tiering deadline {kind!r}")
                done += int(result.evaluated)
            except KamiError:
                # The merchant is gone or moved on; nothing to retry.
                pass
            with self._pool.connection() as conn:
                # Only the row that ran: an event may have set a new deadline meanwhile.
                conn.execute(
                    "DELETE FROM pm_tiering_due WHERE kind = %s AND merchant_id = %s AND due_at = %s",
                    (kind, merchant_id, due_at),
                )
        return done

    def evaluate_now(self, merchant_ids: Sequence[UUID] | None = None) -> list[TierEvaluation]:
        """Evaluate these merchants (default: every merchant the manager knows) now."""
        if merchant_ids is None:
            with self._pool.connection() as conn:
                merchant_ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT merchant_id FROM pm_tiering_merchants ORDER BY registered_at, merchant_id"
                    )
                ]
        for m in merchant_ids:
            self._shop.get_merchant(m)  # an unknown id fails before anything is recorded
        return [
            self._shop.evaluate_merchant(m, self.figures(m), ON_DEMAND, None, self.policy)
            for m in merchant_ids
        ]
