"""``kami status``: per read model (live and rebuilding), process manager, relay, chain and
Kafka partition: position, head, lag in events and in business seconds, dead letters."""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from consumers import chain
from consumers.deadlines import DeadlineManager
from consumers.rebuild import Rebuilder, RebuildStopped
from consumers.runner import LogRunner
from consumers.status import Status, collect
from domain.clock import ManualClock
from domain.order import Order
from kami.bootstrap import Kami, build
from projections.dashboard import DashboardProjection
from projections.ledger import LedgerProjection
from tests.support.databases import fresh_database
from tests.support.workload import Workload

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def system(database_url: str) -> Iterator[tuple[Kami, ManualClock]]:
    with fresh_database(database_url) as url:
        clock = ManualClock(START)
        kami = build(url, clock=clock)
        try:
            yield kami, clock
        finally:
            kami.close()


def status_of(kami: Kami) -> Status:
    with kami.pool.connection() as conn:
        return collect(conn, kami.shop.recorder.events_table_name, kami.shop.mapper)


def time_at(kami: Kami, position: int) -> datetime:
    [n] = kami.shop.recorder.select_notifications(start=position, limit=1)
    moment: datetime = kami.shop.mapper.to_domain_event(n).timestamp
    return moment


def test_status_shows_positions_lag_and_dead_letters(
    system: tuple[Kami, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    kami, clock = system
    work = Workload(kami.shop, random.Random(5))
    work.setup(merchants=1, products=2)
    for _ in range(20):
        clock.advance(timedelta(minutes=1))
        work.step()
    paid = kami.shop.recorder.select_notifications(start=1, limit=10**6, topics=[get_topic(Order.Paid)])
    poison_at = paid[len(paid) // 2].id
    original = DashboardProjection.order_paid

    def order_paid(projection: Any, batch: Any, position: int, event: Any) -> None:
        if position == poison_at:
            raise ValueError("poison")
        original(projection, batch, position, event)

    monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)
    deadlines = DeadlineManager(kami.shop, kami.pool)
    consumers = [DashboardProjection(), LedgerProjection(), deadlines]
    runner = LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, consumers)
    runner.catch_up()
    with pytest.raises(RebuildStopped):  # a rebuild under way, stopped on the same letter
        Rebuilder(kami.pool, kami.shop.recorder, kami.shop.mapper).rebuild(["dashboard"])
    for _ in range(5):
        clock.advance(timedelta(minutes=10))
        work.step()
    with kami.pool.connection() as conn:
        chain.ensure_schema(conn)
        conn.commit()
        chain.extend(conn, kami.shop.recorder.events_table_name)
        # Two partitions of a Kafka consumer, as `kami consume` stores them.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS kami_kafka_offsets (consumer text NOT NULL, topic text NOT NULL,"
            " partition int NOT NULL, next_offset bigint NOT NULL DEFAULT 0, applied_id bigint NOT NULL"
            " DEFAULT 0, watermark bigint NOT NULL DEFAULT 0, PRIMARY KEY (consumer, topic, partition))"
        )
        conn.execute(
            "INSERT INTO kami_kafka_offsets VALUES ('rm_payouts_v1', 'kami.events', 0, 40, 30, 25),"
            " ('rm_payouts_v1', 'kami.events', 1, 12, 28, 21)"
        )
    head = kami.shop.position()

    status = status_of(kami)

    assert status.head == head and status.head_time == time_at(kami, head)
    by_name = {c.name: c for c in status.consumers}
    dashboard = by_name["rm_dashboard_v1"]
    assert (dashboard.state, dashboard.transport, dashboard.position) == ("live", "log", poison_at - 1)
    assert dashboard.lag_events == head - (poison_at - 1)
    assert dashboard.lag_seconds == (time_at(kami, head) - time_at(kami, poison_at - 1)).total_seconds() > 0
    assert dashboard.dead_letters == 1
    rebuilding = by_name["rm_dashboard_v2"]
    assert (rebuilding.state, rebuilding.position) == ("rebuilding", poison_at - 1)
    assert rebuilding.dead_letters == 1
    ledger = by_name["rm_ledger_v1"]
    behind = runner.position("rm_ledger_v1")
    assert (ledger.position, ledger.lag_events, ledger.dead_letters) == (behind, head - behind, 0)
    assert ledger.lag_seconds == (time_at(kami, head) - time_at(kami, behind)).total_seconds() == 50 * 60
    payouts = by_name["rm_payouts_v1"]
    assert (payouts.transport, payouts.position) == ("kafka", 21)
    assert [(p.partition, p.next_offset, p.applied_id, p.watermark) for p in payouts.partitions] == [
        (0, 40, 30, 25),
        (1, 12, 28, 21),
    ]
    assert (by_name["pm_deadlines"].kind, by_name["pm_deadlines"].position) == ("process manager", behind)
    assert (by_name["chain"].position, by_name["chain"].lag_events) == (head, 0)
    never_built = by_name["rm_overview_v1"]
    assert (never_built.position, never_built.lag_events) == (0, head)

    printed = _cli(kami, "status", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(json.dumps(status.as_dict()))
    text = _cli(kami, "status")
    assert text.returncode == 0, text.stderr
    assert f"head of the log: position {head}" in text.stdout
    line = next(x for x in text.stdout.splitlines() if x.startswith("rm_dashboard_v1 "))
    assert line.split() == [
        "rm_dashboard_v1",
        "live",
        "log",
        str(poison_at - 1),
        str(dashboard.lag_events),
        f"{dashboard.lag_seconds:.1f}",
        "1",
    ]
    assert "kami.events[1] next offset 12, applied id 28, watermark 21" in text.stdout


def _cli(kami: Kami, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAMI_DATABASE_URL": kami.database_url,
        **{
            name: secrets.token_urlsafe(24)
            for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
        },
    }
    return subprocess.run(
        [sys.executable, "-m", "kami.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )
