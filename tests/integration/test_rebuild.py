"""Rebuilds without downtime: a new version is built beside the live one while writes go
on and the follower keeps the live one current; reads switch only once it has caught up
and never see an empty or partial view; the result equals a from-scratch replay; an
interrupted rebuild leaves the live version untouched and resumes; the report shows
what a fix changed."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest

from consumers import dead_letters
from consumers.embedded import EmbeddedWorkers
from consumers.rebuild import DROP_GRACE_SECONDS, Progress, Rebuilder, RebuildStopped
from consumers.replay import replay
from consumers.runner import LogRunner
from domain.money import format_yuan
from domain.order import Order
from domain.posting import Posting
from kami.bootstrap import Kami, build
from projections import catalog
from projections.base import flush_lock
from projections.dashboard import DashboardProjection
from projections.ledger import LedgerProjection
from projections.registry import PROJECTIONS, build_all
from tests.e2e.api_client import in_process
from tests.support.databases import fresh_database
from tests.support.workload import Workload, traffic


@pytest.fixture
def system(database_url: str) -> Iterator[Kami]:
    with fresh_database(database_url) as url:
        kami = build(url, pool_size=12)
        try:
            yield kami
        finally:
            kami.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll a condition until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.02)


def position_of(kami: Kami, name: str) -> int:
    with kami.pool.connection() as conn:
        row = conn.execute("SELECT position FROM kami_tracking WHERE name = %s", (name,)).fetchone()
        return int(row[0]) if row else -1


def table_exists(kami: Kami, name: str) -> bool:
    with kami.pool.connection() as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])


def live_version(kami: Kami, read_model: str) -> int | None:
    with kami.pool.connection() as conn:
        return catalog.live_version(conn, read_model)


def catch_up(kami: Kami, consumers: list[Any]) -> None:
    LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, consumers).catch_up()


def no_reader_beside(seconds: float) -> None:
    """The grace before a drop, for a rebuild that no reader runs beside: nothing to wait
    for (the grace itself is seen by its own test below)."""


def stored_events(kami: Kami) -> list[tuple[int, Any]]:
    notifications = kami.shop.recorder.select_notifications(start=1, limit=10**7)
    return [(n.id, kami.shop.mapper.to_domain_event(n)) for n in notifications]


# ------------------------------------------------------- rebuild under continuous writes


@dataclass
class Answer:
    route: str
    status: int
    body: dict[str, Any]


def test_a_rebuild_during_continuous_writes_equals_a_replay_and_reads_never_see_a_partial_view(
    system: Kami,
) -> None:
    shop = system.shop
    writers = [Workload(shop, random.Random(seed)) for seed in (1, 2)]
    for work in writers:
        work.setup(merchants=2, products=2)
    for _ in range(150):
        for work in writers:
            work.step()
    watched = writers[0].merchants[0]
    workers = EmbeddedWorkers(system).start()
    stop_writing, stop_polling = threading.Event(), threading.Event()
    answers: list[Answer] = []
    problems: list[BaseException] = []

    def write(work: Workload) -> None:
        try:
            while not stop_writing.is_set():
                work.step()
        except BaseException as error:  # a writer that dies must fail the test
            problems.append(error)

    def poll() -> None:
        try:
            with in_process(system) as api:
                while not stop_polling.is_set():
                    for route, headers in (
                        (f"/v1/merchants/{watched}/dashboard", api.admin),
                        ("/v1/audit/ledger", api.auditor),
                    ):
                        r = api.http.get(route, headers=headers)
                        answers.append(Answer(route, r.status_code, r.json()))
        except BaseException as error:
            problems.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    threads.append(threading.Thread(target=poll))
    progress: list[Progress] = []
    try:
        wait_for(lambda: position_of(system, "rm_dashboard_v1") >= shop.position() - 50, "the follower")
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answers) > 0, "the first answers")
        started_at = shop.position()
        rebuilder = Rebuilder(
            system.pool, shop.recorder, shop.mapper, batch_size=40, progress=progress.append
        )
        reports = rebuilder.rebuild(["dashboard", "ledger"])
        switched_at = {r.read_model: r.position for r in reports}
        # Writes go on after the switch: the follower must now keep the new versions.
        wait_for(
            lambda: (
                position_of(system, "rm_dashboard_v2") > switched_at["dashboard"] + 20
                and position_of(system, "rm_ledger_v2") > switched_at["ledger"] + 20
            ),
            "the follower to follow the promoted versions",
        )
        stop_writing.set()
        for thread in threads[:-1]:
            thread.join(timeout=30)
        head = shop.position()
        wait_for(
            lambda: min(position_of(system, f"rm_{name}_v2") for name in ("dashboard", "ledger")) >= head,
            "the new versions to reach the head",
        )
    finally:
        stop_writing.set()
        stop_polling.set()
        for thread in threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(timeout=30)
        workers.stop()
    assert not problems, problems
    assert workers.error is None, workers.error

    # The switch: reads go to version 2, version 1 is gone, the follower follows version 2.
    assert (live_version(system, "dashboard"), live_version(system, "ledger")) == (2, 2)
    assert not table_exists(system, "rm_dashboard_v1_merchants")
    assert position_of(system, "rm_dashboard_v1") == position_of(system, "rm_ledger_v1") == -1
    assert {"rm_dashboard_v2", "rm_ledger_v2"} <= {c.name for c in workers.runner.consumers}
    assert all(not r.changed for r in reports), [r.as_dict() for r in reports]
    assert min(switched_at.values()) > started_at, "writes went on during the rebuild"
    assert progress and progress[-1].phase.startswith("switching")
    assert any(p.phase == "building" and 0 < p.position < p.head for p in progress)

    # Identical to a from-scratch replay of the whole log.
    classes = [DashboardProjection, LedgerProjection]
    replayed = replay(system.database_url, shop.recorder, shop.mapper, classes, head)
    with system.pool.connection() as conn:
        for cls in (DashboardProjection, LedgerProjection):
            live = cls(2)
            assert {
                t.short: [dict(zip(t.column_names, row, strict=True)) for row in rows]
                for t, rows in zip(live.tables, live.rows(conn).values(), strict=True)
            } == replayed.read_models[cls.read_model], f"{cls.read_model} differs from a replay"

    # Every answer during all this was a complete view at its position.
    check_answers(system, watched, answers, switched_at)


def check_answers(kami: Kami, merchant: UUID, answers: list[Answer], switched_at: dict[str, int]) -> None:
    events = stored_events(kami)
    owner: dict[UUID, UUID] = {}
    sales: list[tuple[int, UUID, int]] = []  # honoured payments of the watched merchant
    postings: list[tuple[int, dict[str, int]]] = []
    for position, event in events:
        if isinstance(event, Order.Placed):
            owner[event.originator_id] = event.merchant_id
        elif isinstance(event, Order.Paid) and event.honoured and owner[event.originator_id] == merchant:
            sales.append((position, event.originator_id, event.amount))
        elif isinstance(event, Posting.Recorded):
            postings.append((position, event.entries))

    def balances(upto: int) -> dict[str, str]:
        totals: dict[str, int] = {}
        for position, entries in postings:
            if position <= upto:
                for account, amount in entries.items():
                    totals[account] = totals.get(account, 0) + amount
        return {account: format_yuan(amount) for account, amount in totals.items()}

    last: dict[str, int] = {}
    seen_after_switch = {"dashboard": 0, "ledger": 0}
    for a in answers:
        assert a.status == 200, a.body
        position = a.body["position"]
        assert position >= last.get(a.route, 0), f"{a.route} went back from {last[a.route]} to {position}"
        last[a.route] = position
        if "dashboard" in a.route:
            paid = [(o, amount) for p, o, amount in sales if p <= position]
            assert a.body["gmv"] == format_yuan(sum(amount for _, amount in paid)), (position, a.body)
            assert a.body["orders_paid"] == len({o for o, _ in paid}), (position, a.body)
            seen_after_switch["dashboard"] += position > switched_at["dashboard"]
        else:
            assert a.body["total"] == "0.00"
            assert a.body["accounts"] == balances(position), position
            seen_after_switch["ledger"] += position > switched_at["ledger"]
    assert len(answers) > 20
    # Reads went on across the switch, and saw the new version follow new events.
    assert all(seen_after_switch.values()), seen_after_switch


# ------------------------------------------------------------------- interrupted, resumed


def _cli_env(kami: Kami) -> dict[str, str]:
    return {
        **os.environ,
        "KAMI_DATABASE_URL": kami.database_url,
        **{
            name: secrets.token_urlsafe(24)
            for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
        },
    }


def _waiting_on_advisory_lock(kami: Kami) -> bool:
    with kami.pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone()
        return bool(row and row[0])


def test_a_killed_rebuild_leaves_the_live_version_untouched_and_resumes_where_it_stopped(
    system: Kami,
) -> None:
    traffic(system.shop, 7, 60, merchants=2, products=2)
    live = DashboardProjection()
    catch_up(system, [live])
    with system.pool.connection() as conn:
        before = live.rows(conn)
    head = system.shop.position()

    # Hold the flush lock of the version the rebuild will build, so it stops after one
    # batch, at a known point mid-way (no timing involved).
    namespace, key = flush_lock("rm_dashboard_v2")
    with psycopg.connect(system.database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (namespace, key))
        process = subprocess.Popen(
            [sys.executable, "-m", "kami.cli", "rebuild", "dashboard", "--batch-size", "20"],
            env=_cli_env(system),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: _waiting_on_advisory_lock(system), "the rebuild to block on its first flush")
            # Let exactly one batch through: the rebuild is first in the lock's queue, and
            # taking the lock again waits for that batch's commit.
            holder.execute("SELECT pg_advisory_unlock(%s, %s)", (namespace, key))
            holder.execute("SELECT pg_advisory_lock(%s, %s)", (namespace, key))
            wait_for(lambda: _waiting_on_advisory_lock(system), "the rebuild to block on its next flush")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    halfway = position_of(system, "rm_dashboard_v2")
    assert 0 < halfway < head, (halfway, head)
    with system.pool.connection() as conn:
        assert catalog.rebuilding(conn) == {"dashboard": (2, 1)}
        assert catalog.live_version(conn, "dashboard") == 1
        assert live.rows(conn) == before, "the live version must be untouched"

    resumed = subprocess.run(
        [sys.executable, "-m", "kami.cli", "rebuild", "dashboard", "--json"],
        env=_cli_env(system),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert resumed.returncode == 0, resumed.stderr
    [report] = json.loads(resumed.stdout)
    assert (report["old_version"], report["new_version"], report["resumed_from"]) == (1, 2, halfway)
    assert not report["changed"] and report["position"] == head
    assert "building dashboard" in resumed.stderr or "rm_dashboard_v2" in resumed.stderr  # the progress
    with system.pool.connection() as conn:
        assert catalog.live_version(conn, "dashboard") == 2 and catalog.rebuilding(conn) == {}
        assert DashboardProjection(2).rows(conn) == before
    assert not table_exists(system, "rm_dashboard_v1_merchants")


def test_a_rebuild_stopped_by_a_dead_letter_resumes_after_the_fix(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(system.shop, 8, 40, merchants=1, products=2)
    live = DashboardProjection()
    catch_up(system, [live])
    paid = [p for p, e in stored_events(system) if isinstance(e, Order.Paid)]
    poison_at = paid[len(paid) // 2]
    broken = {"on": True}
    original = DashboardProjection.order_paid

    def order_paid(projection: Any, batch: Any, position: int, event: Order.Paid) -> None:
        if broken["on"] and position == poison_at:
            raise ValueError("a bug in the new code")
        original(projection, batch, position, event)

    monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)
    rebuilder = Rebuilder(
        system.pool, system.shop.recorder, system.shop.mapper, batch_size=25, sleep=no_reader_beside
    )

    with pytest.raises(RebuildStopped, match="live version is untouched"):
        rebuilder.rebuild(["dashboard"])

    assert live_version(system, "dashboard") == 1
    assert position_of(system, "rm_dashboard_v2") == poison_at - 1
    with system.pool.connection() as conn:
        [letter] = dead_letters.letters(conn)
        assert (letter.consumer, letter.position) == ("rm_dashboard_v2", poison_at)
    broken["on"] = False

    [report] = rebuilder.rebuild(["dashboard"])  # retries its letter, then goes on

    assert report.resumed_from == poison_at - 1 and not report.changed
    assert live_version(system, "dashboard") == 2
    with system.pool.connection() as conn:
        assert dead_letters.letters(conn) == []


def test_the_old_version_is_dropped_only_after_a_grace_for_readers_that_read_the_catalog(
    system: Kami,
) -> None:
    traffic(system.shop, 10, 20, merchants=1, products=1)
    catch_up(system, [DashboardProjection()])
    waits: list[tuple[float, int | None, bool]] = []

    def sleep(seconds: float) -> None:
        # What a reader would find during the grace: the new version live, the old one's
        # tables still there for a query that read the catalog just before the switch.
        old_tables = table_exists(system, "rm_dashboard_v1_merchants")
        waits.append((seconds, live_version(system, "dashboard"), old_tables))

    Rebuilder(system.pool, system.shop.recorder, system.shop.mapper, sleep=sleep).rebuild(["dashboard"])

    assert waits == [(DROP_GRACE_SECONDS, 2, True)]
    assert not table_exists(system, "rm_dashboard_v1_merchants")


def test_the_report_shows_what_a_fix_changed(system: Kami, monkeypatch: pytest.MonkeyPatch) -> None:
    traffic(system.shop, 9, 80, merchants=2, products=2)
    # Version 1 was built by code with a bug: it ignored reviews.
    original = DashboardProjection.order_reviewed
    monkeypatch.setattr(DashboardProjection, "order_reviewed", lambda *args: None)
    catch_up(system, [DashboardProjection()])
    monkeypatch.setattr(DashboardProjection, "order_reviewed", original)
    reviewed = _owners_of_reviewed_orders(system)

    rebuilder = Rebuilder(system.pool, system.shop.recorder, system.shop.mapper, sleep=no_reader_beside)
    [report] = rebuilder.rebuild(["dashboard"])

    assert report.changed
    merchants = next(t for t in report.tables if t.table == "merchants")
    assert (merchants.changed, merchants.added, merchants.removed) == (len(reviewed), 0, 0)
    assert {UUID(e["key"]["merchant_id"]) for e in merchants.examples} <= reviewed
    changes = merchants.examples[0]["changes"]
    assert changes["reviews"][0] == 0 and changes["reviews"][1] > 0
    assert all(t.same for t in report.tables if t.table != "merchants")


def _owners_of_reviewed_orders(kami: Kami) -> set[UUID]:
    owner: dict[UUID, UUID] = {}
    found: set[UUID] = set()
    for _, event in stored_events(kami):
        if isinstance(event, Order.Placed):
            owner[event.originator_id] = event.merchant_id
        elif isinstance(event, Order.Reviewed):
            found.add(owner[event.originator_id])
    return found


def test_an_abandoned_rebuild_is_dropped_and_rebuild_all_switches_every_read_model(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(system.shop, 10, 20, merchants=1, products=1)
    catch_up(system, build_all())
    first_paid = next(p for p, e in stored_events(system) if isinstance(e, Order.Paid))
    original = DashboardProjection.order_paid

    def order_paid(projection: Any, batch: Any, position: int, event: Order.Paid) -> None:
        if position == first_paid:
            raise ValueError("a bug in the new code")
        original(projection, batch, position, event)

    monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)
    with pytest.raises(RebuildStopped):
        Rebuilder(system.pool, system.shop.recorder, system.shop.mapper).rebuild(["dashboard"])
    monkeypatch.setattr(DashboardProjection, "order_paid", original)
    assert table_exists(system, "rm_dashboard_v2_merchants")

    abandoned = subprocess.run(
        [sys.executable, "-m", "kami.cli", "rebuild", "dashboard", "--abandon"],
        env=_cli_env(system),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert abandoned.returncode == 0, abandoned.stderr
    assert "dashboard: dropped half-built version 2" in abandoned.stdout
    assert not table_exists(system, "rm_dashboard_v2_merchants")
    assert position_of(system, "rm_dashboard_v2") == -1
    with system.pool.connection() as conn:
        assert catalog.rebuilding(conn) == {} and catalog.live_version(conn, "dashboard") == 1
        [letter] = dead_letters.letters(conn, only_open=False)
        assert letter.status == "obsolete"

    everything = subprocess.run(
        [sys.executable, "-m", "kami.cli", "rebuild", "--all"],
        env=_cli_env(system),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert everything.returncode == 0, everything.stderr
    with system.pool.connection() as conn:
        versions = catalog.live_versions(conn)
    # A fresh number for the dashboard: 2 was used (and dropped), any free one will do.
    assert {name: version > 1 for name, version in versions.items()} == {
        cls.read_model: True for cls in PROJECTIONS
    }
    for cls in PROJECTIONS:
        assert f"{cls.read_model}: version 1 -> {versions[cls.read_model]}" in everything.stdout
    assert everything.stdout.count("no differences: the new version equals the old one row for row") == len(
        PROJECTIONS
    )
