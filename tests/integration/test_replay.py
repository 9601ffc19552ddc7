"""``replay --until`` gives every read model exactly as the live one stood at that instant,
named by position or by time, without touching the live tables."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.replay import jsonable, position_at, replay
from consumers.runner import LogRunner
from domain.clock import ManualClock
from kami.bootstrap import Kami, build
from projections.base import Projection
from projections.ledger import LedgerProjection
from projections.registry import PROJECTIONS, build_all
from tests.support.databases import fresh_database
from tests.support.workload import Workload

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Capture:
    position: int
    moment: datetime
    rows: dict[str, dict[str, list[dict[str, Any]]]]


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[Kami, ManualClock, list[Capture]]]:
    """A shop traded over simulated hours, the live views captured at three instants."""
    with fresh_database(database_url) as url:
        clock = ManualClock(START)
        kami = build(url, clock=clock)
        try:
            live = build_all()
            runner = LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, live, batch_size=64)
            work = Workload(kami.shop, random.Random(17))
            work.setup(merchants=2, products=2)
            captures = []
            for _ in range(3):
                for _ in range(25):
                    clock.advance(timedelta(minutes=7))
                    work.step()
                runner.catch_up()
                with kami.pool.connection() as conn:
                    rows = {p.read_model: dicts(conn, p) for p in live}
                captures.append(Capture(kami.shop.position(), clock(), rows))
                clock.advance(timedelta(seconds=1))  # later events are strictly after the capture
            yield kami, clock, captures
        finally:
            kami.close()


def dicts(conn: Any, projection: Projection[Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        t.short: [dict(zip(t.column_names, row, strict=True)) for row in rows]
        for t, rows in zip(projection.tables, projection.rows(conn).values(), strict=True)
    }


def test_replay_until_a_position_or_a_time_equals_the_live_view_captured_then(
    world: tuple[Kami, ManualClock, list[Capture]],
) -> None:
    kami, _, captures = world
    table, mapper = kami.shop.recorder.events_table_name, kami.shop.mapper
    for capture in captures[:2]:
        with kami.pool.connection() as conn:
            assert position_at(conn, table, mapper, capture.moment) == capture.position
            # A moment between two events: the last event before it.
            between = capture.moment + timedelta(milliseconds=500)
            assert position_at(conn, table, mapper, between) == capture.position

        replayed = replay(kami.database_url, kami.shop.recorder, mapper, PROJECTIONS, capture.position)

        assert replayed.position == capture.position
        assert replayed.read_models == capture.rows
    with kami.pool.connection() as conn:
        assert position_at(conn, table, mapper, START - timedelta(seconds=1)) == 0


def test_replay_leaves_no_table_behind_and_the_live_views_as_they_were(
    world: tuple[Kami, ManualClock, list[Capture]],
) -> None:
    kami, _, captures = world
    public = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    with kami.pool.connection() as conn:
        tables = conn.execute(public).fetchall()
    replay(kami.database_url, kami.shop.recorder, kami.shop.mapper, [LedgerProjection], captures[0].position)
    with kami.pool.connection() as conn:
        # Its tables were the session's own, in pg_temp: the public schema never saw them.
        assert conn.execute(public).fetchall() == tables
        assert dicts(conn, LedgerProjection()) == captures[-1].rows["ledger"]


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


def as_json(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {t: [{k: jsonable(v) for k, v in row.items()} for row in table] for t, table in rows.items()}


def test_kami_replay_prints_json_and_csv(world: tuple[Kami, ManualClock, list[Capture]]) -> None:
    kami, _, captures = world
    capture = captures[1]

    by_position = _cli(kami, "replay", "--until", str(capture.position), "--projection", "ledger")
    by_time = _cli(
        kami,
        "replay",
        "--until",
        capture.moment.isoformat(),
        "--projection",
        "ledger",
        "--projection",
        "dashboard",
        "--format",
        "json",
    )

    assert by_position.returncode == 0, by_position.stderr
    printed = json.loads(by_position.stdout)
    assert printed["position"] == capture.position
    assert printed["read_models"] == {"ledger": as_json(capture.rows["ledger"])}
    assert by_time.returncode == 0, by_time.stderr
    both = json.loads(by_time.stdout)
    assert both["position"] == capture.position
    assert both["read_models"]["dashboard"] == as_json(capture.rows["dashboard"])

    balances = _cli(
        kami,
        "replay",
        "--until",
        str(capture.position),
        "--projection",
        "ledger",
        "--format",
        "csv",
        "--table",
        "balances",
    )
    assert balances.returncode == 0, balances.stderr
    rows = list(csv.DictReader(io.StringIO(balances.stdout)))
    want = capture.rows["ledger"]["balances"]
    assert [{k: str(v) for k, v in r.items()} for r in want] == rows
    everything = _cli(kami, "replay", "--until", str(capture.position), "--format", "csv")
    assert everything.returncode == 0, everything.stderr
    assert f"# ledger.balances at position {capture.position}" in everything.stdout
    assert _cli(kami, "replay", "--until", "yesterday").returncode == 2
    assert _cli(kami, "replay", "--until", "5", "--projection", "nope").returncode == 2
