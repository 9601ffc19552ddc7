"""Dead letters: a poison event is recorded (projection, position, stored event, traceback),
the projection stops on it or goes on per its policy while the others continue, and a
retry after the fix, or an audited skip, resumes it; nothing is ever skipped silently."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic

from consumers import dead_letters
from consumers.runner import LogRunner
from domain.order import Order
from kami.bootstrap import Kami
from projections.base import SKIP
from projections.dashboard import DashboardProjection
from projections.ledger import LedgerProjection
from tests.support.workload import traffic

CLEAN_VERSION = 90  # a clean run beside the poisoned one, for the comparison


class Poison:
    """Makes DashboardProjection.order_paid raise for one order's payment until fixed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, order_id: UUID) -> None:
        self.order_id = order_id
        self.active = True
        original = DashboardProjection.order_paid

        def order_paid(projection: Any, batch: Any, position: int, event: Order.Paid) -> None:
            if self.active and event.originator_id == self.order_id:
                raise ValueError(f"cannot process the payment of {self.order_id}")
            original(projection, batch, position, event)

        monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)

    def fix(self) -> None:
        self.active = False


def paid_events(kami: Kami) -> list[tuple[int, UUID]]:
    """(position, order id) of every Order.Paid, in log order."""
    found = kami.shop.recorder.select_notifications(start=1, limit=10**6, topics=[get_topic(Order.Paid)])
    return [(n.id, n.originator_id) for n in found]  # type: ignore[misc]


def a_payment(kami: Kami) -> tuple[int, UUID]:
    """A payment in the middle of the log."""
    paid = paid_events(kami)
    return paid[len(paid) // 2]


def clean_rows(kami: Kami) -> dict[str, Any]:
    clean = DashboardProjection(CLEAN_VERSION)
    LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, [clean]).catch_up()
    with kami.pool.connection() as conn:
        return clean.rows(conn)


def rows(kami: Kami, projection: DashboardProjection) -> dict[str, Any]:
    with kami.pool.connection() as conn:
        return projection.rows(conn)


def letters(kami: Kami, **filters: Any) -> list[dead_letters.DeadLetter]:
    with kami.pool.connection() as conn:
        return dead_letters.letters(conn, **filters)


def resolver(*projections: Any) -> Callable[[str], Any]:
    by_name = {p.name: p for p in projections}
    return by_name.get


def test_a_poison_event_stops_its_projection_and_a_retry_after_the_fix_clears_it(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(system.shop, 11, 40)
    position, order_id = a_payment(system)
    poison = Poison(monkeypatch, order_id)
    dashboard, ledger = DashboardProjection(3), LedgerProjection(3)
    consumers = [dashboard, ledger]
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, consumers, batch_size=50)

    runner.catch_up()  # no exception: the failure is handled, not propagated

    [letter] = letters(system)
    assert (letter.consumer, letter.position, letter.status) == (dashboard.name, position, "stopped")
    assert letter.topic == get_topic(Order.Paid) and letter.originator_id == order_id
    stored = system.shop.recorder.select_notifications(start=position, limit=1)[0]
    assert (letter.state, letter.originator_version) == (stored.state, stored.originator_version)
    assert "cannot process the payment" in letter.traceback and "order_paid" in letter.traceback
    # Stopped right before the event, with every event before it applied; the others go on.
    assert runner.position(dashboard.name) == position - 1
    assert runner.position(ledger.name) == system.shop.position()

    traffic(system.shop, 12, 10)
    runner.catch_up()
    assert runner.position(dashboard.name) == position - 1, "a stopped projection never passes its letter"
    assert runner.position(ledger.name) == system.shop.position()
    assert letters(system)[0].attempts == 1  # left alone: not failing again and again

    # Retrying before the fix records the attempt and changes nothing else.
    again = dead_letters.retry(system.pool, system.shop.mapper, letter.id, resolver(dashboard))
    assert not again.ok and letters(system)[0].attempts == 2
    assert runner.position(dashboard.name) == position - 1

    poison.fix()
    done = dead_letters.retry(system.pool, system.shop.mapper, letter.id, resolver(dashboard))

    assert done.ok
    assert letters(system) == []
    [resolved] = letters(system, only_open=False)
    assert resolved.status == "retried" and resolved.resolved_by
    assert runner.position(dashboard.name) == position
    runner.catch_up()
    assert runner.position(dashboard.name) == system.shop.position()
    assert rows(system, dashboard) == clean_rows(system)


