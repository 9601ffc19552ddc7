"""The event store's tables, created by processes that start together on a new database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import psycopg
from eventsourcing.persistence import StoredEvent

from kami.bootstrap import Kami, build
from tests.support.databases import fresh_database

STARTERS = 6


def test_processes_starting_together_on_a_new_database_all_start(database_url: str) -> None:
    # As compose.yaml starts the API, the relay and two consumers at once: each builds a
    # Shop, whose recorder creates the tables. Without the creation lock the catalog
    # updates race ("tuple concurrently updated") and some of them die at start.
    with fresh_database(database_url) as url:
        barrier = threading.Barrier(STARTERS)

        def start(_: int) -> Kami:
            barrier.wait()
            return build(url)

        with ThreadPoolExecutor(STARTERS) as pool:
            systems = list(pool.map(start, range(STARTERS)))
        try:
            merchant = systems[0].shop.register_merchant("m", "m@x")
            assert all(s.shop.get_merchant(merchant.merchant_id).name == "m" for s in systems)
        finally:
            for system in systems:
                system.close()


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of the events table produced, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == "kami_events" else 0
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


def test_checking_a_version_reads_one_row_however_long_the_history(database_url: str) -> None:
    # Every command's reads are checked when it commits, under the table lock: a card
    # bucket with thousands of events must cost what a new aggregate costs.
    with fresh_database(database_url) as url:
        system = build(url)
        try:
            recorder = system.shop.recorder
            long, short = uuid4(), uuid4()
            history = [StoredEvent(long, v, "test:Event", b"{}") for v in range(1, 501)]
            recorder.insert_batch([(history, {}), ([StoredEvent(short, 1, "test:Event", b"{}")], {})])

            versions, head = recorder.versions_and_head([long, short, uuid4()])
            assert versions == {long: 500, short: 1}
            assert head == 501

            with system.pool.connection() as conn:
                explained = conn.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + recorder._versions_and_head_statement,
                    ([long],),
                ).fetchone()
            assert explained is not None
            # One row for the aggregate's last version, one for the log's head.
            assert _rows_read(explained[0][0]["Plan"]) <= 2

            # The committer's check reads the same way: a command that read the long
            # history at its current version is written, one that read it earlier is not.
            written = recorder.insert_batch(
                [
                    ([StoredEvent(long, 501, "test:Event", b"{}")], {long: 500}),
                    ([StoredEvent(short, 2, "test:Event", b"{}")], {short: 1, long: 499}),
                ]
            )
            assert set(written.ids) == {(long, 501)}
            assert written.stale == {1: frozenset({long})}
        finally:
            system.close()


def test_reading_an_aggregates_events_answers_as_eventsourcings_recorder(database_url: str) -> None:
    # ShopRecorder renders each shape of the statement once instead of on every call:
    # every filter and order must still select what eventsourcing's own method selects.
    with fresh_database(database_url) as url:
        system = build(url)
        try:
            recorder = system.shop.recorder
            aggregate = uuid4()
            recorder.insert_batch(
                [([StoredEvent(aggregate, v, f"test:E{v}", b"{}") for v in range(1, 8)], {})]
            )
            plain = super(type(recorder), recorder).select_events
            shapes: list[dict[str, Any]] = [
                {},
                {"gt": 2},
                {"lte": 5},
                {"gt": 2, "lte": 5},
                {"desc": True},
                {"desc": True, "limit": 1},
                {"gt": 1, "lte": 6, "desc": True, "limit": 3},
                {"limit": 2},
            ]
            for shape in shapes:
                assert recorder.select_events(aggregate, **shape) == plain(aggregate, **shape), shape
            assert [
                e.originator_version
                for e in recorder.select_events(aggregate, gt=1, lte=6, desc=True, limit=3)
            ] == [6, 5, 4]
            assert recorder.select_events(uuid4()) == []
        finally:
            system.close()


def test_starting_on_an_older_database_drops_the_retired_write_function(database_url: str) -> None:
    # The batch write's first version, kami_insert_batch_<table>, was replaced by
    # kami_write_batch_<table>; a database made before then kept a function nothing calls.
    with fresh_database(database_url) as url:
        build(url).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION public.kami_insert_batch_kami_events(events json) RETURNS void"
                " LANGUAGE sql AS 'SELECT'"
            )
        build(url).close()
        with psycopg.connect(url, autocommit=True) as conn:
            names = {
                str(row[0])
                for row in conn.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'kami_%_batch_%'")
            }
        assert names == {"kami_write_batch_kami_events"}