def test_a_skip_policy_goes_on_without_the_event_and_keeps_it_open_until_retried(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(system.shop, 21, 40)
    position, order_id = a_payment(system)
    clean = clean_rows(system)
    poison = Poison(monkeypatch, order_id)
    monkeypatch.setattr(DashboardProjection, "on_failure", SKIP)
    dashboard = DashboardProjection(3)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [dashboard], batch_size=50)

    runner.catch_up()

    [letter] = letters(system)
    assert (letter.position, letter.policy, letter.status) == (position, "skip", "left_out")
    assert runner.position(dashboard.name) == system.shop.position()
    # Everything but that payment: it shows against a clean run.
    assert rows(system, dashboard) != clean

    poison.fix()
    assert dead_letters.retry_all(system.pool, system.shop.mapper, resolver(dashboard))[0].ok
    assert letters(system) == []
    assert runner.position(dashboard.name) == system.shop.position()  # a skip letter moves nothing
    # Applied late, after its order's later events: here the rows come out the same.
    assert rows(system, dashboard) == clean


def test_an_audited_skip_resumes_past_the_event(system: Kami, monkeypatch: pytest.MonkeyPatch) -> None:
    traffic(system.shop, 31, 40)
    position, order_id = a_payment(system)
    Poison(monkeypatch, order_id)
    dashboard = DashboardProjection(3)
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [dashboard], batch_size=50)
    runner.catch_up()
    [letter] = letters(system)

    with pytest.raises(dead_letters.DeadLetterError, match="reason"):
        dead_letters.skip(system.pool, letter.id, "  ")
    dead_letters.skip(system.pool, letter.id, "a test payment, never real", by="ops-alice")
    runner.catch_up()

    [skipped] = letters(system, only_open=False)
    assert (skipped.status, skipped.resolved_by, skipped.note) == (
        "skipped",
        "ops-alice",
        "a test payment, never real",
    )
    assert runner.position(dashboard.name) == system.shop.position()
    with pytest.raises(dead_letters.DeadLetterError, match="already skipped"):
        dead_letters.retry(system.pool, system.shop.mapper, letter.id, resolver(dashboard))


def test_a_failure_outside_a_handler_still_propagates(system: Kami, monkeypatch: pytest.MonkeyPatch) -> None:
    traffic(system.shop, 41, 5)
    dashboard = DashboardProjection(3)

    def broken_flush(*_: Any) -> None:
        raise RuntimeError("the database went away")

    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [dashboard])
    monkeypatch.setattr("projections.dashboard.DashboardBatch.flush", broken_flush)
    with pytest.raises(RuntimeError, match="went away"):
        runner.catch_up()
    assert letters(system) == [] and runner.position(dashboard.name) == 0


def _cli(kami: Kami, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAMI_DATABASE_URL": kami.database_url,
        "KAMI_OPERATOR": "ops-bob",
        **{
            name: secrets.token_urlsafe(24)
            for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
        },
    }
    return subprocess.run(
        [sys.executable, "-m", "kami.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )


def test_kami_dlq_lists_and_retries_with_the_fixed_code(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(system.shop, 51, 40)
    position, order_id = a_payment(system)
    poison = Poison(monkeypatch, order_id)  # broken in this process only: the CLI runs fixed code
    dashboard = DashboardProjection()  # the live version, as `kami serve` follows it
    runner = LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [dashboard])
    runner.catch_up()

    listed = _cli(system, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["consumer"], shown["position"], shown["status"]) == (dashboard.name, position, "stopped")
    assert "Traceback" in shown["traceback"]
    text = _cli(system, "dlq", "list")
    assert f"#{shown['id']} stopped  {dashboard.name} position {position}" in text.stdout

    retried = _cli(system, "dlq", "retry")

    assert retried.returncode == 0, retried.stderr
    assert f"#{shown['id']} {dashboard.name} position {position}: applied, resumed" in retried.stdout
    assert letters(system) == []
    [resolved] = letters(system, only_open=False)
    assert (resolved.status, resolved.resolved_by) == ("retried", "ops-bob")
    poison.fix()  # this process "deploys" the fix too, for the clean run below
    runner.catch_up()
    assert rows(system, dashboard) == clean_rows(system)
    assert "no open dead letters" in _cli(system, "dlq", "list").stdout
    assert _cli(system, "dlq", "skip", "--reason", "x").returncode == 2  # IDs or --all
